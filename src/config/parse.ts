/**
 * Reads user.cfg, in our dialect here and in PVE's in pve-dialect.ts. Like PVE,
 * a bad line never makes the whole file unusable: it is skipped (or the bad
 * part of it is) and a warning names the line, so one typo cannot lock every
 * user out. Warnings are returned, not logged.
 */

import { ConfigError, quote } from '../errors.js';
import { isAuthid, parseAuthid, parseTokenid, parseUserid } from '../ids.js';
import type { AccessControlConfig } from './access-control.js';
import { accessConfigOrDefault } from './access-control.js';
import { canonicalAllowedIps } from './allowed-ips.js';
import { decodeText } from './encoding.js';
import {
  addPrivileges,
  field,
  isUserid,
  type LineContext,
  lineContext,
  type Problem,
} from './lines.js';
import { POOL_LINE_FIELDS, parsePoolLine } from './pools.js';
import { pveReader } from './pve-dialect.js';
import {
  isGroupId,
  isRawField,
  isRoleId,
  normalizeAclPath,
  parseExpire,
  parseFlag,
  splitList,
} from './syntax.js';
import {
  type AclNode,
  aclEntryOf,
  type ConfigWarning,
  createUserConfig,
  newUserEntry,
  type TokenEntry,
  type UserConfig,
} from './types.js';

/**
 * 'token-shadow': `token:ID:ENABLE:EXPIRE:PRIVSEP:COMMENT:`, and for a token
 * with a source restriction or a rotation grace `...:COMMENT:ALLOWED-IPS:GRACE-UNTIL:`
 * (ALLOWED-IPS encoded as COMMENT is: IPv6 addresses hold ':');
 * a line cut short never grants more than the whole line (our writer ends
 * every line with ':').
 * 'pve': Proxmox VE's own file, read with PVE 9.1's field semantics
 * (pve-dialect.ts): `token:ID:EXPIRE:PRIVSEP:COMMENT:`, missing fields take
 * PVE's defaults.
 */
export type UserConfigDialect = 'token-shadow' | 'pve';

/** How to read user.cfg: our dialect or PVE's, and under which access-control configuration. */
export interface ParseUserConfigOptions {
  dialect?: UserConfigDialect;
  /** Which privileges and built-in roles exist; default: the initialised one, or PVE's. */
  access?: AccessControlConfig;
  /**
   * The tokens are in the token database (src/store): token lines are not
   * expected, and a token's ACL entries are kept for any token of a known user.
   */
  tokensElsewhere?: boolean;
}

/** A parsed user.cfg and the warnings for the lines that were skipped. */
export interface ParsedUserConfig {
  config: UserConfig;
  warnings: ConfigWarning[];
}

const FIELD_COUNTS = { user: 9, token: 8, group: 4, role: 3, acl: 5 } as const;
/**
 * Complete fields (type included) a line needs before it may grant anything:
 * up to EXPIRE for users, PRIVSEP for tokens, the member, privilege and role
 * lists. What follows (names, comments, keys) grants nothing.
 */
const NEEDED = { user: 4, token: 5, group: 3, role: 3, acl: 5 } as const;

/** Parses user.cfg text; a bad line is skipped with a warning, never an exception. */
export function parseUserConfig(
  text: string,
  options: ParseUserConfigOptions = {},
): ParsedUserConfig {
  if (typeof text !== 'string') throw new ConfigError('invalid', 'user.cfg text must be a string');
  const dialect = options.dialect ?? 'token-shadow';
  if (dialect !== 'token-shadow' && dialect !== 'pve') {
    throw new ConfigError('invalid', `unknown user.cfg dialect ${quote(String(dialect))}`);
  }
  const access = options.access ?? accessConfigOrDefault();
  const config = createUserConfig();
  const warnings: ConfigWarning[] = [];
  const pve = dialect === 'pve' ? pveReader(config) : null;
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = (lines[index] ?? '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const context = lineContext(
      config,
      access,
      line,
      index + 1,
      warnings,
      options.tokensElsewhere === true,
    );
    const problem = pve ? pve.line(context) : parseLine(context);
    if (problem !== undefined) context.warn(problem);
  }
  if (pve) {
    pve.finish(config);
    // What is settled at the end of the file is warned about there; keep line order.
    warnings.sort((a, b) => a.line - b.line);
  }
  return { config, warnings };
}

