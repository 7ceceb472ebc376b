/**
 * JSON logs (pino). Callers log ids and outcomes, never secrets or hashes.
 *
 * Under systemd, journald cannot map pino's numeric levels, so `journalctl -p
 * err` would see nothing. When stdout is the journal stream, each line starts
 * with the syslog priority in journald's `<N>` form (sd-daemon(3)); journald
 * strips it and files the line under that PRIORITY. The JSON stays as it is.
 */
import { pino } from 'pino';
import { stdoutIsJournal } from './systemd.js';

export type Logger = pino.Logger;

/** pino level number -> syslog priority: fatal crit, error err, warn warning, info, debug. */
export function syslogPriority(level: number): number {
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

/** pino writes `{"level":N,` first; anything else (never expected) is filed as info. */
function withPriority(line: string): string {
  const match = /^\{"level":(\d+)/.exec(line);
  return `<${syslogPriority(match ? Number(match[1]) : 30)}>${line}`;
}

export function createLogger(
  name: string,
  level = process.env.LOG_LEVEL ?? 'info',
  journal = stdoutIsJournal(),
): Logger {
  return pino({
    name,
    level,
    base: { pid: process.pid },
    ...(journal ? { hooks: { streamWrite: withPriority } } : {}),
  });
}
