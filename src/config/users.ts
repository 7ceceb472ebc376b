/**
 * Changing users and their tokens. Removing one also removes every reference to
 * it (tokens, group memberships, ACL entries), as PVE does, so the
 * configuration never points at something that is gone.
 */
import { ConfigError, quote } from '../errors.js';
import { parseTokenid, parseUserid } from '../ids.js';
import { removeAclEntriesWhere } from './acl.js';
import { canonicalAllowedIps } from './allowed-ips.js';
import { setUserGroups } from './groups.js';
import { isExpire, isRawField, isWellFormedText } from './syntax.js';
import { newUserEntry, type TokenEntry, type UserConfig, type UserEntry } from './types.js';

/** The fields of a user that can be set. */
export interface UserFields {
  enable?: boolean;
  expire?: number;
  firstname?: string;
  lastname?: string;
  email?: string;
  comment?: string;
  keys?: string;
}

/** The fields of a token that can be set. */
export interface TokenFields {
  enable?: boolean;
  expire?: number;
  privsep?: boolean;
  comment?: string;
  /** Where its requests may come from (allowed-ips.ts); '' for anywhere. */
  allowedIps?: string;
}

function invalid(message: string, cause?: unknown): ConfigError {
  return new ConfigError('invalid', message, cause === undefined ? undefined : { cause });
}

function validUserid(userid: string): string {
  try {
    return parseUserid(userid).userid;
  } catch (error) {
    throw invalid(`invalid user id ${quote(String(userid))}`, error);
  }
}

function validTokenid(tokenid: string): { userid: string; tokenName: string } {
  try {
    return parseTokenid(tokenid);
  } catch (error) {
    throw invalid(`invalid token id ${quote(String(tokenid))}`, error);
  }
}

function checkCommon(what: string, fields: { enable?: boolean; expire?: number }): void {
  if (fields.enable !== undefined && typeof fields.enable !== 'boolean') {
    throw invalid(`enable of ${what} must be a boolean`);
  }
  if (fields.expire !== undefined && !isExpire(fields.expire)) {
    throw invalid(`expire of ${what} must be a non-negative integer (epoch seconds)`);
  }
}

function checkText(what: string, name: string, value: string | undefined): void {
  if (value !== undefined && (typeof value !== 'string' || !isWellFormedText(value))) {
    throw invalid(`${name} of ${what} must be well-formed text`);
  }
}

function checkUserFields(userid: string, fields: UserFields): void {
  const what = quote(userid);
  checkCommon(what, fields);
  checkText(what, 'firstname', fields.firstname);
  checkText(what, 'lastname', fields.lastname);
  checkText(what, 'comment', fields.comment);
  for (const name of ['email', 'keys'] as const) {
    const value = fields[name];
    if (value !== undefined && (typeof value !== 'string' || !isRawField(value))) {
      throw invalid(`${name} of ${what} must not contain whitespace, ':' or control characters`);
    }
  }
}

function checkTokenFields(tokenid: string, fields: TokenFields): void {
  const what = quote(tokenid);
  checkCommon(what, fields);
  checkText(what, 'comment', fields.comment);
  if (fields.privsep !== undefined && typeof fields.privsep !== 'boolean') {
    throw invalid(`privsep of ${what} must be a boolean`);
  }
  // Checked before anything is assigned: a bad list changes nothing.
  if (fields.allowedIps !== undefined) canonicalAllowedIps(fields.allowedIps);
}

function assignDefined<T extends object>(target: T, source: Partial<T>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value !== undefined && key in target) (target as Record<string, unknown>)[key] = value;
  }
}

function pickUserFields(fields: UserFields): UserFields {
  const { enable, expire, firstname, lastname, email, comment, keys } = fields;
  return { enable, expire, firstname, lastname, email, comment, keys };
}

/** The user entry; ConfigError('not-found') when there is none. */
export function getUser(config: UserConfig, userid: string): UserEntry {
  const user = config.users.get(userid);
  if (!user) throw new ConfigError('not-found', `no such user ${quote(String(userid))}`);
  return user;
}

/** The token entry; ConfigError('not-found') when the user or the token does not exist. */
export function getToken(config: UserConfig, tokenid: string): TokenEntry {
  const { userid, tokenName } = validTokenid(tokenid);
  const token = config.users.get(userid)?.tokens.get(tokenName);
  if (!token) throw new ConfigError('not-found', `no such token ${quote(tokenid)}`);
  return token;
}

