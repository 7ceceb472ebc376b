/**
 * Revoking a leaked secret (issue 28), as GitHub's credential revocation API
 * does: whoever holds a secret may report it, without authenticating (they
 * could use it anyway), and the token it belongs to is revoked.
 *
 * The token is found without trying every stored hash: a secret in the
 * current form carries its token's public reference (src/secret-format.ts),
 * so the candidates are the tokens whose id has that reference (one, nearly
 * always), and the secret is checked against each candidate's hash. A secret
 * of another form (UUID, the 53-character form made before references, or
 * anything else) cannot be traced and is ignored.
 *
 * Two parts: `findLeakedTokens` (which costs two hashes per candidate of a
 * traceable secret, two throwaway ones when no token has its reference, so
 * that its time tells neither a match nor a grace) and the write operation `token.revoke-leaked`,
 * which removes one token so found, with its secret and ACL entries, through
 * the normal path: audited per token (the record names the token; the
 * reporter is its source) and announced by webhook as `token.leaked` and
 * `token.revoked`. Only the manager's intake of reports (src/daemon/leak-intake.ts)
 * and tokenctl (as host root) may run it: its rule refuses every caller a
 * request or a socket line can produce, since it trusts that the secret was
 * checked before.
 */
import { currentEpochSeconds } from '../../config/active.js';
import type { UserConfig } from '../../config/types.js';
import { PermissionError } from '../../errors.js';
import { joinTokenid, previousSecretId, splitTokenid } from '../../ids.js';
import { referenceOf, SECRET_PATTERN, secretReference } from '../../secret-format.js';
import { StoredTokens } from '../../store/stored-tokens.js';
import { type Caller, HOST_ROOT } from '../rules.js';
import { write } from './operation.js';
import {
  deleteToken,
  parseTokenParams,
  type TokenParams,
  tokenParameters,
  tokenParamsOf,
} from './tokens.js';

/**
 * Who revokes a token whose secret was reported over the API: the audit
 * trail's actor `leak-report` (its source is the reporter's address).
 * Recognised by object identity, as HOST_ROOT is: no request, header or
 * socket line can produce it.
 */
export const LEAK_REPORTER: Caller = Object.freeze({
  authid: 'leak-report',
  userid: 'leak-report',
  tokenName: null,
});

/** Most secrets one report may carry (each may cost a hash). */
export const MAX_REPORTED_SECRETS = 20;
/** Longest string taken as one reported secret (a secret of ours is 61 characters). */
export const MAX_REPORTED_SECRET_LENGTH = 256;

/**
 * Checks `secret` against the hash token.shadow keeps under `id` (a token id,
 * or previousSecretId's key for a rotation's previous secret; null: a
 * throwaway hash), always at the cost of one hash: TokenShadow.verifyHashed.
 */
export type VerifyHashed = (id: string | null, secret: string) => Promise<boolean>;

/** Token ids by reference, per config read (a config object is never changed once read, in the files). */
const indexes = new WeakMap<UserConfig, Map<string, string[]>>();

function referenceIndex(config: UserConfig): Map<string, string[]> {
  let index = indexes.get(config);
  if (index !== undefined) return index;
  index = new Map();
  // Tokens kept in the database change under the same config object: no index to keep then
  // (each report looks at every token; a reference column in access.db is what would index it).
  const cacheable = ![...config.users.values()].some((user) => user.tokens instanceof StoredTokens);
  for (const [userid, user] of config.users) {
    for (const name of user.tokens.keys()) {
      const tokenid = joinTokenid(userid, name);
      const reference = secretReference(tokenid);
      const ids = index.get(reference);
      if (ids === undefined) index.set(reference, [tokenid]);
      else ids.push(tokenid);
    }
  }
  if (cacheable) indexes.set(config, index);
  return index;
}

/** The tokens of `config` whose reference `secret` carries (none for a secret without one). */
export function candidatesOf(config: UserConfig, secret: string): readonly string[] {
  const reference = referenceOf(secret);
  return reference === null ? [] : (referenceIndex(config).get(reference) ?? []);
}

/** Whether `tokenid`'s previous secret (a rotation's) still works at `now` (epoch seconds). */
function graceOpen(config: UserConfig, tokenid: string, now: number): boolean {
  const [userid, tokenName] = splitTokenid(tokenid);
  const graceUntil = config.users.get(userid)?.tokens.get(tokenName)?.graceUntil;
  return graceUntil !== undefined && now < graceUntil;
}

/**
 * The ids of the tokens these secrets are a working secret of (the current
 * one, or the previous one during a rotation's grace), sorted. A previous
 * secret whose grace has ended works nowhere and revokes nothing: anyone
 * holding a secret rotated away long ago must not be able to revoke its token.
 *
 * Each traceable secret costs two hashes per candidate (the current secret,
 * then the previous one in a grace or a throwaway one) and two without a
 * candidate (throwaway ones), one after the other so that a report takes one
 * hashing thread at a time; so the count tells neither a match nor a grace.
 * An untraceable secret costs none, which tells nothing its form does not
 * (the checksum is public).
 */
export async function findLeakedTokens(
  config: UserConfig,
  secrets: Iterable<string>,
  verify: VerifyHashed,
): Promise<string[]> {
  const found = new Set<string>();
  const now = currentEpochSeconds();
  for (const secret of new Set(secrets)) {
    if (referenceOf(secret) === null) continue;
    const candidates = candidatesOf(config, secret);
    if (candidates.length === 0) {
      await verify(null, secret);
      await verify(null, secret);
    }
    for (const tokenid of candidates) {
      const current = await verify(tokenid, secret);
      const grace = graceOpen(config, tokenid, now);
      const previous = await verify(grace ? previousSecretId(tokenid) : null, secret);
      if (current || (grace && previous)) found.add(tokenid);
    }
  }
  return [...found].sort();
}

/** Every string in `text` that has the form of a secret of ours (a scanner's findings, a log). */
export function secretsIn(text: string): string[] {
  const pattern = new RegExp(SECRET_PATTERN.source, 'g');
  return [...new Set(text.match(pattern) ?? [])];
}

/** Only the leak intake and host root: the secret was checked before this runs. */
function onlyAfterTheSecretWasChecked(caller: Caller): void {
  if (caller !== LEAK_REPORTER && caller !== HOST_ROOT) {
    throw new PermissionError(
      'Permission check failed (a leaked secret is reported at /access/leaked-secrets)',
    );
  }
}

export const revokeLeakedToken = write({
  name: 'token.revoke-leaked',
  summary: 'a token whose secret was reported leaked, with its secret (after the secret verified)',
  parameters: tokenParameters,
  fromApi: tokenParamsOf,
  parse: parseTokenParams,
  authorize: onlyAfterTheSecretWasChecked,
  deletedToken: (params: TokenParams) => joinTokenid(params.userid, params.tokenName),
  // What token.delete does: user.cfg first (the token stops being active), then the secret.
  run: (writer, params: TokenParams) => deleteToken.run(writer, params),
});
