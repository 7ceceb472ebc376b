/**
 * The service layer's operation table: every operation of the API, tokenctl
 * and `npm start` is one entry here, with its name, the JSON Schema of its API
 * parameters, the conversion and validation of its params, its privilege rule
 * and its `run`. The HTTP routes, the manager's dispatch and tokenctl all go
 * through these entries, so a rule or a parameter is written once.
 *
 * Who writes user.cfg and token.shadow: whoever runs a `write` operation. In
 * daemon mode that is the manager alone: the API workers run the `read`
 * operations on their cached config and forward writes to the manager over its
 * socket, checking the same rule first so that a refusal needs no round trip.
 * `tokenctl`, run by root on the host, runs the write operations in its own
 * process as root@pam and writes the files directly, under the same file
 * locks and generation bumps, so running daemons see its changes at once.
 * In multi-host mode both write to etcd instead, and each host's sync agent
 * writes its files (src/cluster).
 *
 * A privilege rule is a function of the caller, the params and the config it
 * is checked against. A write checks it again inside the file lock, on the
 * fresh config, before every look at the config its run takes.
 */
import { permissionsTree } from '../access/permissions.js';
import { accessConfigOrDefault } from '../config/access-control.js';
import { type AclRequest, listAcl, setAcl } from '../config/acl.js';
import { currentEpochSeconds } from '../config/active.js';
import { addGroup, removeGroup } from '../config/groups.js';
import type { PoolChanges } from '../config/pools.js';
import * as poolConfig from '../config/pools.js';
import { addRole, updateRole as changeRole, removeRole } from '../config/roles.js';
import type { UserConfig } from '../config/types.js';
import type { TokenFields, UserFields } from '../config/users.js';
import * as userConfig from '../config/users.js';
import { ApiError, ConfigError } from '../errors.js';
import { isAuthid, joinTokenid, parseAuthid, parseUserid } from '../ids.js';
import { aclInfo, type CreatedToken, type TokenInfo, tokenInfo, userInfo } from './answers.js';
import {
  defined,
  flagOf,
  integerList,
  list,
  optionalFlag,
  optionalList,
  optionalText,
  type ParameterSchema,
  type Raw,
  record,
  schema,
  splitList,
  text,
} from './params.js';
import { POOL_AUDIT, type PoolInfo, poolPath, poolWithMembers, visiblePools } from './pools.js';
import {
  ACCESS_GROUPS,
  type Caller,
  canAuditUsers,
  isSelf,
  requireNoEscalation,
  requirePrivileges,
  requireRootForRoot,
  requireSelfOrUserModify,
  USER_AUDIT,
} from './rules.js';
import type { AccessStorage, ConfigChangeOptions } from './storage.js';

interface OperationBase<P> {
  /** The stable name, `resource.verb`: the manager's socket and its logs use it. */
  readonly name: string;
  readonly summary: string;
  /** Proxmox VE's parameters of the API call: path, query and body in one flat object. */
  readonly parameters: ParameterSchema;
  /** The API's parameters (already checked against `parameters`) as this operation's params. */
  fromApi(input: Raw): P;
  /** Params that crossed a process boundary, checked; ApiError(400) when malformed. */
  parse(raw: Raw): P;
  /** The privilege rule: throws ApiError(403) unless `caller` may do this on `config`. */
  authorize(caller: Caller, params: NoInfer<P>, config: UserConfig): void;
}

/** Runs on a process's (cached) config, wherever the request arrives. */
export interface ReadOperation<P, R> extends OperationBase<P> {
  readonly access: 'read';
  run(config: UserConfig, caller: Caller, params: NoInfer<P>): R;
}

/** Changes the files: runs in the manager, or in tokenctl. */
export interface WriteOperation<P, R> extends OperationBase<P> {
  readonly access: 'write';
  run(writer: Writer, params: NoInfer<P>): Promise<R>;
}

export type Operation<P = never, R = unknown> = ReadOperation<P, R> | WriteOperation<P, R>;

/**
 * Where the write operations keep their changes: the files (FileStorage) or,
 * in multi-host mode, etcd (src/cluster's EtcdStorage). See storage.ts.
 */
export type Stores = AccessStorage;

