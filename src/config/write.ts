/**
 * Writes user.cfg canonically: the same configuration always gives the same
 * bytes, whatever order it was built in, so that a file can be compared and
 * written again without churn. Users (each followed by its tokens), groups,
 * pools, custom roles, then ACLs by path and by users, groups, tokens.
 */
import { ConfigError, quote } from '../errors.js';
import { isAuthid, isTokenid } from '../ids.js';
import { canonicalAllowedIps } from './allowed-ips.js';
import { encodeText } from './encoding.js';
import { poolLines } from './pools.js';
import {
  isExpire,
  isGroupId,
  isPrivilegeName,
  isRawField,
  isRoleId,
  normalizeAclPath,
} from './syntax.js';
import type { AclNode, AclRoles, TokenEntry, UserConfig } from './types.js';

const ACL_KINDS: ReadonlyArray<[keyof AclNode, string]> = [
  ['users', ''],
  ['groups', '@'],
  ['tokens', ''],
];

function sorted<T extends string>(values: Iterable<T>): T[] {
  return [...values].sort();
}

function flag(value: boolean): string {
  return value ? '1' : '0';
}

/** Values that would break the line format are refused rather than written. */
function ensure(ok: boolean, what: string, value: string): void {
  if (!ok) throw new ConfigError('invalid', `cannot write ${what} ${quote(value)}`);
}

function expireText(what: string, expire: number): string {
  ensure(isExpire(expire), `expire of ${what}`, String(expire));
  return String(expire);
}

/**
 * The fields Proxmox has not (source restriction, rotation grace), only on the
 * lines of tokens that have them: other lines stay as Proxmox writes them.
 */
function tokenExtras(tokenid: string, token: TokenEntry): string {
  const allowed = token.allowedIps ?? '';
  const grace = token.graceUntil ?? 0;
  if (allowed === '' && grace === 0) return '';
  ensure(canonicalAllowedIps(allowed) === allowed, `allowed-ips of ${tokenid}`, allowed);
  // Encoded as comments are: an IPv6 address's ':' would end the field.
  return `${encodeText(allowed)}:${expireText(tokenid, grace)}:`;
}

function isUserid(value: string): boolean {
  return isAuthid(value) && !isTokenid(value);
}

function userLines(config: UserConfig, tokens: boolean): string[] {
  const lines: string[] = [];
  for (const userid of sorted(config.users.keys())) {
    const user = config.users.get(userid);
    if (!user) continue;
    ensure(isUserid(userid), 'user id', userid);
    ensure(isRawField(user.email), 'email of', userid);
    ensure(isRawField(user.keys), 'keys of', userid);
    const names = `${encodeText(user.firstname)}:${encodeText(user.lastname)}`;
    lines.push(
      `user:${userid}:${flag(user.enable)}:${expireText(userid, user.expire)}:${names}:` +
        `${user.email}:${encodeText(user.comment)}:${user.keys}:`,
    );
    if (!tokens) continue;
    for (const tokenName of sorted(user.tokens.keys())) {
      const token = user.tokens.get(tokenName);
      if (token) lines.push(tokenLine(`${userid}!${tokenName}`, token));
    }
  }
  return lines;
}

/** One token's line, as user.cfg holds it (and multi-host mode's store, one key per token). */
export function tokenLine(tokenid: string, token: TokenEntry): string {
  ensure(isTokenid(tokenid), 'token id', tokenid);
  return (
    `token:${tokenid}:${flag(token.enable)}:${expireText(tokenid, token.expire)}:` +
    `${flag(token.privsep)}:${encodeText(token.comment)}:${tokenExtras(tokenid, token)}`
  );
}

function groupLines(config: UserConfig): string[] {
  return sorted(config.groups.keys()).map((groupid) => {
    ensure(isGroupId(groupid), 'group id', groupid);
    const group = config.groups.get(groupid);
    const members = sorted(group?.members ?? []);
    for (const member of members) ensure(isUserid(member), 'member', member);
    return `group:${groupid}:${members.join(',')}:${encodeText(group?.comment ?? '')}:`;
  });
}

function roleLines(config: UserConfig): string[] {
  return sorted(config.roles.keys()).map((roleid) => {
    ensure(isRoleId(roleid), 'role id', roleid);
    const privileges = sorted(config.roles.get(roleid) ?? []);
    for (const privilege of privileges) ensure(isPrivilegeName(privilege), 'privilege', privilege);
    return `role:${roleid}:${privileges.join(',')}:`;
  });
}

/** Like PVE: one line per (propagate, role list), listing every id that has exactly that. */
function aclLines(config: UserConfig): string[] {
  const lines: string[] = [];
  for (const path of sorted(config.acl.keys())) {
    ensure(normalizeAclPath(path) === path, 'acl path', path);
    const node = config.acl.get(path);
    if (!node) continue;
    for (const [kind, prefix] of ACL_KINDS) {
      const byRoles = new Map<string, string[]>();
      for (const [id, roles] of node[kind]) {
        const ugid = `${prefix}${id}`;
        checkUgid(kind, id);
        for (const propagate of [false, true]) {
          const list = roleList(roles, propagate);
          if (list === '') continue;
          const key = `${flag(propagate)}:${list}`;
          byRoles.set(key, [...(byRoles.get(key) ?? []), ugid]);
        }
      }
      for (const key of sorted(byRoles.keys())) {
        const [propagate, list] = key.split(':');
        const ugids = sorted(byRoles.get(key) ?? []).join(',');
        lines.push(`acl:${propagate}:${path}:${ugids}:${list}:`);
      }
    }
  }
  return lines;
}

function roleList(roles: AclRoles, propagate: boolean): string {
  const selected = [...roles].filter(([, flagValue]) => flagValue === propagate);
  const names = sorted(selected.map(([role]) => role));
  for (const role of names) ensure(isRoleId(role), 'role id', role);
  return names.join(',');
}

function checkUgid(kind: keyof AclNode, id: string): void {
  const ok = kind === 'groups' ? isGroupId(id) : kind === 'users' ? isUserid(id) : isTokenid(id);
  ensure(ok, 'acl member', id);
}

/** The text of user.cfg; throws ConfigError('invalid') for a value the format cannot hold. */
export interface WriteOptions {
  /** Write the token lines (default); false when the tokens live in the token database. */
  tokens?: boolean;
}

export function writeUserConfig(config: UserConfig, options: WriteOptions = {}): string {
  const sections = [
    userLines(config, options.tokens ?? true),
    groupLines(config),
    poolLines(config),
    roleLines(config),
    aclLines(config),
  ];
  return sections
    .filter((lines) => lines.length > 0)
    .map((lines) => `${lines.join('\n')}\n`)
    .join('\n');
}