function parseLine(context: LineContext): Problem {
  const type = field(context.fields, 0);
  switch (type) {
    case 'user':
      return parseUserLine(context);
    case 'token':
      return parseTokenLine(context);
    case 'group':
      return parseGroupLine(context);
    case 'role':
      return parseRoleLine(context);
    case 'acl':
      return parseAclLine(context);
    case 'pool':
      return tooManyFields(context, POOL_LINE_FIELDS) ?? parsePool(context);
    default:
      return `ignoring line of unknown type ${quote(type, 16)}`;
  }
}

/**
 * Warns once when the line has fewer complete fields than its type needs
 * (`needed`, counting the type); the callers then read what is missing or
 * possibly cut so that the line never grants more than the whole line did.
 */
function cutShort(context: LineContext, needed: number): boolean {
  if (context.complete >= needed) return false;
  context.warn(
    `${field(context.fields, 0)} entry cut short (${context.complete} of ${needed} fields)`,
  );
  return true;
}

/** A list field that may have been cut loses its last item: a prefix can name something else. */
function completeItems(context: LineContext, index: number): string[] {
  const items = splitList(field(context.fields, index));
  if (context.complete <= index) items.pop();
  return items;
}

function tooManyFields(context: LineContext, expected: number): Problem {
  if (context.fields.length <= expected) return undefined;
  return `ignoring ${field(context.fields, 0)} entry with too many fields`;
}

/** A pool line cut short keeps only the members it surely names (see pools.ts). */
function parsePool(context: LineContext): Problem {
  return parsePoolLine({
    ...context,
    warnIfCut: () => cutShort(context, POOL_LINE_FIELDS),
    listAt: (index) => completeItems(context, index),
  });
}

function parseUserLine(context: LineContext): Problem {
  const { fields, config } = context;
  const extra = tooManyFields(context, FIELD_COUNTS.user);
  if (extra) return extra;
  const userid = field(fields, 1);
  try {
    parseUserid(userid);
  } catch {
    return `ignoring user ${quote(userid)}: invalid user id`;
  }
  if (config.users.has(userid)) return `ignoring duplicate user ${quote(userid)}`;
  // An empty ENABLE is disabled, as PVE's `$enable ? 1 : 0`; so is a user whose
  // EXPIRE may be missing or cut (an empty one would read as "never").
  const unsure = cutShort(context, NEEDED.user);
  const enable = unsure ? false : parseFlag(field(fields, 2), false);
  if (enable === null) return `ignoring user ${quote(userid)}: invalid enable flag`;
  const expire = unsure ? 0 : parseExpire(field(fields, 3));
  if (expire === null) return `ignoring user ${quote(userid)}: invalid expire`;
  const email = field(fields, 6);
  const keys = field(fields, 8);
  if (!isRawField(email)) return `ignoring user ${quote(userid)}: invalid email`;
  if (!isRawField(keys)) return `ignoring user ${quote(userid)}: invalid keys`;
  config.users.set(
    userid,
    newUserEntry({
      enable,
      expire,
      firstname: decodeText(field(fields, 4)),
      lastname: decodeText(field(fields, 5)),
      email,
      comment: decodeText(field(fields, 7)),
      keys,
    }),
  );
}

