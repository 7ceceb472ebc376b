/**
 * The writer's half of the protocol, shared by token.shadow and user.cfg:
 * under the file's lock, clean temp files a killed writer left, let the caller
 * read fresh and decide, then replace the file atomically and bump its
 * generation slot before the lock is released. Only then may anyone answer.
 */
import { GenerationPageError } from '../errors.js';
import type { GenerationPage } from '../generations/page.js';
import { removeStrayTemps, writeFileAtomic } from './atomic.js';
import { type LockOptions, withFileLock } from './lock.js';
import { type FileStamp, stampPath, wallClockNs } from './stamp.js';

export interface PublishTarget {
  path: string;
  /** The page to bump, or null when the deployment runs without one. */
  page: GenerationPage | null;
  slot: number;
  mode: number;
  gid?: number | undefined;
  lock?: LockOptions | undefined;
}

export interface Published {
  /** The new file's stamp, and when it was written (wall clock, ns). */
  stamp: FileStamp;
  writtenAtNs: bigint;
  /** The slot's value after our bump; null without a (good) page. */
  generation: number | null;
}

/** `publish(text)` may be called at most once; `body` may also return without calling it. */
export type PublishBody<T> = (publish: (text: string) => Promise<Published>) => Promise<T>;

export async function publishUnderLock<T>(target: PublishTarget, body: PublishBody<T>): Promise<T> {
  const page = target.page;
  if (page?.readOnly) {
    throw new GenerationPageError(page.path, 'read-only', 'cannot publish a change');
  }
  return withFileLock(
    target.path,
    async (assertHeld) => {
      await removeStrayTemps(target.path);
      return body(async (text) => {
        assertHeld();
        // Before anything changes: every reader's mapping must be reachable (else this throws).
        const bumpable = page?.prepareWrite() ?? false;
        const writtenAtNs = wallClockNs();
        await writeFileAtomic(target.path, text, { mode: target.mode, gid: target.gid });
        const stamp = await stampPath(target.path);
        const generation = page?.bump(target.slot, bumpable) ?? null;
        return { stamp, writtenAtNs, generation };
      });
    },
    target.lock ?? {},
  );
}
