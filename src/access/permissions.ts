/**
 * Permission evaluation as PVE does it (PVE::AccessControl::roles and
 * PVE::RPCEnvironment::permissions):
 *
 * - the ACL is walked from '/' down to the path; an entry on an ancestor counts
 *   only if it propagates, an entry on the path itself always counts;
 * - at each level that has something for the caller, it replaces what the
 *   levels above gave: token entries, else user entries, else the union of the
 *   caller's groups' entries (so a user's own entry beats its groups');
 * - NoAccess among the roles that decided gives no privileges at all;
 * - the superuser (root@pam) has every privilege everywhere;
 * - a token without privilege separation has exactly its user's privileges;
 *   with it, those of its own entries that its user also has;
 * - unlike PVE, which checks this when authenticating, a disabled or expired
 *   user or token has no privileges here either.
 *
 * - at '/vms/ID' and '/storage/ID', the roles held on the pools that have the
 *   VM or storage as a member count too (see pool-roles.ts).
 *
 * Results map each privilege to its propagate flag: true when some role that
 * grants it propagates.
 */

import {
  type AccessControlConfig,
  accessConfigOrDefault,
  rolePrivileges,
} from '../config/access-control.js';
import type { AclKind } from '../config/acl.js';
import { currentEpochSeconds, isTokenActive, isUserActive } from '../config/active.js';
import {
  indexPoolMembers,
  type PoolMembership,
  poolMemberPaths,
  poolsWithMember,
} from '../config/pools.js';
import { normalizeAclPath } from '../config/syntax.js';
import type { AclNode, AclRoles, UserConfig } from '../config/types.js';
import { ConfigError, quote } from '../errors.js';
import { type AuthidParts, userParts, validAuthidParts } from '../ids.js';
import { withPoolRoles } from './pool-roles.js';

/** Privilege to its propagate flag. */
export type PrivilegeMap = Map<string, boolean>;

/** When (for expiry) and under which access-control configuration privileges are evaluated. */
export interface PermissionOptions {
  /** Epoch seconds for expiry checks; default: now. */
  now?: number;
  /** Default: the initialised configuration, or PVE's. */
  access?: AccessControlConfig;
}

/** PVE's top-level paths, always listed by permissionsTree() in addition to the ACL's. */
export const DEFAULT_PERMISSION_PATHS: readonly string[] = Object.freeze([
  '/',
  '/access',
  '/access/groups',
  '/nodes',
  '/pool',
  '/sdn',
  '/storage',
  '/vms',
]);

function resolveOptions(options: number | PermissionOptions | undefined): {
  now: number;
  access: AccessControlConfig;
} {
  const given = typeof options === 'number' ? { now: options } : (options ?? {});
  return {
    now: given.now ?? currentEpochSeconds(),
    access: given.access ?? accessConfigOrDefault(),
  };
}

/** '/', '/a', '/a/b' for '/a/b'. */
function pathAndAncestors(path: string): string[] {
  const chain = ['/'];
  let current = '';
  for (const segment of path.split('/')) {
    if (segment === '') continue;
    current += `/${segment}`;
    chain.push(current);
  }
  return chain;
}

/** The roles of one entry that apply at the path: all of them there, propagating ones above. */
function applicable(roles: AclRoles | undefined, final: boolean, into: AclRoles): void {
  if (!roles) return;
  for (const [role, propagate] of roles) {
    if (final || propagate) into.set(role, (into.get(role) ?? false) || propagate);
  }
}

function levelRoles(config: UserConfig, node: AclNode, id: AuthidParts, final: boolean): AclRoles {
  const kind: AclKind = id.tokenName === null ? 'users' : 'tokens';
  const own: AclRoles = new Map();
  applicable(node[kind].get(id.authid), final, own);
  if (own.size > 0 || kind === 'tokens') return own;
  const fromGroups: AclRoles = new Map();
  for (const [groupid, roles] of node.groups) {
    if (config.groups.get(groupid)?.members.has(id.authid)) applicable(roles, final, fromGroups);
  }
  return fromGroups;
}

/**
 * The roles that decide for a user or token at a path from the ACL alone
 * (PVE's roles(), which, like this, does not consider pools). A token without
 * privilege separation has its user's roles, as in PVE; an unknown token none.
 */
export function rolesAt(
  config: UserConfig,
  authid: string | AuthidParts,
  path: string,
  access: AccessControlConfig = accessConfigOrDefault(),
): AclRoles {
  const normalized = normalizeAclPath(path);
  const id = validAuthidParts(authid);
  if (id === null || normalized === null) return new Map();
  if (id.tokenName !== null) {
    const token = config.users.get(id.userid)?.tokens.get(id.tokenName);
    if (token === undefined) return new Map();
    if (!token.privsep) return rolesAt(config, userParts(id), path, access);
  }
  let roles: AclRoles = new Map();
  for (const level of pathAndAncestors(normalized)) {
    const node = config.acl.get(level);
    if (!node) continue;
    const found = levelRoles(config, node, id, level === normalized);
    if (found.size > 0) roles = found;
  }
  const noAccess = access.noAccessRole;
  if (noAccess !== null && roles.has(noAccess)) {
    return new Map([[noAccess, roles.get(noAccess) ?? false]]);
  }
  return roles;
}

