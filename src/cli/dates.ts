/**
 * Expiry times as administrators type them (a day, epoch seconds or 0) and as
 * tables show them. user.cfg stores epoch seconds, 0 meaning never.
 */
import { quote } from '../errors.js';

const ISO_DAY = /^(\d{4})-(\d{2})-(\d{2})$/;
const DIGITS = /^\d+$/;

/** `YYYY-MM-DD` (that day, 00:00 UTC), epoch seconds, or `0` (never). Throws RangeError. */
export function parseExpire(text: string): number {
  if (DIGITS.test(text)) {
    const seconds = Number(text);
    if (Number.isSafeInteger(seconds)) return seconds;
  }
  const match = ISO_DAY.exec(text);
  if (match) {
    const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
    const ms = Date.UTC(year, month - 1, day);
    const date = new Date(ms);
    // Date.UTC rolls 2027-02-30 over to March and maps years below 100 to 19xx: refuse both.
    const exact =
      date.getUTCFullYear() === year &&
      date.getUTCMonth() === month - 1 &&
      date.getUTCDate() === day;
    if (exact && ms >= 0) return ms / 1000;
  }
  throw new RangeError(
    `expected a date YYYY-MM-DD, epoch seconds or 0 for never, not ${quote(text)}`,
  );
}

/** 'never', the ISO day when it is midnight UTC, else the ISO time; '(expired)' once past. */
export function formatExpire(seconds: number, nowSeconds: number): string {
  if (seconds === 0) return 'never';
  const iso = new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
  const shown = iso.endsWith('T00:00:00Z') ? iso.slice(0, 10) : iso;
  // Inclusive, as isUserActive/isTokenActive decide it.
  return seconds <= nowSeconds ? `${shown} (expired)` : shown;
}