function parseTokenLine(context: LineContext): Problem {
  const { fields, config } = context;
  const extra = tooManyFields(context, FIELD_COUNTS.token);
  if (extra) return extra;
  const tokenid = field(fields, 1);
  let userid: string;
  let tokenName: string;
  try {
    ({ userid, tokenName } = parseTokenid(tokenid));
  } catch {
    return `ignoring token ${quote(tokenid)}: invalid token id`;
  }
  const user = config.users.get(userid);
  if (!user) return `ignoring token ${quote(tokenid)}: user does not exist (yet)`;
  if (user.tokens.has(tokenName)) return `ignoring duplicate token ${quote(tokenid)}`;
  // Without a complete PRIVSEP the token could read as privsep=0: dropped.
  if (cutShort(context, NEEDED.token)) {
    return `ignoring token ${quote(tokenid)}: privsep missing or cut`;
  }
  const rest = fields.slice(2);
  const enable = parseFlag(field(rest, 0), false);
  const expire = parseExpire(field(rest, 1));
  const privsep = parseFlag(field(rest, 2), false);
  if (enable === null) return `ignoring token ${quote(tokenid)}: invalid enable flag`;
  if (expire === null) return `ignoring token ${quote(tokenid)}: invalid expire`;
  if (privsep === null) return `ignoring token ${quote(tokenid)}: invalid privsep`;
  const token: TokenEntry = { enable, expire, privsep, comment: decodeText(field(rest, 3)) };
  // A source restriction that may be cut could name a wider network: the token goes.
  const allowed = field(rest, 4);
  if (allowed !== '') {
    if (context.complete < 7) return `ignoring token ${quote(tokenid)}: allowed-ips cut`;
    try {
      token.allowedIps = canonicalAllowedIps(decodeText(allowed));
    } catch {
      return `ignoring token ${quote(tokenid)}: invalid allowed-ips`;
    }
  }
  // A grace that may be cut reads as none: the previous secret stops, nothing more is granted.
  const grace = context.complete >= 8 ? parseExpire(field(rest, 5)) : 0;
  if (grace === null) return `ignoring token ${quote(tokenid)}: invalid grace-until`;
  if (grace > 0) token.graceUntil = grace;
  user.tokens.set(tokenName, token);
}

/**
 * The config parseTokenEntry reads every line into (a host joining reads a
 * million): it holds only the line's user, while the line is read.
 */
const scratch = createUserConfig();

/**
 * One token line on its own (a token's entry in multi-host mode's store), by
 * the rules of a file: the problem a file would warn about when it would drop
 * the line.
 */
export function parseTokenEntry(
  line: string,
): { userid: string; name: string; entry: TokenEntry } | { problem: string } {
  const config = scratch;
  const warnings: ConfigWarning[] = [];
  const context = lineContext(config, accessConfigOrDefault(), line, 1, warnings);
  if (field(context.fields, 0) !== 'token') return { problem: 'not a token line' };
  let userid: string;
  let name: string;
  try {
    ({ userid, tokenName: name } = parseTokenid(field(context.fields, 1)));
  } catch {
    return { problem: 'invalid token id' };
  }
  const user = newUserEntry();
  config.users.set(userid, user);
  try {
    const problem = parseTokenLine(context);
    const entry = user.tokens.get(name);
    if (problem !== undefined || entry === undefined) return { problem: problem ?? 'dropped' };
    return { userid, name, entry };
  } finally {
    config.users.delete(userid);
  }
}

function parseGroupLine(context: LineContext): Problem {
  const { fields, config } = context;
  const extra = tooManyFields(context, FIELD_COUNTS.group);
  if (extra) return extra;
  const groupid = field(fields, 1);
  if (!isGroupId(groupid)) return `ignoring group ${quote(groupid)}: invalid group id`;
  if (config.groups.has(groupid)) return `ignoring duplicate group ${quote(groupid)}`;
  cutShort(context, NEEDED.group);
  const members = new Set<string>();
  for (const member of completeItems(context, 2)) {
    if (!isUserid(member)) {
      context.warn(`ignoring member ${quote(member)} of group ${quote(groupid)}: invalid user id`);
    } else if (!config.users.has(member)) {
      context.warn(`ignoring member ${quote(member)} of group ${quote(groupid)}: no such user`);
    } else {
      members.add(member);
    }
  }
  config.groups.set(groupid, { comment: decodeText(field(fields, 3)), members });
}

function parseRoleLine(context: LineContext): Problem {
  const { fields, config, access } = context;
  const extra = tooManyFields(context, FIELD_COUNTS.role);
  if (extra) return extra;
  const roleid = field(fields, 1);
  if (!isRoleId(roleid)) return `ignoring role ${quote(roleid)}: invalid role id`;
  if (access.roles.has(roleid)) {
    return `ignoring role ${quote(roleid)}: a built-in role cannot be redefined`;
  }
  if (config.roles.has(roleid)) return `ignoring duplicate role ${quote(roleid)}`;
  cutShort(context, NEEDED.role);
  const privileges = new Set<string>();
  addPrivileges(context, roleid, completeItems(context, 2), privileges);
  config.roles.set(roleid, privileges);
}

