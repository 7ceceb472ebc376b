/**
 * Which users and tokens stop working soon: those whose expiry falls within a
 * window from now, so an operator can renew them before clients start failing.
 * A token stops at its own expiry or at its user's, whichever comes first.
 * Disabled or already expired ones are left out: they fail already.
 */
import { joinTokenid } from '../ids.js';
import type { UserConfig } from './types.js';

/** A user or token that stops working soon, and when. */
export interface Expiring {
  /** A user, or a token (expiring by its own expiry or its user's). */
  kind: 'user' | 'token';
  /** A user id, or a full token id. */
  id: string;
  /** Epoch second at which it stops working. */
  expire: number;
}

function within(expire: number, nowSeconds: number, windowSeconds: number): boolean {
  return expire > nowSeconds && expire <= nowSeconds + windowSeconds;
}

/** The effective expiry of a token: its own or its user's, the earlier; 0 for never. */
export function effectiveExpiry(userExpire: number, tokenExpire: number): number {
  if (userExpire === 0) return tokenExpire;
  if (tokenExpire === 0) return userExpire;
  return Math.min(userExpire, tokenExpire);
}

/**
 * Enabled tokens whose own expiry falls in (from, to], as [userid, token name,
 * expiry]: how the token database answers without every token being looked at.
 */
export type TokensExpiringBetween = (from: number, to: number) => Array<[string, string, number]>;

/**
 * Users and tokens expiring in (now, now + window], soonest first. With
 * `tokensExpiring` (tokens kept in the database) only the users expiring in
 * the window have all their tokens looked at; the other tokens come from it.
 */
export function expiringWithin(
  config: UserConfig,
  nowSeconds: number,
  windowSeconds: number,
  tokensExpiring?: TokensExpiringBetween,
): Expiring[] {
  const found: Expiring[] = [];
  for (const [userid, user] of config.users) {
    if (!user.enable || (user.expire !== 0 && user.expire <= nowSeconds)) continue;
    const userSoon = within(user.expire, nowSeconds, windowSeconds);
    if (userSoon) {
      found.push({ kind: 'user', id: userid, expire: user.expire });
    }
    if (tokensExpiring !== undefined && !userSoon) continue;
    for (const [name, token] of user.tokens) {
      const expire = effectiveExpiry(user.expire, token.expire);
      if (token.enable && within(expire, nowSeconds, windowSeconds)) {
        found.push({ kind: 'token', id: joinTokenid(userid, name), expire });
      }
    }
  }
  if (tokensExpiring !== undefined) {
    for (const [userid, name, own] of tokensExpiring(nowSeconds, nowSeconds + windowSeconds)) {
      const user = config.users.get(userid);
      if (user === undefined || !user.enable) continue;
      // Users expiring in the window had all their tokens looked at above.
      if (user.expire !== 0 && user.expire <= nowSeconds + windowSeconds) continue;
      found.push({ kind: 'token', id: joinTokenid(userid, name), expire: own });
    }
  }
  return found.sort((a, b) => a.expire - b.expire || a.id.localeCompare(b.id));
}
