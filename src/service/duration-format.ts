/**
 * A duration as parseDuration takes it back (`1000d`, `10s`, `250ms`): the
 * short form of the `ms` package, written out here because the settings use
 * it in their messages and an app that opens its files through them should
 * not need `ms` (a dependency of the daemons and tokenctl only).
 */
const UNITS: readonly [string, number][] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
];

/** `1000d`, `10s`, `250ms`: the largest unit the duration reaches, rounded, as `ms` writes it. */
export function formatDuration(milliseconds: number): string {
  const size = Math.abs(milliseconds);
  for (const [unit, length] of UNITS) {
    if (size >= length) return `${Math.round(milliseconds / length)}${unit}`;
  }
  return `${milliseconds}ms`;
}