/**
 * The stores as one write operation sees them: every look at the config
 * checks the operation's privilege rule first, on that same config.
 */
export class Writer {
  readonly #storage: AccessStorage;
  readonly #authorize: (config: UserConfig) => void;

  constructor(stores: Stores, authorize: (config: UserConfig) => void) {
    this.#storage = stores;
    this.#authorize = authorize;
  }

  /** Reads the fresh config (no lock): for checks made before a secret is written. */
  async check<T>(fn: (config: UserConfig) => T): Promise<T> {
    const config = await this.#storage.readConfig();
    this.#authorize(config);
    return fn(config);
  }

  /**
   * Changes the config; the change is stored and announced everywhere when
   * this returns, with the secrets `options.secretsToDelete` names removed.
   */
  change<T>(fn: (config: UserConfig) => T, options?: ConfigChangeOptions<T>): Promise<T> {
    return this.#storage.mutateConfig((config) => {
      this.#authorize(config);
      return fn(config);
    }, options);
  }

  /** A new random secret for `tokenid`, stored as a hash; returned once. */
  newSecret(tokenid: string): Promise<string> {
    return this.#storage.newSecret(tokenid);
  }

  deleteSecret(tokenid: string): Promise<boolean> {
    return this.#storage.deleteSecret(tokenid);
  }
}

function read<P, R>(op: Omit<ReadOperation<P, R>, 'access'>): ReadOperation<P, R> {
  return Object.freeze({ ...op, access: 'read' });
}

function write<P, R>(op: Omit<WriteOperation<P, R>, 'access'>): WriteOperation<P, R> {
  return Object.freeze({ ...op, access: 'write' });
}

const anyone = (): void => undefined;
const userModify = (caller: Caller, _params: unknown, config: UserConfig) =>
  requirePrivileges(config, caller, ACCESS_GROUPS, ['User.Modify']);
const ownTokensOrUserModify = (caller: Caller, params: { userid: string }, config: UserConfig) =>
  requireSelfOrUserModify(config, caller, params.userid);
/** User.Modify, and root@pam alone changes root@pam (see requireRootForRoot). */
const userModifyNotRoot = (caller: Caller, params: { userid: string }, config: UserConfig) => {
  userModify(caller, params, config);
  requireRootForRoot(config, caller, params.userid);
};
/**
 * A token write: the user's own tokens or User.Modify, root@pam's tokens only
 * by root@pam, and never more than the caller holds (requireNoEscalation).
 */
function tokenWrite(
  grants: (params: never) => { privsep?: boolean | undefined; secret?: boolean },
) {
  return (caller: Caller, params: TokenParams, config: UserConfig) => {
    requireSelfOrUserModify(config, caller, params.userid);
    requireRootForRoot(config, caller, params.userid);
    requireNoEscalation(config, caller, params, grants(params as never));
  };
}

// --- parameters shared by several operations -------------------------------------

const userFieldSchemas = {
  enable: schema.flag,
  expire: schema.expire,
  firstname: schema.text,
  lastname: schema.text,
  email: schema.text,
  comment: schema.text,
  keys: schema.text,
  groups: schema.list,
};

type UserChanges = UserFields & { groups?: string[] };

function userFieldsOf(input: Raw): UserChanges {
  return defined({
    enable: flagOf(input.enable),
    expire: input.expire as number | undefined,
    firstname: input.firstname as string | undefined,
    lastname: input.lastname as string | undefined,
    email: input.email as string | undefined,
    comment: input.comment as string | undefined,
    keys: input.keys as string | undefined,
    groups: splitList(input.groups),
  });
}

const tokenFieldSchemas = {
  expire: schema.expire,
  privsep: schema.flag,
  comment: schema.text,
  enable: schema.flag,
};

function tokenFieldsOf(input: Raw): TokenFields {
  return defined({
    enable: flagOf(input.enable),
    expire: input.expire as number | undefined,
    privsep: flagOf(input.privsep),
    comment: input.comment as string | undefined,
  });
}

interface UserParams {
  userid: string;
}

const userParameters: ParameterSchema = {
  type: 'object',
  required: ['userid'],
  properties: { userid: schema.userid },
};

const userParams = {
  fromApi: (input: Raw): UserParams => ({ userid: input.userid as string }),
  parse: (raw: Raw): UserParams => ({ userid: text(raw, 'userid') }),
};

