export { type AclEntry, type AclKind, type AclRequest, listAcl, setAcl } from './acl.js';
export { currentEpochSeconds, isTokenActive, isUserActive } from './active.js';
export { decodeText, encodeText } from './encoding.js';
export {
  addGroup,
  type GroupFields,
  getGroup,
  groupsOfUser,
  removeGroup,
  updateGroup,
} from './groups.js';
export { type ImportedUserConfig, importPveUserConfig } from './import.js';
export {
  type ParsedUserConfig,
  type ParseUserConfigOptions,
  parseUserConfig,
  type UserConfigDialect,
} from './parse.js';
export {
  addPool,
  getPool,
  isPoolId,
  type PoolChanges,
  removePool,
  updatePool,
} from './pools.js';
export { addRole, removeRole, roleExists, updateRole } from './roles.js';
export { isGroupId, isRoleId, normalizeAclPath } from './syntax.js';
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
} from './types.js';
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
} from './users.js';
export { writeUserConfig } from './write.js';
