/**
 * Proxmox VE's user.cfg read as PVE 9.1 reads it: parse_user_config in
 * pve-access-control 9.1.1 (src/PVE/AccessControl.pm, commit 5ccd07d9302562b7),
 * with normalize_path and find_acl_tree_node for ACL paths.
 *
 * PVE splits a line at ':' and takes what is there: a missing field is empty,
 * a line need not end with ':', and fields after the ones it knows are
 * ignored. So a short line is not a cut one here (our own dialect reads it so,
 * parse.ts): `user:joe@pve:1` is an enabled user that never expires,
 * `token:joe@pve!ci` a token without privilege separation, and the last role of
 * `acl:1:/:joe@pve:PVEAuditor` counts. Flags are Perl truth: empty and '0' are
 * false, anything else true. A line PVE skips is skipped, with a warning.
 *
 * Where PVE's reading depends on the order of lines, so does this one: a later
 * line for the same user replaces it (and the tokens read before it), later
 * lines for a group, role or token add to or update it, an ACL line only names
 * tokens and roles that exist by then, but users and groups that may come later
 * in the file. Users and groups that never come are dropped from groups and
 * ACLs at the end, which changes no privilege.
 *
 * Deliberate differences (README, "Deliberate differences from Proxmox VE"):
 * a `role:` line for a built-in role is ignored (PVE adds its privileges to the
 * built-in role itself, for every user of it); an ACL path with a '.' or '..'
 * segment is skipped; ids this project cannot hold (longer than 64 characters,
 * a realm longer than 32, control characters) are skipped with a warning.
 */
import { quote } from '../errors.js';
import { parseAuthid, parseTokenid, parseUserid } from '../ids.js';
import { SUPERUSER } from './access-control.js';
import { removeAclEntriesWhere } from './acl.js';
import { decodeText } from './encoding.js';
import { addPrivileges, field, isUserid, type LineContext, type Problem } from './lines.js';
import { parsePoolLine } from './pools.js';
import { isGroupId, isRawField, isRoleId, normalizeAclPath, splitList } from './syntax.js';
import {
  type AclNode,
  aclEntryOf,
  newUserEntry,
  type TokenEntry,
  type UserConfig,
} from './types.js';

/** The data fields PVE reads of each line type (after the type). */
const PVE_FIELDS = { user: 8, token: 4, group: 3, role: 2, acl: 4, pool: 4 } as const;
/** PVE's token name: its realm_regex, so a letter and at least one more character. */
const PVE_TOKEN_NAME = /^[A-Za-z][A-Za-z0-9.\-_]+$/;
/** The longest user or token id this project holds (src/ids.ts). */
const MAX_ID = 64;
/** PVE's normalize_path accepts these characters ([[:alnum:]], '.', '-', '_', '/'). */
const PVE_ACL_PATH_CHARS = /^[A-Za-z0-9.\-_/]+$/;

/** Perl's truth for a field: '' and '0' are false, anything else is true. */
export function perlTrue(value: string): boolean {
  return value !== '' && value !== '0';
}

/**
 * PVE's EXPIRE: false (empty, '0') is 0, never; otherwise digits, or the line
 * is skipped (null). Perl keeps any number of digits; beyond the largest safe
 * integer (some 285 million years) it is held as that, which expires no sooner.
 */
export function pveExpire(value: string): { expire: number; clamped: boolean } | null {
  if (!perlTrue(value)) return { expire: 0, clamped: false };
  if (!/^\d+$/.test(value)) return null;
  const expire = Number(value);
  return Number.isSafeInteger(expire)
    ? { expire, clamped: false }
    : { expire: Number.MAX_SAFE_INTEGER, clamped: true };
}

/**
 * The ACL node a path names in PVE: normalize_path ('' and '0' are invalid,
 * '//' collapses, a trailing '/' goes, a missing leading '/' is added, then
 * only [[:alnum:]._-/] may remain), then find_acl_tree_node, which skips every
 * '0' segment, so '/storage/0' is '/storage' there. Null when PVE skips the line.
 */
export function pveAclNodePath(text: string): string | null {
  if (!perlTrue(text) || !PVE_ACL_PATH_CHARS.test(text)) return null;
  const segments = text.split('/').filter((segment) => perlTrue(segment));
  return `/${segments.join('/')}`;
}

/** Reads PVE's lines one by one, then settles what depends on the whole file. */
export interface PveReader {
  line(context: LineContext): Problem;
  finish(config: UserConfig): void;
}

/** A name (group member, ACL user or group) whose existence is settled at the end. */
interface LaterReference {
  kind: 'member' | keyof AclNode;
  id: string;
  warn(detail: string): void;
}