interface TokenParams {
  userid: string;
  tokenName: string;
}

/** PVE calls the token's name `tokenid` in its API paths. */
const tokenParameters: ParameterSchema = {
  type: 'object',
  required: ['userid', 'tokenid'],
  properties: { userid: schema.userid, tokenid: schema.tokenName },
};

function tokenParamsOf(input: Raw): TokenParams {
  return { userid: input.userid as string, tokenName: input.tokenid as string };
}

function parseTokenParams(raw: Raw): TokenParams {
  return { userid: text(raw, 'userid'), tokenName: text(raw, 'tokenName') };
}

/** What every operation on one token shares: its parameters and its privilege rule. */
const onToken = {
  parameters: tokenParameters,
  fromApi: tokenParamsOf,
  parse: parseTokenParams,
  authorize: ownTokensOrUserModify,
};

/** The token's parameters with `fields` besides (what a create or update may set). */
function tokenParametersWith(fields: ParameterSchema['properties']): ParameterSchema {
  return { ...tokenParameters, properties: { ...tokenParameters.properties, ...fields } };
}

/**
 * A new secret for `tokenid`, answered once; the old one stops working
 * everywhere at once. The token is confirmed under user.cfg's lock after the
 * secret is stored: a delete that ran meanwhile wins, and the secret we wrote
 * is removed again rather than left behind as an orphan.
 */
async function newSecret(writer: Writer, tokenid: string): Promise<CreatedToken> {
  const value = await writer.newSecret(tokenid);
  let token: ReturnType<typeof userConfig.getToken>;
  try {
    token = await writer.change((config) => userConfig.getToken(config, tokenid));
  } catch (error) {
    await writer.deleteSecret(tokenid);
    throw error;
  }
  return { 'full-tokenid': tokenid, info: tokenInfo(token), value };
}

// --- reads -----------------------------------------------------------------------

export const readPermissions = read({
  name: 'permissions.read',
  summary: "the caller's privileges, or another's with Sys.Audit on /access",
  parameters: { type: 'object', properties: { path: schema.text, userid: schema.text } },
  fromApi: (input: Raw) =>
    checkTarget(
      defined({
        path: input.path as string | undefined,
        userid: input.userid as string | undefined,
      }),
    ),
  parse: (raw: Raw) =>
    checkTarget(defined({ path: optionalText(raw, 'path'), userid: optionalText(raw, 'userid') })),
  authorize(caller, params, config) {
    const target = params.userid ?? caller.authid;
    const own = target === caller.authid || parseAuthid(target).userid === caller.authid;
    if (!own) requirePrivileges(config, caller, '/access', ['Sys.Audit']);
  },
  run(config, caller, params) {
    const tree = permissionsTree(config, params.userid ?? caller, {
      now: currentEpochSeconds(),
      ...(params.path ? { paths: [params.path] } : {}),
    });
    if (params.path === undefined) return tree;
    return { [params.path]: tree[params.path] ?? {} };
  },
});

function checkTarget(params: { path?: string; userid?: string }) {
  if (params.userid !== undefined && !isAuthid(params.userid)) {
    throw new ApiError(400, 'invalid userid', { userid: 'invalid format' });
  }
  return params;
}

export const listUsers = read({
  name: 'user.list',
  summary: 'every user (with Sys.Audit or User.Modify), or only oneself',
  parameters: { type: 'object', properties: { enabled: schema.flag, full: schema.flag } },
  fromApi: (input: Raw) => defined({ enabled: flagOf(input.enabled), full: flagOf(input.full) }),
  parse: (raw: Raw) =>
    defined({
      enabled: raw.enabled === undefined ? undefined : raw.enabled === true,
      full: raw.full === undefined ? undefined : raw.full === true,
    }),
  authorize: anyone,
  run(config, caller, options: { enabled?: boolean; full?: boolean }) {
    const all = canAuditUsers(config, caller);
    return [...config.users]
      .filter(([userid]) => all || userid === caller.userid)
      .filter(([, user]) => options.enabled === undefined || user.enable === options.enabled)
      .map(([userid, user]) => userInfo(config, userid, user, options.full ?? false));
  },
});

