/**
 * The service layer: the API's operations with Proxmox VE's semantics and
 * privilege checks, on top of the config helpers and the two stores. Both
 * `src/daemon` and `src/cli` use it; neither imports the other.
 *
 * Who writes user.cfg and token.shadow: whoever runs `Mutations`. In daemon
 * mode that is the manager alone (the API workers only read, on their cached
 * config, and forward mutations to it over its socket, checking the same
 * privileges first so both sides agree). `tokenctl` runs `Mutations` in its
 * own process as root@pam, as the host's root, writing the files directly
 * under the same file locks and bumping the same generations, so a running
 * manager and API see its changes exactly as they see their own.
 */
import { checkPrivileges, permissionsTree } from '../access/permissions.js';
import type { UserConfigStore } from '../access/user-info.js';
import { listAcl, setAcl } from '../config/acl.js';
import { currentEpochSeconds } from '../config/active.js';
import { addGroup, groupsOfUser } from '../config/groups.js';
import type { TokenEntry, UserConfig, UserEntry } from '../config/types.js';
import {
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
} from '../config/users.js';
import { ApiError, ConfigError, InvalidIdError } from '../errors.js';
import { isAuthid, joinTokenid, parseAuthid, parseUserid } from '../ids.js';
import type { TokenShadow } from '../shadow/token-shadow.js';

export const ACCESS_GROUPS = '/access/groups';

/** 403 unless `authid` holds the privileges (all, or any with `any`) on `path`. */
export function requirePrivileges(
  config: UserConfig,
  authid: string,
  path: string,
  privs: string[],
  any = false,
): void {
  if (!checkPrivileges(config, authid, path, privs, { any })) {
    throw new ApiError(403, `Permission check failed (${path}, ${privs.join(any ? '|' : ', ')})`);
  }
}

/** 'self' as PVE means it: the authenticated user itself (a token is never its user). */
function isSelf(authid: string, userid: string): boolean {
  return authid === userid;
}

function requireSelfOrUserModify(config: UserConfig, authid: string, userid: string): void {
  if (!isSelf(authid, userid)) requirePrivileges(config, authid, ACCESS_GROUPS, ['User.Modify']);
}

function canAuditUsers(config: UserConfig, authid: string): boolean {
  return checkPrivileges(config, authid, ACCESS_GROUPS, ['Sys.Audit', 'User.Modify'], {
    any: true,
  });
}

/** Config and id errors become the HTTP answers PVE gives for them. */
export function toApiError(error: unknown): unknown {
  if (error instanceof ConfigError) {
    if (error.problem === 'insecure') return error; // a server fault (500, logged), not the client's
    if (error.problem === 'not-found') return new ApiError(404, error.message);
    return new ApiError(400, error.message);
  }
  if (error instanceof InvalidIdError) return new ApiError(400, error.message);
  return error;
}

const flag = (value: boolean): 0 | 1 => (value ? 1 : 0);

export function tokenInfo(token: TokenEntry) {
  return {
    enable: flag(token.enable),
    expire: token.expire,
    privsep: flag(token.privsep),
    comment: token.comment,
  };
}

function userInfo(config: UserConfig, userid: string, user: UserEntry, full: boolean) {
  return {
    userid,
    enable: flag(user.enable),
    expire: user.expire,
    firstname: user.firstname,
    lastname: user.lastname,
    email: user.email,
    comment: user.comment,
    groups: groupsOfUser(config, userid).join(','),
    ...(full
      ? {
          tokens: [...user.tokens].map(([tokenid, token]) => ({ tokenid, ...tokenInfo(token) })),
        }
      : {}),
  };
}

// --- reads ------------------------------------------------------------------

export function listUsers(
  config: UserConfig,
  authid: string,
  options: { enabled?: boolean; full?: boolean } = {},
) {
  const all = canAuditUsers(config, authid);
  const self = parseAuthid(authid).userid;
  return [...config.users]
    .filter(([userid]) => all || userid === self)
    .filter(([, user]) => options.enabled === undefined || user.enable === options.enabled)
    .map(([userid, user]) => userInfo(config, userid, user, options.full ?? false));
}

export function readUser(config: UserConfig, authid: string, userid: string) {
  if (!isSelf(authid, userid) && !canAuditUsers(config, authid)) {
    throw new ApiError(403, `Permission check failed (${ACCESS_GROUPS}, Sys.Audit|User.Modify)`);
  }
  const { userid: _ignored, ...info } = userInfo(config, userid, getUser(config, userid), true);
  return info;
}

export function listTokens(config: UserConfig, authid: string, userid: string) {
  requireSelfOrUserModify(config, authid, userid);
  return [...getUser(config, userid).tokens].map(([tokenid, token]) => ({
    tokenid,
    ...tokenInfo(token),
  }));
}

export function readToken(config: UserConfig, authid: string, userid: string, tokenName: string) {
  requireSelfOrUserModify(config, authid, userid);
  return tokenInfo(getToken(config, joinTokenid(userid, tokenName)));
}

export function readAcl(config: UserConfig, authid: string) {
  requirePrivileges(config, authid, '/access', ['Sys.Audit']);
  return listAcl(config).map((e) => ({
    path: e.path,
    type: e.type,
    ugid: e.ugid,
    roleid: e.roleid,
    propagate: flag(e.propagate),
  }));
}

export function listGroups(config: UserConfig, authid: string) {
  requirePrivileges(config, authid, ACCESS_GROUPS, ['Sys.Audit', 'Group.Allocate'], true);
  return [...config.groups].map(([groupid, group]) => ({
    groupid,
    comment: group.comment,
    users: [...group.members].sort().join(','),
  }));
}