export function pveReader(config: UserConfig): PveReader {
  // PVE's userconfig_force_defaults runs before the first line too: root@pam exists from the
  // start (so `token:root@pam!x` needs no user line), and a `user:root@pam` line replaces it.
  config.users.set(SUPERUSER, newUserEntry());
  const userLines = new Set<string>();
  const later = new Map<string, LaterReference>();
  const remember = (context: LineContext, kind: LaterReference['kind'], id: string) => {
    const key = `${kind}\0${id}`;
    if (!later.has(key)) later.set(key, { kind, id, warn: context.warn });
  };
  return {
    line(context) {
      const type = field(context.fields, 0);
      if (Object.hasOwn(PVE_FIELDS, type)) {
        ignoreExtraFields(context, PVE_FIELDS[type as keyof typeof PVE_FIELDS]);
      }
      switch (type) {
        case 'user':
          return readUser(context, userLines);
        case 'token':
          return readToken(context);
        case 'group':
          return readGroup(context, (userid) => remember(context, 'member', userid));
        case 'role':
          return readRole(context);
        case 'acl':
          return readAcl(context, (kind, id) => remember(context, kind, id));
        case 'pool':
          return parsePoolLine({
            ...context,
            warnIfCut: () => undefined,
            listAt: (index) => splitList(field(context.fields, index)),
          });
        default:
          return `ignoring line of unknown type ${quote(type, 16)}`;
      }
    },
    finish(config) {
      settle(config, [...later.values()]);
    },
  };
}

function ignoreExtraFields(context: LineContext, known: number): void {
  if (context.fields.length > known + 1) {
    context.warn(`ignoring the fields after the first ${known}, as PVE does`);
  }
}

/** Why an id PVE may accept is refused here (see the README's deliberate differences). */
function unsupported(id: string): string {
  return id.length > MAX_ID
    ? ` (longer than ${MAX_ID} characters, which this project cannot hold)`
    : '';
}

/** PVE's `decode_text($x) if $x`: a false field ('' or '0') is no text. */
function text(value: string): string {
  return perlTrue(value) ? decodeText(value) : '';
}

/** `seen`: the users read from lines so far (root@pam is there without one). */
function readUser(context: LineContext, seen: Set<string>): Problem {
  const { fields, config } = context;
  const userid = field(fields, 1);
  try {
    parseUserid(userid);
  } catch {
    return `ignoring user ${quote(userid)}: invalid user id${unsupported(userid)}`;
  }
  const expire = pveExpire(field(fields, 3));
  if (expire === null) return `ignoring user ${quote(userid)}: invalid expire`;
  if (expire.clamped) context.warn(`expire of user ${quote(userid)} read as ${expire.expire}`);
  let email = field(fields, 6);
  let keys = perlTrue(field(fields, 8)) ? field(fields, 8) : '';
  // PVE stores both verbatim; ours must not be able to break a line when written.
  if (!isRawField(email)) {
    context.warn(`dropping the email of user ${quote(userid)}: spaces or control characters`);
    email = '';
  }
  if (!isRawField(keys)) {
    context.warn(`dropping the keys of user ${quote(userid)}: spaces or control characters`);
    keys = '';
  }
  const earlier = config.users.get(userid);
  if (earlier && seen.has(userid)) {
    const tokens = [...earlier.tokens.keys()].map((name) => quote(`${userid}!${name}`));
    context.warn(
      `user ${quote(userid)} again: this line replaces the earlier one, as in PVE` +
        (tokens.length > 0 ? `, and drops its tokens ${tokens.join(', ')}` : ''),
    );
  }
  seen.add(userid);
  config.users.set(
    userid,
    newUserEntry({
      enable: perlTrue(field(fields, 2)),
      expire: expire.expire,
      firstname: text(field(fields, 4)),
      lastname: text(field(fields, 5)),
      email,
      comment: text(field(fields, 7)),
      keys,
    }),
  );
}

/** PVE 9's `token:ID:EXPIRE:PRIVSEP:COMMENT`; every token is enabled. */
function readToken(context: LineContext): Problem {
  const { fields, config } = context;
  const tokenid = field(fields, 1);
  let userid: string;
  let tokenName: string;
  try {
    ({ userid, tokenName } = parseTokenid(tokenid));
  } catch {
    return `ignoring token ${quote(tokenid)}: invalid token id${unsupported(tokenid)}`;
  }
  if (!PVE_TOKEN_NAME.test(tokenName)) {
    return `ignoring token ${quote(tokenid)}: invalid token id for PVE (a letter, then [A-Za-z0-9._-]+)`;
  }
  const expire = pveExpire(field(fields, 2));
  if (expire === null) return `ignoring token ${quote(tokenid)}: invalid expire`;
  if (expire.clamped) context.warn(`expire of token ${quote(tokenid)} read as ${expire.expire}`);
  const user = config.users.get(userid);
  if (!user) return `ignoring token ${quote(tokenid)}: user does not exist (yet)`;
  // A second line for a token updates it, keeping the comment unless it gives one.
  const token: TokenEntry = user.tokens.get(tokenName) ?? {
    enable: true,
    expire: 0,
    privsep: false,
    comment: '',
  };
  token.expire = expire.expire;
  token.privsep = perlTrue(field(fields, 3));
  const comment = text(field(fields, 4));
  if (comment !== '') token.comment = comment;
  user.tokens.set(tokenName, token);
}