/** Adds a user, enabled and never expiring unless told otherwise, and puts it in `groups`. */
export function addUser(
  config: UserConfig,
  userid: string,
  fields: UserFields & { groups?: Iterable<string> } = {},
): UserEntry {
  validUserid(userid);
  checkUserFields(userid, fields);
  if (config.users.has(userid)) throw new ConfigError('exists', `user ${quote(userid)} exists`);
  const groups = fields.groups === undefined ? undefined : [...fields.groups];
  const user = newUserEntry();
  assignDefined(user, pickUserFields(fields));
  config.users.set(userid, user);
  if (groups !== undefined) {
    try {
      setUserGroups(config, userid, groups, false);
    } catch (error) {
      config.users.delete(userid);
      throw error;
    }
  }
  return user;
}

/**
 * Changes the given fields. `groups` replaces the user's groups, or with
 * `append` adds to them, as PVE's `PUT /access/users/{userid}` does.
 */
export function updateUser(
  config: UserConfig,
  userid: string,
  changes: UserFields & { groups?: Iterable<string>; append?: boolean },
): UserEntry {
  const user = getUser(config, userid);
  checkUserFields(userid, changes);
  if (changes.groups !== undefined)
    setUserGroups(config, userid, [...changes.groups], !!changes.append);
  assignDefined(user, pickUserFields(changes));
  return user;
}

/** Removes a user with its tokens, its group memberships and every ACL entry of either. */
export function removeUser(config: UserConfig, userid: string): void {
  const user = getUser(config, userid);
  const tokenids = new Set([...user.tokens.keys()].map((name) => `${userid}!${name}`));
  config.users.delete(userid);
  for (const group of config.groups.values()) group.members.delete(userid);
  removeAclEntriesWhere(config, (kind, id) => {
    return (kind === 'users' && id === userid) || (kind === 'tokens' && tokenids.has(id));
  });
}

/**
 * Adds a token: enabled, privilege-separated and without an expiry of its own
 * (it still ends with its user), unless told otherwise, as PVE's API does.
 */
export function addToken(
  config: UserConfig,
  tokenid: string,
  fields: TokenFields = {},
): TokenEntry {
  const { userid, tokenName } = validTokenid(tokenid);
  checkTokenFields(tokenid, fields);
  const user = getUser(config, userid);
  if (user.tokens.has(tokenName)) throw new ConfigError('exists', `token ${quote(tokenid)} exists`);
  const token: TokenEntry = { enable: true, expire: 0, privsep: true, comment: '' };
  const { enable, expire, privsep, comment } = fields;
  assignDefined(token, { enable, expire, privsep, comment });
  setAllowedIps(token, fields.allowedIps);
  user.tokens.set(tokenName, token);
  return token;
}

/** Sets the source restriction in its canonical form ('' removes it); undefined keeps it. */
function setAllowedIps(token: TokenEntry, text: string | undefined): void {
  if (text === undefined) return;
  if (typeof text !== 'string') throw invalid('allowed-ips must be a string');
  const canonical = canonicalAllowedIps(text);
  if (canonical === '') delete token.allowedIps;
  else token.allowedIps = canonical;
}

/**
 * Opens (until > 0) or ends (0) the grace of a token's previous secret: until
 * then, the secret before the last rotation keeps working (token.shadow holds
 * it under previousSecretKey).
 */
export function setGrace(config: UserConfig, tokenid: string, until: number): TokenEntry {
  const token = getToken(config, tokenid);
  if (!Number.isSafeInteger(until) || until < 0) throw invalid(`grace of ${quote(tokenid)}`);
  if (until === 0) delete token.graceUntil;
  else token.graceUntil = until;
  return token;
}

/** Changes a token's fields; ConfigError 'not-found' when it does not exist. */
export function updateToken(config: UserConfig, tokenid: string, changes: TokenFields): TokenEntry {
  const token = getToken(config, tokenid);
  checkTokenFields(tokenid, changes);
  const { enable, expire, privsep, comment } = changes;
  assignDefined(token, { enable, expire, privsep, comment });
  setAllowedIps(token, changes.allowedIps);
  return token;
}

/** Removes a token and its ACL entries. */
export function removeToken(config: UserConfig, tokenid: string): void {
  getToken(config, tokenid);
  const { userid, tokenName } = validTokenid(tokenid);
  config.users.get(userid)?.tokens.delete(tokenName);
  removeAclEntriesWhere(config, (kind, id) => kind === 'tokens' && id === tokenid);
}