export const readUser = read({
  name: 'user.read',
  summary: 'one user with its tokens',
  parameters: userParameters,
  ...userParams,
  authorize(caller, params, config) {
    if (!isSelf(caller, params.userid) && !canAuditUsers(config, caller)) {
      throw new ApiError(
        403,
        `Permission check failed (${ACCESS_GROUPS}, ${USER_AUDIT.join('|')})`,
      );
    }
  },
  run(config, _caller, params) {
    const user = userConfig.getUser(config, params.userid);
    const { userid: _ignored, ...info } = userInfo(config, params.userid, user, true);
    return info;
  },
});

export const listTokens = read({
  name: 'token.list',
  summary: "a user's tokens",
  parameters: userParameters,
  ...userParams,
  authorize: ownTokensOrUserModify,
  run(config, _caller, params) {
    return [...userConfig.getUser(config, params.userid).tokens].map(([tokenid, token]) => ({
      tokenid,
      ...tokenInfo(token),
    }));
  },
});

export const readToken = read({
  name: 'token.read',
  summary: 'one token (never its secret)',
  ...onToken,
  run(config, _caller, params) {
    return tokenInfo(userConfig.getToken(config, joinTokenid(params.userid, params.tokenName)));
  },
});

export const readAcl = read({
  name: 'acl.read',
  summary: 'every ACL entry',
  parameters: { type: 'object', properties: {} },
  fromApi: () => ({}),
  parse: () => ({}),
  authorize: (caller, _params, config) =>
    requirePrivileges(config, caller, '/access', ['Sys.Audit']),
  run: (config) => listAcl(config).map(aclInfo),
});

export const listGroups = read({
  name: 'group.list',
  summary: 'every group with its members',
  parameters: { type: 'object', properties: {} },
  fromApi: () => ({}),
  parse: () => ({}),
  authorize: (caller, _params, config) =>
    requirePrivileges(config, caller, ACCESS_GROUPS, ['Sys.Audit', 'Group.Allocate'], true),
  run(config) {
    return [...config.groups].map(([groupid, group]) => ({
      groupid,
      comment: group.comment,
      users: [...group.members].sort().join(','),
    }));
  },
});

const poolIdSchema = {
  type: 'string',
  pattern: poolConfig.POOL_ID_PATTERN,
  maxLength: 1000,
} as const;

interface PoolListParams {
  poolid?: string;
  /** Every listed pool with its members (tokenctl); not an API parameter. */
  members?: boolean;
}

export const listPools = read<PoolListParams, PoolInfo[]>({
  name: 'pool.list',
  summary: 'the pools with Pool.Audit, or one pool with its members',
  parameters: {
    type: 'object',
    properties: { poolid: poolIdSchema },
  },
  fromApi: (input) => defined({ poolid: input.poolid as string | undefined }),
  parse: (raw) =>
    defined({ poolid: optionalText(raw, 'poolid'), members: raw.members === true || undefined }),
  authorize: (caller, params, config) => {
    if (params.poolid !== undefined) {
      requirePrivileges(config, caller, poolPath(params.poolid), POOL_AUDIT);
    }
  },
  run: (config, caller, params) =>
    params.poolid === undefined
      ? visiblePools(config, caller, params.members ?? false)
      : [poolWithMembers(config, params.poolid)],
});

// --- writes ----------------------------------------------------------------------

export const createUser = write({
  name: 'user.create',
  summary: 'a new user',
  parameters: {
    type: 'object',
    required: ['userid'],
    properties: { userid: schema.userid, password: schema.text, ...userFieldSchemas },
  },
  fromApi: (input: Raw) => ({ userid: input.userid as string, fields: userFieldsOf(input) }),
  parse: (raw: Raw) => ({
    userid: text(raw, 'userid'),
    fields: record<UserChanges>(raw, 'fields'),
  }),
  authorize: userModify,
  async run(writer, params) {
    await writer.change((config) => {
      userConfig.addUser(config, parseUserid(params.userid).userid, params.fields);
    });
    return null;
  },
});

