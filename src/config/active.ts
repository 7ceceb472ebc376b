/**
 * Whether a user or token may act now. Expiry is inclusive: at `expire` the
 * account is already expired (PVE compares with '<', one second later).
 */
import { type AuthidParts, validAuthidParts } from '../ids.js';
import type { UserConfig } from './types.js';

function expired(expire: number, nowSeconds: number): boolean {
  return expire > 0 && expire <= nowSeconds;
}

/** Exists, is enabled and has not expired. Never throws. */
export function isUserActive(config: UserConfig, userid: string, nowSeconds: number): boolean {
  const user = config.users.get(userid);
  return user?.enable === true && !expired(user.expire, nowSeconds);
}

/** The token and its user exist, are enabled and have not expired. Never throws. */
export function isTokenActive(
  config: UserConfig,
  tokenid: string | AuthidParts,
  nowSeconds: number,
): boolean {
  return nowSeconds < tokenActiveUntil(config, tokenid);
}

/**
 * Until when (epoch seconds, exclusive) the token may act under `config`:
 * the earlier of its own and its user's expiry, Infinity when neither
 * expires, -Infinity when it is unknown or either is disabled. A decision
 * that holds for the life of `config`, so that a caller can keep it per
 * config and read the clock only for a token that expires. Never throws.
 */
export function tokenActiveUntil(config: UserConfig, tokenid: string | AuthidParts): number {
  const id = validAuthidParts(tokenid);
  if (id === null || id.tokenName === null) return Number.NEGATIVE_INFINITY;
  const user = config.users.get(id.userid);
  const token = user?.tokens.get(id.tokenName);
  if (user?.enable !== true || token?.enable !== true) return Number.NEGATIVE_INFINITY;
  return Math.min(expiryOf(user.expire), expiryOf(token.expire));
}

/** `expire` as the first second that is no longer allowed (0: never). */
function expiryOf(expire: number): number {
  return expire > 0 ? expire : Number.POSITIVE_INFINITY;
}

/** The current time in epoch seconds, the unit of `expire`. */
export function currentEpochSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
