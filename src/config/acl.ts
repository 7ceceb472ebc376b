/**
 * Changing ACL entries, with the semantics of PVE's PUT /access/acl: every
 * named role is granted to (or with `delete` taken from) every named user,
 * group and token at one path. Nodes left empty are removed, so that writing
 * and reading the configuration gives the same structure back.
 */

import { ConfigError, quote } from '../errors.js';
import { type Authid, parseAuthid } from '../ids.js';
import type { AccessControlConfig } from './access-control.js';
import { accessConfigOrDefault } from './access-control.js';
import { normalizeAclPath } from './syntax.js';
import { type AclNode, aclEntryOf, type UserConfig } from './types.js';

/** Which map of an ACL node an entry is in: users, groups or tokens. */
export type AclKind = keyof AclNode;

/** A change of the ACL at one path, as PVE's PUT /access/acl takes it. */
export interface AclRequest {
  users?: Iterable<string>;
  /** Group ids, without the `@`. */
  groups?: Iterable<string>;
  tokens?: Iterable<string>;
  roles: Iterable<string>;
  /** Whether the entries apply below `path` too; default true, as in PVE. */
  propagate?: boolean;
  /** Take the roles away instead of granting them. */
  delete?: boolean;
}

/** One row of the ACL, as PVE's GET /access/acl lists it. */
export interface AclEntry {
  path: string;
  type: 'user' | 'group' | 'token';
  ugid: string;
  roleid: string;
  propagate: boolean;
}

const KINDS: ReadonlyArray<[AclKind, AclEntry['type']]> = [
  ['users', 'user'],
  ['groups', 'group'],
  ['tokens', 'token'],
];

function compactNode(config: UserConfig, path: string, node: AclNode): void {
  for (const [kind] of KINDS) {
    for (const [id, roles] of node[kind]) if (roles.size === 0) node[kind].delete(id);
  }
  if (node.users.size === 0 && node.groups.size === 0 && node.tokens.size === 0) {
    config.acl.delete(path);
  }
}

/** Removes every entry (all roles of one user, group or token at one path) that `matches`. */
export function removeAclEntriesWhere(
  config: UserConfig,
  matches: (kind: AclKind, id: string) => boolean,
): void {
  for (const [path, node] of config.acl) {
    for (const [kind] of KINDS) {
      for (const id of [...node[kind].keys()]) if (matches(kind, id)) node[kind].delete(id);
    }
    compactNode(config, path, node);
  }
}

/** Whether any ACL entry is one of these tokens' (removing them then changes the ACL). */
export function hasTokenAclEntries(config: UserConfig, tokenids: ReadonlySet<string>): boolean {
  for (const node of config.acl.values()) {
    for (const id of node.tokens.keys()) if (tokenids.has(id)) return true;
  }
  return false;
}

/** Takes one role away from everyone at every path. */
export function removeRoleFromAcl(config: UserConfig, roleid: string): void {
  for (const [path, node] of config.acl) {
    for (const [kind] of KINDS) for (const roles of node[kind].values()) roles.delete(roleid);
    compactNode(config, path, node);
  }
}

function list(values: Iterable<string> | undefined): string[] {
  if (values === undefined) return [];
  if (typeof values === 'string') throw new ConfigError('invalid', 'ACL lists must be arrays');
  return [...values];
}

function requireTarget(config: UserConfig, kind: AclKind, id: string): void {
  const text = quote(String(id));
  if (kind === 'groups') {
    if (!config.groups.has(id)) throw new ConfigError('not-found', `no such group ${text}`);
    return;
  }
  let parsed: Authid | null = null;
  try {
    parsed = parseAuthid(id);
  } catch {
    // reported below
  }
  const wantToken = kind === 'tokens';
  if (parsed === null || (parsed.tokenName !== null) !== wantToken) {
    throw new ConfigError('invalid', `invalid ${wantToken ? 'token' : 'user'} id ${text}`);
  }
  const user = config.users.get(parsed.userid);
  if (!user) throw new ConfigError('not-found', `no such user ${quote(parsed.userid)}`);
  if (parsed.tokenName !== null && !user.tokens.has(parsed.tokenName)) {
    throw new ConfigError('not-found', `no such token ${text}`);
  }
}

/** Grants (or deletes) roles at a path; validates everything before changing anything. */
export function setAcl(
  config: UserConfig,
  path: string,
  request: AclRequest,
  access: AccessControlConfig = accessConfigOrDefault(),
): void {
  const normalized = normalizeAclPath(path);
  if (normalized === null)
    throw new ConfigError('invalid', `invalid ACL path ${quote(String(path))}`);
  const targets: Array<[AclKind, string]> = [
    ...list(request.users).map((id): [AclKind, string] => ['users', id]),
    ...list(request.groups).map((id): [AclKind, string] => ['groups', id]),
    ...list(request.tokens).map((id): [AclKind, string] => ['tokens', id]),
  ];
  if (targets.length === 0) throw new ConfigError('invalid', 'no users, groups or tokens given');
  const roles = list(request.roles);
  if (roles.length === 0) throw new ConfigError('invalid', 'no roles given');
  for (const role of roles) {
    if (!access.roles.has(role) && !config.roles.has(role)) {
      throw new ConfigError('not-found', `no such role ${quote(String(role))}`);
    }
  }
  for (const [kind, id] of targets) requireTarget(config, kind, id);
  const propagate = request.propagate ?? true;
  for (const [kind, id] of targets) {
    const entry = aclEntryOf(config, normalized, kind, id);
    for (const role of roles) {
      if (request.delete) entry.delete(role);
      else entry.set(role, propagate);
    }
  }
  const node = config.acl.get(normalized);
  if (node) compactNode(config, normalized, node);
}

/** Every ACL entry, sorted by path, type, id and role. */
export function listAcl(config: UserConfig): AclEntry[] {
  const entries: AclEntry[] = [];
  for (const path of [...config.acl.keys()].sort()) {
    const node = config.acl.get(path);
    if (!node) continue;
    for (const [kind, type] of KINDS) {
      for (const ugid of [...node[kind].keys()].sort()) {
        const roles = node[kind].get(ugid) ?? new Map<string, boolean>();
        for (const roleid of [...roles.keys()].sort()) {
          entries.push({ path, type, ugid, roleid, propagate: roles.get(roleid) === true });
        }
      }
    }
  }
  return entries;
}