export const updateUser = write({
  name: 'user.update',
  summary: "a user's fields and groups",
  parameters: {
    type: 'object',
    required: ['userid'],
    properties: { userid: schema.userid, ...userFieldSchemas, append: schema.flag },
  },
  fromApi: (input: Raw) => ({
    userid: input.userid as string,
    changes: { ...userFieldsOf(input), ...defined({ append: flagOf(input.append) }) },
  }),
  parse: (raw: Raw) => ({
    userid: text(raw, 'userid'),
    changes: record<UserChanges & { append?: boolean }>(raw, 'changes'),
  }),
  authorize: userModifyNotRoot,
  async run(writer, params) {
    await writer.change((config) => {
      userConfig.updateUser(config, params.userid, params.changes);
    });
    return null;
  },
});

export const deleteUser = write({
  name: 'user.delete',
  summary: 'a user, its tokens and their secrets',
  parameters: userParameters,
  ...userParams,
  authorize: userModifyNotRoot,
  async run(writer, params) {
    await writer.change(
      (config) => {
        const user = userConfig.getUser(config, params.userid);
        const ids = [...user.tokens.keys()].map((name) => joinTokenid(params.userid, name));
        userConfig.removeUser(config, params.userid);
        return ids;
      },
      { secretsToDelete: (tokenids) => tokenids },
    );
    return null;
  },
});

/**
 * The secret is stored first and the token added to user.cfg second: a crash
 * in between leaves an unusable orphan secret, never a token without one.
 */
export const createToken = write({
  name: 'token.create',
  summary: 'a new token and its secret, answered once',
  ...onToken,
  parameters: tokenParametersWith(tokenFieldSchemas),
  fromApi: (input: Raw) => ({ ...tokenParamsOf(input), fields: tokenFieldsOf(input) }),
  parse: (raw: Raw) => ({ ...parseTokenParams(raw), fields: record<TokenFields>(raw, 'fields') }),
  // A new token is separated unless asked otherwise (addToken's default).
  authorize: tokenWrite((p: { fields: TokenFields }) => ({ privsep: p.fields.privsep ?? true })),
  async run(writer, params): Promise<CreatedToken> {
    const tokenid = joinTokenid(params.userid, params.tokenName);
    await writer.check((config) => {
      if (userConfig.getUser(config, params.userid).tokens.has(params.tokenName)) {
        throw new ConfigError('exists', `token ${tokenid} already exists`);
      }
    });
    const value = await writer.newSecret(tokenid);
    try {
      const token = await writer.change((config) =>
        userConfig.addToken(config, tokenid, params.fields),
      );
      return { 'full-tokenid': tokenid, info: tokenInfo(token), value };
    } catch (error) {
      await writer.deleteSecret(tokenid);
      throw error;
    }
  },
});

/**
 * A token's fields; with `regenerate` (as Proxmox Backup Server offers it) also
 * a new secret, answered once like a new token's.
 */
export const updateToken = write({
  name: 'token.update',
  summary: "a token's fields, and with regenerate a new secret",
  ...onToken,
  parameters: tokenParametersWith({ ...tokenFieldSchemas, regenerate: schema.flag }),
  fromApi: (input: Raw) => ({
    ...tokenParamsOf(input),
    changes: tokenFieldsOf(input),
    ...defined({ regenerate: flagOf(input.regenerate) }),
  }),
  parse: (raw: Raw) => ({
    ...parseTokenParams(raw),
    changes: record<TokenFields>(raw, 'changes'),
    ...defined({ regenerate: raw.regenerate === undefined ? undefined : raw.regenerate === true }),
  }),
  authorize: tokenWrite((p: { changes: TokenFields; regenerate?: boolean }) => ({
    privsep: p.changes.privsep,
    secret: p.regenerate === true,
  })),
  async run(writer, params): Promise<TokenInfo | CreatedToken> {
    const tokenid = joinTokenid(params.userid, params.tokenName);
    const token = await writer.change((config) =>
      userConfig.updateToken(config, tokenid, params.changes),
    );
    return params.regenerate ? newSecret(writer, tokenid) : tokenInfo(token);
  },
});

export const rotateToken = write({
  name: 'token.rotate',
  summary: 'a new secret for a token, answered once; the old one stops working at once',
  ...onToken,
  authorize: tokenWrite(() => ({ secret: true })),
  async run(writer, params) {
    const tokenid = joinTokenid(params.userid, params.tokenName);
    await writer.check((config) => userConfig.getToken(config, tokenid)); // 404 before any hashing
    return newSecret(writer, tokenid);
  },
});

