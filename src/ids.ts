/**
 * User ids (`NAME@REALM`) and token ids (`NAME@REALM!TOKEN`), with the grammar
 * Proxmox uses. An id is split at the last '@', then at the last '!' after it,
 * so a user name may itself contain '@' or '!'.
 */
import { InvalidIdError } from './errors.js';
import { ownCopy } from './strings.js';

const REALM = /^[A-Za-z][A-Za-z0-9.\-_]{1,31}$/;
/**
 * No whitespace, ':', '/' or control characters (C0, DEL, C1), as PVE; and
 * nothing that cannot come back from user.cfg as written: not ',' or ';'
 * (user.cfg's lists, a group's members or an ACL line's ids, split there, so
 * `a,root@pam,b@pve` would read back as three members), and no lone surrogate
 * (UTF-8 has none: it is written as U+FFFD, the twin of another id).
 */
const USER_NAME = /^[^\s:/,;\p{Cc}\p{Cs}]+$/u;
const TOKEN_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
const MIN_ID = 3;
const MAX_ID = 64;

/** A parsed user id. */
export interface Userid {
  /** The whole id, `NAME@REALM`. */
  readonly userid: string;
  readonly name: string;
  readonly realm: string;
}

/** A parsed user or token id. */
export interface Authid {
  /** The whole id: `NAME@REALM` or `NAME@REALM!TOKEN`. */
  readonly authid: string;
  readonly userid: string;
  readonly name: string;
  readonly realm: string;
  /** The token name, or null when the id names a user. */
  readonly tokenName: string | null;
}

/** A parsed token id. */
export interface Tokenid extends Authid {
  readonly tokenName: string;
}

/**
 * What the access checks need of an id, parsed once: an Authid, or the
 * identity authentication answers. Checks take it instead of a string so that
 * an id parsed from the Authorization header is not parsed again per decision.
 */
export type AuthidParts = Pick<Authid, 'authid' | 'userid' | 'tokenName'>;

/** The parts of `value`: parsed when it is a string (InvalidIdError), as given otherwise. */
export function authidParts(value: string | AuthidParts): AuthidParts {
  return typeof value === 'string' ? parseAuthid(value) : value;
}

/** The parts of `value`, or null when it is not a valid id. Never throws. */
export function validAuthidParts(value: string | AuthidParts): AuthidParts | null {
  try {
    return authidParts(value);
  } catch {
    return null;
  }
}

/** The user behind a user or token id. */
export function userParts(id: AuthidParts): AuthidParts {
  return id.tokenName === null ? id : { authid: id.userid, userid: id.userid, tokenName: null };
}

function checkLength(kind: string, value: string): void {
  if (value.length < MIN_ID || value.length > MAX_ID) {
    throw new InvalidIdError(kind, value, `length must be ${MIN_ID}-${MAX_ID} characters`);
  }
}

function checkUserParts(kind: string, value: string, name: string, realm: string): void {
  if (!USER_NAME.test(name)) {
    throw new InvalidIdError(
      kind,
      value,
      'user name must be non-empty, without whitespace, ":", "/", ",", ";", control characters or lone surrogates',
    );
  }
  if (!REALM.test(realm)) {
    throw new InvalidIdError(kind, value, 'realm must match [A-Za-z][A-Za-z0-9.-_]+ (2-32)');
  }
}

/** Throws InvalidIdError unless `name` is a valid token name. */
export function checkTokenName(name: string, kind = 'token name', value = name): string {
  if (!TOKEN_NAME.test(name)) {
    throw new InvalidIdError(kind, value, 'token name must match [A-Za-z0-9_][A-Za-z0-9._-]*');
  }
  return name;
}

/**
 * Ids already parsed, so that the few ids a process sees on every request are
 * parsed once, not several times per request. Bounded: cleared when full, so
 * a flood of distinct ids costs memory for at most PARSED_MAX of them.
 */
const parsed = new Map<string, Authid>();
const PARSED_MAX = 4096;