/** GET /access/permissions: one's own, or another's with Sys.Audit on /access. */
export function readPermissions(
  config: UserConfig,
  authid: string,
  options: { path?: string; userid?: string } = {},
) {
  const target = options.userid ?? authid;
  if (!isAuthid(target)) throw new ApiError(400, 'invalid userid', { userid: 'invalid format' });
  const own = target === authid || parseAuthid(target).userid === authid;
  if (!own) requirePrivileges(config, authid, '/access', ['Sys.Audit']);
  const now = currentEpochSeconds();
  const tree = permissionsTree(config, target, {
    now,
    ...(options.path ? { paths: [options.path] } : {}),
  });
  if (options.path === undefined) return tree;
  return { [options.path]: tree[options.path] ?? {} };
}

// --- mutations ------------------------------------------------------------------

export interface CreatedToken {
  'full-tokenid': string;
  info: ReturnType<typeof tokenInfo>;
  /** The secret, shown once. */
  value: string;
}

/** The writers' side: each call checks privileges on the fresh config, then changes it. */
export class Mutations {
  readonly users: UserConfigStore;
  readonly shadow: TokenShadow;

  constructor(users: UserConfigStore, shadow: TokenShadow) {
    this.users = users;
    this.shadow = shadow;
  }

  async createUser(
    authid: string,
    userid: string,
    fields: UserFields & { groups?: string[] },
  ): Promise<null> {
    await this.#change((config) => {
      requirePrivileges(config, authid, ACCESS_GROUPS, ['User.Modify']);
      addUser(config, parseUserid(userid).userid, fields);
    });
    return null;
  }

  async updateUser(
    authid: string,
    userid: string,
    changes: UserFields & { groups?: string[]; append?: boolean },
  ): Promise<null> {
    await this.#change((config) => {
      requirePrivileges(config, authid, ACCESS_GROUPS, ['User.Modify']);
      updateUser(config, userid, changes);
    });
    return null;
  }

  /** Removes the user, its tokens from user.cfg and their secrets from token.shadow. */
  async deleteUser(authid: string, userid: string): Promise<null> {
    const tokenids = await this.#change((config) => {
      requirePrivileges(config, authid, ACCESS_GROUPS, ['User.Modify']);
      const user = getUser(config, userid);
      const ids = [...user.tokens.keys()].map((name) => joinTokenid(userid, name));
      removeUser(config, userid);
      return ids;
    });
    for (const tokenid of tokenids) await this.shadow.deleteSecret(tokenid);
    return null;
  }

  /**
   * The secret is stored first and the token added to user.cfg second: a crash
   * in between leaves an unusable orphan secret, never a token without one.
   */
  async createToken(
    authid: string,
    userid: string,
    tokenName: string,
    fields: TokenFields,
  ): Promise<CreatedToken> {
    const tokenid = joinTokenid(userid, tokenName);
    await this.#check((config) => {
      requireSelfOrUserModify(config, authid, userid);
      if (getUser(config, userid).tokens.has(tokenName)) {
        throw new ConfigError('exists', `token ${tokenid} already exists`);
      }
    });
    const value = await this.shadow.generateAndSetSecret(tokenid);
    try {
      const token = await this.#change((config) => {
        requireSelfOrUserModify(config, authid, userid);
        return addToken(config, tokenid, fields);
      });
      return { 'full-tokenid': tokenid, info: tokenInfo(token), value };
    } catch (error) {
      await this.shadow.deleteSecret(tokenid);
      throw error;
    }
  }

  async updateToken(
    authid: string,
    userid: string,
    tokenName: string,
    changes: TokenFields,
  ): Promise<ReturnType<typeof tokenInfo>> {
    const token = await this.#change((config) => {
      requireSelfOrUserModify(config, authid, userid);
      return updateToken(config, joinTokenid(userid, tokenName), changes);
    });
    return tokenInfo(token);
  }

  /** A new secret for an existing token; the old one stops working everywhere at once. */
  async rotateToken(authid: string, userid: string, tokenName: string): Promise<CreatedToken> {
    const tokenid = joinTokenid(userid, tokenName);
    const token = await this.#check((config) => {
      requireSelfOrUserModify(config, authid, userid);
      return getToken(config, tokenid);
    });
    const value = await this.shadow.generateAndSetSecret(tokenid);
    return { 'full-tokenid': tokenid, info: tokenInfo(token), value };
  }

  /** user.cfg first (the token stops being active), then the secret. */
  async deleteToken(authid: string, userid: string, tokenName: string): Promise<null> {
    const tokenid = joinTokenid(userid, tokenName);
    await this.#change((config) => {
      requireSelfOrUserModify(config, authid, userid);
      removeToken(config, tokenid);
    });
    await this.shadow.deleteSecret(tokenid);
    return null;
  }

  async updateAcl(
    authid: string,
    request: {
      path: string;
      roles: string[];
      users?: string[];
      groups?: string[];
      tokens?: string[];
      propagate?: boolean;
      delete?: boolean;
    },
  ): Promise<null> {
    await this.#change((config) => {
      requirePrivileges(config, authid, request.path, ['Permissions.Modify']);
      setAcl(config, request.path, request);
    });
    return null;
  }

  async createGroup(authid: string, groupid: string, comment?: string): Promise<null> {
    await this.#change((config) => {
      requirePrivileges(config, authid, ACCESS_GROUPS, ['Group.Allocate']);
      addGroup(config, groupid, comment === undefined ? {} : { comment });
    });
    return null;
  }

  async #check<T>(fn: (config: UserConfig) => T): Promise<T> {
    try {
      return fn(await this.users.get());
    } catch (error) {
      throw toApiError(error);
    }
  }

  async #change<T>(fn: (config: UserConfig) => T): Promise<T> {
    try {
      return await this.users.mutate(fn);
    } catch (error) {
      throw toApiError(error);
    }
  }
}
