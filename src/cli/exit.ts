/**
 * Exit codes and the one line tokenctl prints for a failure. Scripts branch on
 * the code: 1 the request failed (not found, exists, invalid, doctor found a
 * FAIL), 2 the command line was wrong, 3 tokenctl lacks the permission or could
 * not take a lock, which running it as root (or later) would fix.
 */
import { CommanderError } from 'commander';
import {
  GenerationPageError,
  LockError,
  PermissionError,
  ShadowFileError,
  TokenShadowError,
} from '../errors.js';

export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  DENIED: 3,
} as const;

export interface Failure {
  exitCode: number;
  /** What to print after `tokenctl: `; null when commander printed it already. */
  message: string | null;
}

const DENIED_HINT = 'run tokenctl as root, and see `tokenctl doctor` for the expected modes';
const DENIED_ERRNO = new Set(['EACCES', 'EPERM', 'EROFS']);

function denied(message: string): Failure {
  const said = /permission denied|EACCES|EPERM/i.test(message);
  const text =
    said && !/permission denied/i.test(message) ? `permission denied: ${message}` : message;
  return { exitCode: ExitCode.DENIED, message: `${text} (${DENIED_HINT})` };
}

function errnoOf(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Maps anything thrown by a command to an exit code and a message safe to print. */
export function failureOf(error: unknown): Failure {
  if (error instanceof CommanderError) {
    // Help and --version exit 0; every other commander error is a usage error.
    return { exitCode: error.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE, message: null };
  }
  if (error instanceof LockError) {
    const cause = errnoOf((error as { cause?: unknown }).cause);
    if (cause !== undefined && DENIED_ERRNO.has(cause)) return denied(error.message);
    return { exitCode: ExitCode.DENIED, message: error.message };
  }
  if (error instanceof ShadowFileError && error.problem === 'unreadable') {
    return denied(error.message);
  }
  if (
    error instanceof GenerationPageError &&
    (error.problem === 'permission-denied' || error.problem === 'read-only')
  ) {
    return denied(error.message);
  }
  if (error instanceof PermissionError) return denied(error.message);
  if (error instanceof TokenShadowError) {
    return { exitCode: ExitCode.FAILURE, message: error.message };
  }
  const errno = errnoOf(error);
  if (errno !== undefined && DENIED_ERRNO.has(errno)) return denied((error as Error).message);
  const message = error instanceof Error ? error.message : String(error);
  return { exitCode: ExitCode.FAILURE, message };
}
