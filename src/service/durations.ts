/**
 * Durations as people type them (`90d`, `14d`, `10s`, `2h`) and ages as people
 * read them (`3d ago`), through the `ms` package rather than a parser of our own.
 */
import ms, { type StringValue } from 'ms';
import { quote } from '../errors.js';

/** `90d`, `12h`, `10s`, `500ms`, `2w`, `1y` -> milliseconds (> 0). Throws RangeError. */
export function parseDuration(text: string): number {
  let value: number = Number.NaN;
  try {
    // Bare digits would be milliseconds to ms(): ambiguous, so a unit is required.
    if (!/^\d+$/.test(text)) value = ms(text as StringValue);
  } catch {
    // ms() throws on an empty string; reported below like any other
  }
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`expected a duration like 90d, 12h, 10s or 500ms, not ${quote(text)}`);
  }
  return value;
}

export { formatDuration } from './duration-format.js';

/** `never`, `just now`, `42s ago`, `5m ago`, `3h ago`, `12d ago`, `1y ago`. */
export function formatAge(seconds: number | undefined, nowSeconds: number): string {
  if (seconds === undefined) return 'never';
  const age = nowSeconds - seconds;
  return age < 1 ? 'just now' : `${ms(age * 1000)} ago`;
}