/** Parses `USER@REALM` or `USER@REALM!TOKEN`. */
export function parseAuthid(value: string): Authid {
  const known = parsed.get(value);
  if (known !== undefined) return known;
  // Kept beyond this call: must not be a slice of a header holding a secret.
  const own = typeof value === 'string' ? ownCopy(value) : value;
  const id = parseFresh(own);
  if (parsed.size >= PARSED_MAX) parsed.clear();
  parsed.set(own, id);
  return id;
}

function parseFresh(value: string): Authid {
  if (typeof value !== 'string') throw new InvalidIdError('id', String(value), 'not a string');
  checkLength('id', value);
  const at = value.lastIndexOf('@');
  if (at < 0) throw new InvalidIdError('id', value, 'missing "@REALM"');
  const bang = value.indexOf('!', at);
  const lastBang = value.lastIndexOf('!');
  const name = value.slice(0, at);
  const realm = bang < 0 ? value.slice(at + 1) : value.slice(at + 1, bang);
  let tokenName: string | null = null;
  if (bang >= 0) {
    if (bang !== lastBang) throw new InvalidIdError('id', value, 'more than one "!" after "@"');
    tokenName = checkTokenName(value.slice(bang + 1), 'token id', value);
  }
  checkUserParts('id', value, name, realm);
  const userid = bang < 0 ? value : value.slice(0, bang);
  return Object.freeze({ authid: value, userid, name, realm, tokenName });
}

/** Parses `USER@REALM`; a token id is an error. */
export function parseUserid(value: string): Userid {
  const id = parseAuthid(value);
  if (id.tokenName !== null) throw new InvalidIdError('user id', value, 'is a token id');
  return Object.freeze({ userid: id.userid, name: id.name, realm: id.realm });
}

/** Parses `USER@REALM!TOKEN`; a plain user id is an error. */
export function parseTokenid(value: string): Tokenid {
  const id = parseAuthid(value);
  if (id.tokenName === null) throw new InvalidIdError('token id', value, 'missing "!TOKEN"');
  return id as Tokenid;
}

/** True when `value` is a valid token id. Never throws. */
export function isTokenid(value: string): boolean {
  try {
    return parseAuthid(value).tokenName !== null;
  } catch {
    return false;
  }
}

/** True when `value` is a valid user or token id. Never throws. */
export function isAuthid(value: string): boolean {
  try {
    parseAuthid(value);
    return true;
  } catch {
    return false;
  }
}

/** `NAME@REALM` from its parts, validated. */
export function formatUserid(name: string, realm: string): string {
  return parseUserid(`${name}@${realm}`).userid;
}

/** `USERID!TOKEN` from a user id and a token name, validated. */
export function joinTokenid(userid: string, tokenName: string): string {
  parseUserid(userid);
  return parseTokenid(`${userid}!${tokenName}`).authid;
}

/** `[userid, tokenName]` of a token id. */
export function splitTokenid(tokenid: string): [userid: string, tokenName: string] {
  const id = parseTokenid(tokenid);
  return [id.userid, id.tokenName];
}

/**
 * Where token.shadow (and etcd) keeps a token's previous secret during a
 * rotation grace: the token id and a suffix no token id can have (a space),
 * so the key never names a token and follows its token's every change.
 */
export function previousSecretId(tokenid: string): string {
  return `${tokenid} previous`;
}

/** Which token, and which of its secrets, a key of token.shadow (or etcd's shadow/) names. */
export function secretOwnerOf(id: string): { tokenid: string; previous: boolean } {
  const suffix = previousSecretId('');
  return id.endsWith(suffix)
    ? { tokenid: id.slice(0, -suffix.length), previous: true }
    : { tokenid: id, previous: false };
}

/** A token's keys in token.shadow: its secret and its previous one (rotation grace). */
export function secretIdsOf(tokenid: string): [string, string] {
  return [tokenid, previousSecretId(tokenid)];
}
