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
  const id = validAuthidParts(tokenid);
  if (id === null || id.tokenName === null || !isUserActive(config, id.userid, nowSeconds))
    return false;
  const token = config.users.get(id.userid)?.tokens.get(id.tokenName);
  return token?.enable === true && !expired(token.expire, nowSeconds);
}

/** The current time in epoch seconds, the unit of `expire`. */
export function currentEpochSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