function parseAclLine(context: LineContext): Problem {
  const { fields, config, access } = context;
  const extra = tooManyFields(context, FIELD_COUNTS.acl);
  if (extra) return extra;
  if (cutShort(context, NEEDED.acl)) return denyCutAcl(context);
  const propagate = parseFlag(field(fields, 1), false);
  if (propagate === null) return 'ignoring acl entry: invalid propagate flag';
  const pathText = field(fields, 2);
  const path = normalizeAclPath(pathText);
  if (path === null) return `ignoring acl entry: invalid path ${quote(pathText)}`;
  const ugids = splitList(field(fields, 3));
  const roleNames = splitList(field(fields, 4));
  if (ugids.length === 0) context.warn('ignoring acl entry without users, groups or tokens');
  if (roleNames.length === 0) context.warn('ignoring acl entry without roles');
  const roles: string[] = [];
  for (const role of roleNames) {
    if (!isRoleId(role)) {
      context.warn(`ignoring invalid role name ${quote(role)} in acl`);
    } else if (!access.roles.has(role) && !config.roles.has(role)) {
      context.warn(`ignoring unknown role ${quote(role)} in acl`);
    } else {
      roles.push(role);
    }
  }
  const targets: Array<[keyof AclNode, string]> = [];
  for (const ugid of ugids) {
    const target = resolveUgid(context, ugid);
    if (target) targets.push(target);
  }
  if (roles.length === 0 || targets.length === 0) return;
  for (const [kind, id] of targets) {
    const entry = aclEntryOf(config, path, kind, id);
    for (const role of roles) entry.set(role, propagate);
  }
}

/**
 * An ACL line cut short may have lost whom it concerns or a NoAccess among its
 * roles: dropping it could grant more than the whole line did. So it denies
 * instead: NoAccess, propagated, for every user and token known so far, at
 * its path, or at the parent of the path's last segment when that may be cut.
 * A line cut before its path says nowhere to deny and is dropped.
 */
function denyCutAcl(context: LineContext): Problem {
  const { fields, config, access } = context;
  const noAccess = access.noAccessRole;
  let pathText = field(fields, 2);
  if (context.complete < 3) pathText = pathText.slice(0, pathText.lastIndexOf('/') + 1);
  const path = normalizeAclPath(pathText);
  if (noAccess === null || path === null) return 'ignoring acl entry cut before its path';
  // Only ids an ACL line can name (one list item: no separator inside) get the entry.
  const nameable = (id: string) => splitList(id).length === 1 && splitList(id)[0] === id;
  for (const [userid, user] of config.users) {
    if (!nameable(userid)) continue;
    aclEntryOf(config, path, 'users', userid).set(noAccess, true);
    for (const name of user.tokens.keys()) {
      const tokenid = `${userid}!${name}`;
      if (nameable(tokenid)) aclEntryOf(config, path, 'tokens', tokenid).set(noAccess, true);
    }
  }
  return `denying every user and token at ${quote(path)} (NoAccess) until the line is repaired`;
}

/** `@group`, a user id or a token id, which must exist; null (after a warning) otherwise. */
function resolveUgid(context: LineContext, ugid: string): [keyof AclNode, string] | null {
  const { config } = context;
  if (ugid.startsWith('@')) {
    const groupid = ugid.slice(1);
    if (!isGroupId(groupid)) context.warn(`ignoring invalid group ${quote(ugid)} in acl`);
    else if (!config.groups.has(groupid))
      context.warn(`ignoring unknown group ${quote(ugid)} in acl`);
    else return ['groups', groupid];
    return null;
  }
  if (!isAuthid(ugid)) {
    context.warn(`ignoring invalid user or token ${quote(ugid)} in acl`);
    return null;
  }
  const id = parseAuthid(ugid);
  const user = config.users.get(id.userid);
  if (id.tokenName === null) {
    if (user) return ['users', ugid];
    context.warn(`ignoring unknown user ${quote(ugid)} in acl`);
  } else {
    if (user && (context.tokensElsewhere || user.tokens.has(id.tokenName))) {
      return ['tokens', ugid];
    }
    context.warn(`ignoring unknown token ${quote(ugid)} in acl`);
  }
  return null;
}