/** Members may be users defined later in the file: settled at the end. */
function readGroup(context: LineContext, later: (userid: string) => void): Problem {
  const { fields, config } = context;
  const groupid = field(fields, 1);
  if (!isGroupId(groupid)) return `ignoring group ${quote(groupid)}: invalid group id`;
  let group = config.groups.get(groupid);
  if (!group) {
    group = { comment: '', members: new Set() };
    config.groups.set(groupid, group);
  }
  const comment = text(field(fields, 3));
  if (comment !== '') group.comment = comment;
  for (const member of splitList(field(fields, 2))) {
    if (!isUserid(member)) {
      context.warn(`ignoring member ${quote(member)} of group ${quote(groupid)}: invalid user id`);
      continue;
    }
    group.members.add(member);
    if (!config.users.has(member)) later(member);
  }
}

function readRole(context: LineContext): Problem {
  const { fields, config, access } = context;
  const roleid = field(fields, 1);
  if (!isRoleId(roleid)) return `ignoring role ${quote(roleid)}: invalid role id`;
  if (access.roles.has(roleid)) {
    return `ignoring role ${quote(roleid)}: a built-in role cannot be changed`;
  }
  // A second line for a role adds its privileges, as in PVE.
  let privileges = config.roles.get(roleid);
  if (!privileges) {
    privileges = new Set();
    config.roles.set(roleid, privileges);
  }
  addPrivileges(context, roleid, splitList(field(fields, 2)), privileges);
}

function readAcl(context: LineContext, later: (kind: keyof AclNode, id: string) => void): Problem {
  const { fields, config, access } = context;
  const propagate = perlTrue(field(fields, 1));
  const pathText = field(fields, 2);
  const nodePath = pveAclNodePath(pathText);
  if (nodePath === null) return `ignoring acl entry: invalid path ${quote(pathText)}`;
  const path = normalizeAclPath(nodePath);
  if (path === null) {
    return `ignoring acl entry: path ${quote(pathText)} is not supported here (no '.' or '..' segments, at most 1024 characters)`;
  }
  if (pathText.split('/').includes('0')) {
    context.warn(`acl path ${quote(pathText)} is ${quote(path)} in PVE, which skips '0' segments`);
  }
  const ugids = splitList(field(fields, 3));
  const roleNames = splitList(field(fields, 4));
  if (ugids.length === 0) context.warn('ignoring acl entry without users, groups or tokens');
  if (roleNames.length === 0) context.warn('ignoring acl entry without roles');
  const roles = roleNames.filter((role) => {
    if (!isRoleId(role)) context.warn(`ignoring invalid role name ${quote(role)} in acl`);
    else if (!access.roles.has(role) && !config.roles.has(role)) {
      context.warn(`ignoring unknown role ${quote(role)} in acl`);
    } else return true;
    return false;
  });
  if (roles.length === 0) return;
  for (const ugid of ugids) {
    const target = aclTarget(context, ugid);
    if (target === null) continue;
    const [kind, id] = target;
    if (kind !== 'tokens') later(kind, id);
    const entry = aclEntryOf(config, path, kind, id);
    for (const role of roles) entry.set(role, propagate);
  }
}

/**
 * `@group` or a user id, which may be defined later in the file; or a token
 * id, which must exist by now (PVE's check_token_exist). Null after a warning.
 */
function aclTarget(context: LineContext, ugid: string): [keyof AclNode, string] | null {
  const group = /^@(\S+)$/.exec(ugid)?.[1];
  if (group !== undefined && isGroupId(group)) return ['groups', group];
  if (isUserid(ugid)) return ['users', ugid];
  let id: ReturnType<typeof parseAuthid> | null = null;
  try {
    id = parseAuthid(ugid);
  } catch {
    // not an id this project can hold
  }
  if (id === null || id.tokenName === null) {
    context.warn(`ignoring invalid user, group or token ${quote(ugid)} in acl`);
    return null;
  }
  if (context.config.users.get(id.userid)?.tokens.has(id.tokenName)) return ['tokens', ugid];
  context.warn(`ignoring unknown token ${quote(ugid)} in acl`);
  return null;
}

/**
 * The end of the file: group members and ACL users and groups that were never
 * defined, and ACL tokens whose user a later line replaced, grant nothing in
 * PVE; they are dropped, with a warning at the line that named them.
 */
function settle(config: UserConfig, later: readonly LaterReference[]): void {
  for (const { kind, id, warn } of later) {
    if (kind === 'member' && !config.users.has(id)) {
      warn(`ignoring member ${quote(id)}: no such user in the file`);
    } else if (kind === 'users' && !config.users.has(id)) {
      warn(`ignoring unknown user ${quote(id)} in acl: not in the file`);
    } else if (kind === 'groups' && !config.groups.has(id)) {
      warn(`ignoring unknown group ${quote(`@${id}`)} in acl: not in the file`);
    }
  }
  for (const group of config.groups.values()) {
    for (const member of group.members) if (!config.users.has(member)) group.members.delete(member);
  }
  removeAclEntriesWhere(config, (kind, id) => {
    if (kind === 'users') return !config.users.has(id);
    if (kind === 'groups') return !config.groups.has(id);
    const token = parseTokenid(id);
    return !config.users.get(token.userid)?.tokens.has(token.tokenName);
  });
}