/** user.cfg first (the token stops being active), then the secret (one transaction on etcd). */
export const deleteToken = write({
  name: 'token.delete',
  summary: 'a token and its secret',
  ...onToken,
  authorize: tokenWrite(() => ({})),
  async run(writer, params) {
    const tokenid = joinTokenid(params.userid, params.tokenName);
    await writer.change((config) => userConfig.removeToken(config, tokenid), {
      secretsToDelete: () => [tokenid],
    });
    return null;
  },
});

type AclParams = AclRequest & {
  path: string;
  roles: string[];
  users?: string[];
  groups?: string[];
  tokens?: string[];
};

export const updateAcl = write({
  name: 'acl.update',
  summary: 'grant or (with delete) take away roles on a path',
  parameters: {
    type: 'object',
    required: ['path', 'roles'],
    properties: {
      path: schema.text,
      roles: schema.list,
      users: schema.list,
      groups: schema.list,
      tokens: schema.list,
      propagate: schema.flag,
      delete: schema.flag,
    },
  },
  fromApi: (input: Raw): AclParams => ({
    path: input.path as string,
    roles: splitList(input.roles) ?? [],
    ...defined({
      users: splitList(input.users),
      groups: splitList(input.groups),
      tokens: splitList(input.tokens),
      propagate: flagOf(input.propagate),
      delete: flagOf(input.delete),
    }),
  }),
  parse: (raw: Raw): AclParams => ({
    path: text(raw, 'path'),
    roles: list(raw, 'roles'),
    ...defined({
      users: optionalList(raw, 'users'),
      groups: optionalList(raw, 'groups'),
      tokens: optionalList(raw, 'tokens'),
      propagate: optionalFlag(raw, 'propagate'),
      delete: optionalFlag(raw, 'delete'),
    }),
  }),
  authorize: (caller, params, config) =>
    requirePrivileges(config, caller, params.path, ['Permissions.Modify']),
  async run(writer, params) {
    await writer.change((config) => setAcl(config, params.path, params));
    return null;
  },
});

/** The params of a create that takes an id and an optional comment (a group, a pool). */
function idAndComment<K extends string>(id: K) {
  type Params = Record<K, string> & { comment?: string };
  return {
    fromApi: (input: Raw) =>
      defined({
        [id]: input[id] as string,
        comment: input.comment as string | undefined,
      }) as Params,
    parse: (raw: Raw) =>
      defined({ [id]: text(raw, id), comment: optionalText(raw, 'comment') }) as Params,
  };
}

export const createGroup = write({
  name: 'group.create',
  summary: 'a new group',
  parameters: {
    type: 'object',
    required: ['groupid'],
    properties: { groupid: schema.groupid, comment: schema.text },
  },
  ...idAndComment('groupid'),
  authorize: (caller, _params, config) =>
    requirePrivileges(config, caller, ACCESS_GROUPS, ['Group.Allocate']),
  async run(writer, params) {
    await writer.change((config) => {
      addGroup(
        config,
        params.groupid,
        params.comment === undefined ? {} : { comment: params.comment },
      );
    });
    return null;
  },
});

const vmidListSchema = { type: 'string', pattern: '^[0-9,;\\s]*$', maxLength: 65536 } as const;

interface PoolParams {
  poolid: string;
}

const poolParameters: ParameterSchema = {
  type: 'object',
  required: ['poolid'],
  properties: { poolid: poolIdSchema },
};

const requirePoolAllocate = (caller: Caller, params: PoolParams, config: UserConfig) =>
  requirePrivileges(config, caller, poolPath(params.poolid), ['Pool.Allocate']);

export const createPool = write({
  name: 'pool.create',
  summary: 'a new, empty pool (a nested one under an existing parent)',
  parameters: {
    type: 'object',
    required: ['poolid'],
    properties: { poolid: poolIdSchema, comment: schema.text },
  },
  ...idAndComment('poolid'),
  authorize: requirePoolAllocate,
  async run(writer, params) {
    await writer.change((config) => {
      poolConfig.addPool(config, params.poolid, defined({ comment: params.comment }));
    });
    return null;
  },
});