function allPrivileges(access: AccessControlConfig): PrivilegeMap {
  return new Map([...access.privileges].map((privilege) => [privilege, true]));
}

/** Privileges from the ACL alone, without the superuser or token rules. */
function aclPrivileges(
  config: UserConfig,
  authid: AuthidParts,
  path: string,
  access: AccessControlConfig,
  members: PoolMembership,
): PrivilegeMap {
  const roles = withPoolRoles(
    members(path),
    rolesAt(config, authid, path, access),
    (poolPath) => rolesAt(config, authid, poolPath, access),
    access.noAccessRole,
  );
  const privileges: PrivilegeMap = new Map();
  if (access.noAccessRole !== null && roles.has(access.noAccessRole)) return privileges;
  for (const [role, propagate] of roles) {
    for (const privilege of rolePrivileges(config, role, access) ?? []) {
      if (access.privileges.has(privilege)) {
        privileges.set(privilege, (privileges.get(privilege) ?? false) || propagate);
      }
    }
  }
  return privileges;
}

/**
 * The privileges of a user or token at a path, each with its propagate flag.
 * Empty for an unknown, inactive or invalid id and for an invalid path.
 * The fourth argument is `now` in epoch seconds, or options.
 */
export function permissions(
  config: UserConfig,
  authid: string | AuthidParts,
  path: string,
  nowOrOptions?: number | PermissionOptions,
): PrivilegeMap {
  const { now, access } = resolveOptions(nowOrOptions);
  return evaluate(config, authid, path, now, access, (at) => poolsWithMember(config, at));
}

/** permissions(), with the pool look-up given (one scan per call, or an index). */
function evaluate(
  config: UserConfig,
  authid: string | AuthidParts,
  path: string,
  now: number,
  access: AccessControlConfig,
  members: PoolMembership,
): PrivilegeMap {
  const normalized = normalizeAclPath(path);
  const id = validAuthidParts(authid);
  if (id === null || normalized === null) return new Map();
  const ownPrivileges = (who: AuthidParts) => {
    return access.isSuperuser(who.authid)
      ? allPrivileges(access)
      : aclPrivileges(config, who, normalized, access, members);
  };
  if (id.tokenName === null)
    return isUserActive(config, id.userid, now) ? ownPrivileges(id) : new Map();
  if (!isTokenActive(config, id, now)) return new Map();
  const userPrivileges = ownPrivileges(userParts(id));
  const token = config.users.get(id.userid)?.tokens.get(id.tokenName);
  if (!token?.privsep) return userPrivileges;
  const intersection: PrivilegeMap = new Map();
  for (const [privilege, propagate] of ownPrivileges(id)) {
    const userPropagate = userPrivileges.get(privilege);
    if (userPropagate !== undefined) intersection.set(privilege, propagate && userPropagate);
  }
  return intersection;
}

/**
 * Whether the caller has all of `privileges` at the path, or with `any` at
 * least one. An empty list is never allowed; an unknown privilege name is an
 * error (ConfigError 'invalid'), as in PVE, to catch typos.
 */
export function checkPrivileges(
  config: UserConfig,
  authid: string | AuthidParts,
  path: string,
  privileges: readonly string[],
  options: PermissionOptions & { any?: boolean } = {},
): boolean {
  const { access } = resolveOptions(options);
  for (const privilege of privileges) {
    if (!access.privileges.has(privilege)) {
      throw new ConfigError('invalid', `unknown privilege ${quote(String(privilege))}`);
    }
  }
  if (privileges.length === 0) return false;
  const granted = permissions(config, authid, path, options);
  return options.any
    ? privileges.some((privilege) => granted.has(privilege))
    : privileges.every((privilege) => granted.has(privilege));
}

/**
 * What GET /access/permissions returns without a path: for PVE's top-level
 * paths, every path in the ACL and every pool member's path, the privileges
 * held there (1 when they propagate, 0 when not); paths without any are left
 * out.
 */
export function permissionsTree(
  config: UserConfig,
  authid: string | AuthidParts,
  options: PermissionOptions & { paths?: readonly string[] } = {},
): Record<string, Record<string, 0 | 1>> {
  const { now, access } = resolveOptions(options);
  const paths = new Set([
    ...(options.paths ?? DEFAULT_PERMISSION_PATHS),
    ...config.acl.keys(),
    ...poolMemberPaths(config),
  ]);
  const members = indexPoolMembers(config);
  const tree: Record<string, Record<string, 0 | 1>> = {};
  for (const path of [...paths].sort()) {
    const granted = evaluate(config, authid, path, now, access, members);
    if (granted.size === 0) continue;
    const entry: Record<string, 0 | 1> = {};
    for (const privilege of [...granted.keys()].sort())
      entry[privilege] = granted.get(privilege) ? 1 : 0;
    tree[path] = entry;
  }
  return tree;
}
