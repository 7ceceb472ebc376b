/**
 * Exclusive cross-process locks with proper-lockfile (a `<file>.lock`
 * directory, refreshed while held). A holder killed with SIGKILL stops
 * refreshing, so the lock goes stale and the next writer takes it over.
 */
import lockfile from 'proper-lockfile';
import { LockError } from '../errors.js';

export interface LockOptions {
  /** ms after which an unrefreshed lock counts as abandoned (proper-lockfile's minimum is 2000). */
  staleMs?: number;
  /** How long to wait for a held lock before giving up, in ms. */
  waitMs?: number;
}

export const DEFAULT_STALE_MS = 10_000;

/**
 * Runs `fn` holding the lock on `target`. `fn` receives `assertHeld`, to call
 * right before an irreversible step: when proper-lockfile reports the lock
 * compromised (its default would throw from a timer and kill the process), the
 * mutation aborts with LockError instead.
 */
export async function withFileLock<T>(
  target: string,
  fn: (assertHeld: () => void) => Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const stale = Math.max(2000, options.staleMs ?? DEFAULT_STALE_MS);
  const waitMs = options.waitMs ?? stale * 3;
  let compromised: Error | null = null;
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(target, {
      realpath: false,
      stale,
      update: Math.floor(stale / 4),
      retries: { retries: Math.ceil(waitMs / 50), minTimeout: 10, maxTimeout: 50, factor: 1.2 },
      onCompromised: (error) => {
        compromised = error;
      },
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new LockError(
      target,
      code === 'ELOCKED' ? 'timeout' : 'io',
      code === 'ELOCKED' ? 'lock is held by another process' : `cannot lock: ${error}`,
      { cause: error },
    );
  }
  const assertHeld = () => {
    if (compromised) {
      throw new LockError(
        target,
        'compromised',
        `lock was lost: ${(compromised as Error).message}`,
      );
    }
  };
  try {
    return await fn(assertHeld);
  } finally {
    // A compromised lock may already be gone (or another's); releasing it would be wrong.
    if (!compromised) await release().catch(() => undefined);
  }
}