type PoolUpdateParams = PoolParams &
  Omit<PoolChanges, 'vms' | 'storage'> & {
    vms?: number[];
    storage?: string[];
  };

/**
 * PVE's rule for PUT /pools: Pool.Allocate on the pool; for every member added
 * or removed, what check_perm_modify asks (Permissions.Modify, or VM.Allocate
 * on a VM, Datastore.Allocate on a storage); Pool.Allocate on the pool a VM
 * is moved out of.
 */
function authorizePoolUpdate(caller: Caller, params: PoolUpdateParams, config: UserConfig): void {
  requirePoolAllocate(caller, params, config);
  for (const vmid of params.vms ?? []) {
    requirePrivileges(config, caller, `/vms/${vmid}`, ['Permissions.Modify', 'VM.Allocate'], true);
    const owner = params.delete ? null : poolConfig.poolOfVm(config, vmid);
    if (owner !== null && owner !== params.poolid && params.allowMove) {
      requirePrivileges(config, caller, poolPath(owner), ['Pool.Allocate']);
    }
  }
  for (const storeid of params.storage ?? []) {
    const privileges = ['Permissions.Modify', 'Datastore.Allocate'];
    requirePrivileges(config, caller, `/storage/${storeid}`, privileges, true);
  }
}

export const updatePool = write({
  name: 'pool.update',
  summary: "a pool's comment, or (with delete, without) its VMs and storages",
  parameters: {
    type: 'object',
    required: ['poolid'],
    properties: {
      poolid: poolIdSchema,
      comment: schema.text,
      vms: vmidListSchema,
      storage: schema.list,
      'allow-move': schema.flag,
      delete: schema.flag,
    },
  },
  fromApi: (input: Raw): PoolUpdateParams => ({
    poolid: input.poolid as string,
    ...defined({
      comment: input.comment as string | undefined,
      vms: splitList(input.vms)?.map(Number),
      storage: splitList(input.storage),
      allowMove: flagOf(input['allow-move']),
      delete: flagOf(input.delete),
    }),
  }),
  parse: (raw: Raw): PoolUpdateParams => ({
    poolid: text(raw, 'poolid'),
    ...defined({
      comment: optionalText(raw, 'comment'),
      vms: raw.vms === undefined ? undefined : integerList(raw, 'vms'),
      storage: raw.storage === undefined ? undefined : list(raw, 'storage'),
      allowMove: raw.allowMove === true || undefined,
      delete: raw.delete === true || undefined,
    }),
  }),
  authorize: authorizePoolUpdate,
  async run(writer, params) {
    const { poolid, ...changes } = params;
    await writer.change((config) => {
      poolConfig.updatePool(config, poolid, changes);
    });
    return null;
  },
});

export const deletePool = write({
  name: 'pool.delete',
  summary: 'an empty pool, with the ACL entries on it',
  parameters: poolParameters,
  fromApi: (input: Raw): PoolParams => ({ poolid: input.poolid as string }),
  parse: (raw: Raw): PoolParams => ({ poolid: text(raw, 'poolid') }),
  authorize: requirePoolAllocate,
  async run(writer, params) {
    await writer.change((config) => poolConfig.removePool(config, params.poolid));
    return null;
  },
});

export const deleteGroup = write({
  name: 'group.delete',
  summary: 'a group and its ACL entries; its users stay',
  parameters: {
    type: 'object',
    required: ['groupid'],
    properties: { groupid: schema.groupid },
  },
  fromApi: (input: Raw) => ({ groupid: input.groupid as string }),
  parse: (raw: Raw) => ({ groupid: text(raw, 'groupid') }),
  authorize: (caller, _params, config) =>
    requirePrivileges(config, caller, ACCESS_GROUPS, ['Group.Allocate']),
  async run(writer, params) {
    await writer.change((config) => removeGroup(config, params.groupid));
    return null;
  },
});

// --- roles: PVE's /access/roles. Anyone may read them; changing needs Sys.Modify on /access.

/** A role as GET /access/roles answers it: privileges comma separated, `special` when built in. */
export interface RoleInfo {
  roleid: string;
  privs: string;
  special?: 1;
}

function roleInfo(roleid: string, privileges: Iterable<string>, builtIn: boolean): RoleInfo {
  return { roleid, privs: [...privileges].sort().join(','), ...(builtIn ? { special: 1 } : {}) };
}

