/**
 * token-shadow: verify Proxmox-style API tokens (`USER@REALM!TOKEN` + secret)
 * fast and correctly across many Node.js processes on one host.
 *
 * This is the library's public face, chosen name by name: what an application
 * needs to verify tokens, keep user.cfg and token.shadow, and decide
 * privileges; the fastify plugin is the second entry point, token-shadow/fastify
 * (src/fastify.ts), so that the core needs no framework. Everything else under
 * src/ is internal and may change without notice (the package's exports map
 * lets nothing else be imported). The API reference (docs/api/) is generated
 * from these lists by `npm run docs`.
 *
 * @packageDocumentation
 */

// --- verifying a request ------------------------------------------------------

export {
  Authenticator,
  type AuthenticatorOptions,
  type Identity,
} from './http/authenticate.js';
export {
  type AuthorizationOptions,
  authorizationOf,
  DEFAULT_MAX_HEADER_LENGTH,
  DEFAULT_MAX_SECRET_BYTES,
  parseAuthorizationHeader,
  type RequestHeaders,
  TOKEN_SCHEMES,
  type TokenCredentials,
  type TokenScheme,
} from './http/authorization.js';

// --- in a connect/Express app (the fastify plugin: token-shadow/fastify) ------------

export {
  type TokenAuthMiddleware,
  type TokenAuthRequest,
  tokenAuthMiddleware,
} from './http/connect.js';
export {
  type GuardOutcome,
  type Refusal,
  type RequestGuard,
  requestGuard,
  type TokenAuthOptions,
} from './http/guard.js';

// --- the secrets and their cache ------------------------------------------------

export { type Argon2Params, DEFAULT_ARGON2 } from './hashing/params.js';
export { HashPool, type HashPoolOptions, type HashPoolStats } from './hashing/pool.js';
export type { SecretVerifier } from './shadow/secret-verifier.js';
export {
  MAX_SECRET_LENGTH,
  TokenShadow,
  type TokenShadowOptions,
  type TokenShadowStats,
} from './shadow/token-shadow.js';

// --- opening the files as the daemons and tokenctl do ----------------------------

export {
  openTokenShadow,
  type TokenShadowDeployment,
  type TokenShadowDeploymentOptions,
} from './service/deployment.js';

// --- the generation page every process maps --------------------------------------

export {
  GenerationPage,
  type GenerationPageOptions,
  openGenerationPageOrNull,
  type PageHealthProblem,
  type WarningSink,
} from './generations/page.js';
export { defaultPagePath } from './generations/paths.js';
export { Slot, type SlotName } from './generations/slots.js';
export type { NativePageOptions } from './native.js';

// --- user.cfg: users, tokens, groups, roles, pools, the ACL ------------------------

export { UserConfigStore, type UserConfigStoreOptions } from './access/user-info.js';
export { type AclEntry, type AclKind, type AclRequest, listAcl, setAcl } from './config/acl.js';
export { isTokenActive, isUserActive } from './config/active.js';
export {
  addGroup,
  type GroupFields,
  getGroup,
  groupsOfUser,
  removeGroup,
  updateGroup,
} from './config/groups.js';
export { type ImportedUserConfig, importPveUserConfig } from './config/import.js';
export {
  type ParsedUserConfig,
  type ParseUserConfigOptions,
  parseUserConfig,
  type UserConfigDialect,
} from './config/parse.js';
export {
  addPool,
  getPool,
  type PoolChanges,
  removePool,
  updatePool,
} from './config/pools.js';
export { addRole, removeRole, roleExists, updateRole } from './config/roles.js';
export {
  type AclNode,
  type AclRoles,
  type ConfigWarning,
  createUserConfig,
  type GroupEntry,
  type PoolEntry,
  type TokenEntry,
  type UserConfig,
  type UserEntry,
} from './config/types.js';
export {
  addToken,
  addUser,
  getToken,
  getUser,
  removeToken,
  removeUser,
  type TokenFields,
  type UserFields,
  updateToken,
  updateUser,
} from './config/users.js';
export { writeUserConfig } from './config/write.js';

// --- privileges ------------------------------------------------------------------

export {
  checkPrivileges,
  DEFAULT_PERMISSION_PATHS,
  type PermissionOptions,
  type PrivilegeMap,
  permissions,
  permissionsTree,
  rolesAt,
} from './access/permissions.js';
export {
  type AccessControlBackend,
  type AccessControlConfig,
  accessConfig,
  DEFAULT_ACCESS_BACKEND,
  init as initAccessControl,
  PVE_ACCESS_CONTROL,
  SUPERUSER,
} from './config/access-control.js';
export { PVE_BUILTIN_ROLES, PVE_PRIVILEGES } from './config/privileges.js';

// --- which tokens are in use: last use per token, expiry ahead -------------------

export { type Expiring, effectiveExpiry, expiringWithin } from './config/expiring.js';
export {
  type LastUse,
  type LastUsedMap,
  type SecondClock,
  UsageNotes,
  type UseRecorder,
} from './usage/notes.js';

// --- ids -------------------------------------------------------------------------

export {
  type Authid,
  type AuthidParts,
  formatUserid,
  isAuthid,
  isTokenid,
  joinTokenid,
  parseAuthid,
  parseTokenid,
  parseUserid,
  splitTokenid,
  type Tokenid,
  type Userid,
} from './ids.js';

// --- errors ----------------------------------------------------------------------

export {
  AccessControlNotInitialisedError,
  AddonUnavailableError,
  ApiError,
  AuthenticationError,
  type AuthenticationFailure,
  BusyError,
  ClusterError,
  type ClusterProblem,
  ConfigError,
  type ConfigProblem,
  FencedError,
  GenerationPageError,
  type GenerationPageProblem,
  InvalidIdError,
  LastUsedFileError,
  type LastUsedFileProblem,
  LockError,
  type LockProblem,
  ShadowFileError,
  type ShadowFileProblem,
  TokenShadowError,
} from './errors.js';