const roleParameters: ParameterSchema = {
  type: 'object',
  required: ['roleid'],
  properties: { roleid: schema.roleid },
};

const sysModify = (caller: Caller, _params: unknown, config: UserConfig) =>
  requirePrivileges(config, caller, '/access', ['Sys.Modify']);

export const listRoles = read({
  name: 'role.list',
  summary: 'every role, built in and custom, with its privileges',
  parameters: { type: 'object', properties: {} },
  fromApi: () => ({}),
  parse: () => ({}),
  authorize: anyone,
  run(config) {
    const access = accessConfigOrDefault();
    const builtIn = [...access.roles].map(([id, privs]) => roleInfo(id, privs, true));
    const custom = [...config.roles].map(([id, privs]) => roleInfo(id, privs, false));
    return [...builtIn, ...custom].sort((a, b) => a.roleid.localeCompare(b.roleid));
  },
});

export const createRole = write({
  name: 'role.create',
  summary: 'a custom role',
  parameters: {
    type: 'object',
    required: ['roleid'],
    properties: { roleid: schema.roleid, privs: schema.list },
  },
  fromApi: (input: Raw) => ({
    roleid: input.roleid as string,
    privs: splitList(input.privs) ?? [],
  }),
  parse: (raw: Raw) => ({ roleid: text(raw, 'roleid'), privs: list(raw, 'privs') }),
  authorize: sysModify,
  async run(writer, params) {
    await writer.change((config) => {
      addRole(config, params.roleid, params.privs);
    });
    return null;
  },
});

export const updateRole = write({
  name: 'role.update',
  summary: "a custom role's privileges (replaced, or with append added to)",
  parameters: {
    type: 'object',
    required: ['roleid', 'privs'],
    properties: { roleid: schema.roleid, privs: schema.list, append: schema.flag },
  },
  fromApi: (input: Raw) => ({
    roleid: input.roleid as string,
    privs: splitList(input.privs) ?? [],
    append: flagOf(input.append) ?? false,
  }),
  parse: (raw: Raw) => ({
    roleid: text(raw, 'roleid'),
    privs: list(raw, 'privs'),
    append: raw.append === true,
  }),
  authorize: sysModify,
  async run(writer, params) {
    await writer.change((config) => {
      changeRole(config, params.roleid, params.privs, { append: params.append });
    });
    return null;
  },
});

export const deleteRole = write({
  name: 'role.delete',
  summary: 'a custom role and the ACL entries granting it',
  parameters: roleParameters,
  fromApi: (input: Raw) => ({ roleid: input.roleid as string }),
  parse: (raw: Raw) => ({ roleid: text(raw, 'roleid') }),
  authorize: sysModify,
  async run(writer, params) {
    await writer.change((config) => removeRole(config, params.roleid));
    return null;
  },
});

/** Every operation, by name: what the manager's socket accepts. */
export const OPERATIONS: ReadonlyMap<string, Operation<Raw>> = new Map(
  (
    [
      readPermissions,
      listUsers,
      readUser,
      listTokens,
      readToken,
      readAcl,
      listGroups,
      listPools,
      createUser,
      updateUser,
      deleteUser,
      createToken,
      updateToken,
      rotateToken,
      deleteToken,
      updateAcl,
      createGroup,
      createPool,
      updatePool,
      deletePool,
      deleteGroup,
      listRoles,
      createRole,
      updateRole,
      deleteRole,
    ] as unknown as Operation<Raw>[]
  ).map((op) => [op.name, op]),
);

/** Runs a read operation on `config`: its rule, then its run. */
export function runRead<P, R>(
  op: ReadOperation<P, R>,
  config: UserConfig,
  caller: Caller,
  params: P,
): R {
  op.authorize(caller, params, config);
  return op.run(config, caller, params);
}

/** Runs a write operation on the stores, its rule checked on every config it touches. */
export function runWrite<P, R>(
  op: WriteOperation<P, R>,
  stores: Stores,
  caller: Caller,
  params: P,
): Promise<R> {
  return op.run(new Writer(stores, (config) => op.authorize(caller, params, config)), params);
}

export type { Caller } from './rules.js';
