/**
 * How a writer reaches every page some process still maps after the file at
 * the page's path was replaced or removed, without looking into other
 * processes: reading another user's /proc/PID/fd needs CAP_SYS_PTRACE, which
 * the manager's unit does not grant (and ProtectProc=invisible hides the API's
 * processes from it anyway).
 *
 * So every process that maps a page by its path pins it first: a hard link in
 * the page's directory named after the inode (`config-versions.mapped-INODE`)
 * and a shared flock on its descriptor for as long as the page is mapped. Only
 * then does it trust the mapping, after checking that the path still names
 * it. A writer, before it changes a file, retires every pinned page other than
 * the one at the path (RETIRED set, every counter slot bumped), so that their
 * readers fail their fast-path compare at their next request and map the page
 * at the path; then it removes the pin. A pinned page the writer cannot open
 * for writing may be skipped only when no process holds it (an exclusive flock
 * succeeds); otherwise the writer must not change anything.
 */
import { type BigIntStats, fstatSync, lstatSync, readdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { GenerationPageError } from '../errors.js';
import { type Addon, loadAddon, type NativePage } from '../native.js';
import { COUNTER_SLOTS, PageWord } from './slots.js';

/** Open failures that mean the pin is gone or is no page: no process maps it as one. */
const NOT_A_PAGE = new Set(['ENOENT', 'ELOOP', 'ENOTREG', 'EBADSIZE', 'EBADMAGIC']);
const NOT_OURS = new Set(['EACCES', 'EPERM']);

const codeOf = (error: unknown) => (error as { code?: string }).code ?? '';

/** Sets RETIRED and bumps every counter slot of a writable mapping (never the stored ones). */
export function retireMapping(native: NativePage): void {
  for (const slot of COUNTER_SLOTS) native.increment(slot);
  native.increment(PageWord.RETIRED);
}

/** Pins of `pagePath`'s pages start with this name, followed by the inode number. */
export function pinPrefix(pagePath: string): string {
  return `${path.basename(pagePath)}.mapped-`;
}

/** Where the page with inode `ino` is pinned. */
export function pinPath(pagePath: string, ino: bigint): string {
  return path.join(path.dirname(pagePath), `${pinPrefix(pagePath)}${ino}`);
}

function lstatOrNull(file: string): BigIntStats | null {
  try {
    return lstatSync(file, { bigint: true });
  } catch {
    return null;
  }
}

function sameFile(a: BigIntStats, b: BigIntStats): boolean {
  return a.ino === b.ino && a.dev === b.dev;
}

function unpin(pin: string): void {
  try {
    unlinkSync(pin);
  } catch {
    // gone already, or a directory someone put there: nothing maps it as a page
  }
}

/**
 * Pins the page `native` maps, just opened from `pagePath`. True once it is
 * pinned and the path still names it; false when it has left the path (or a
 * writer is retiring it right now): the caller opens the path again. Throws
 * GenerationPageError 'unpinned' when this process cannot make the pin (no
 * write access to the directory, or not allowed to link the file): it would
 * be out of every writer's reach.
 */
export function pinMapping(pagePath: string, native: NativePage): boolean {
  if (!native.lock(false)) return false;
  const mapped = fstatSync(native.fd(), { bigint: true });
  const pin = pinPath(pagePath, mapped.ino);
  for (let attempt = 0; ; attempt++) {
    try {
      if (native.link(pin)) break;
    } catch (error) {
      // Removed from its last name since we opened it: not the page at the path.
      if (codeOf(error) === 'ENOENT') return false;
      throw new GenerationPageError(
        pagePath,
        'unpinned',
        `cannot pin the mapped page where writers look for it (${(error as Error).message}); ` +
          'every process that maps the page needs write access to its directory',
      );
    }
    const pinned = lstatOrNull(pin);
    if (pinned !== null && sameFile(pinned, mapped)) break;
    // Another file under our name (planted): ours goes in its place.
    unpin(pin);
    if (attempt > 0) return false;
  }
  const named = lstatOrNull(pagePath);
  return named !== null && sameFile(named, mapped);
}

/** Pins the page `native` maps again, should someone have removed its pin (the writer's own page). */
export function repin(pagePath: string, native: NativePage): void {
  try {
    native.link(pinPath(pagePath, fstatSync(native.fd(), { bigint: true }).ino));
  } catch {
    // unlinked meanwhile: the writer's next check of the path sees it
  }
}

function unreachable(pagePath: string, why: string): GenerationPageError {
  return new GenerationPageError(
    pagePath,
    'unreachable',
    `${why}; refusing to change anything (its readers would not see the change)`,
  );
}

/**
 * Opens a pinned page for retiring: null when there is nothing to retire (the
 * pin is gone, is no page, or this writer may not write it and no process maps
 * it). Throws 'unreachable' when a process may map it and this writer cannot
 * open it for writing.
 */
function openPinned(addon: Addon, pin: string, pagePath: string): NativePage | null {
  try {
    return new addon.NativePage(pin, { create: false, readOnly: false });
  } catch (error) {
    const code = codeOf(error);
    if (NOT_A_PAGE.has(code)) return null;
    if (!NOT_OURS.has(code)) {
      throw unreachable(pagePath, `cannot open an older page (${(error as Error).message})`);
    }
  }
  let probe: NativePage;
  try {
    probe = new addon.NativePage(pin, { create: false, readOnly: true });
  } catch (error) {
    if (NOT_A_PAGE.has(codeOf(error))) return null;
    throw unreachable(pagePath, `cannot open an older page (${(error as Error).message})`);
  }
  try {
    if (probe.lock(true)) return null;
  } finally {
    probe.close();
  }
  throw unreachable(pagePath, 'a process maps an older page this writer cannot open for writing');
}

/**
 * Retires every pinned page of `pagePath` except `current` (all of them when
 * null), removing their pins. Throws GenerationPageError 'unreachable' when
 * one cannot be retired and a process may still map it, or when the directory
 * cannot be listed: its readers would not see the next bump, so the writer
 * must not change anything. Returns how many pages it retired.
 */
export function retireStaleMappings(pagePath: string, current: BigIntStats | null): number {
  const addon = loadAddon();
  const prefix = pinPrefix(pagePath);
  const ours = current === null ? null : `${prefix}${current.ino}`;
  let names: string[];
  try {
    names = readdirSync(path.dirname(pagePath));
  } catch (error) {
    throw unreachable(pagePath, `cannot list the pinned pages (${(error as Error).message})`);
  }
  let retired = 0;
  for (const name of names) {
    if (!name.startsWith(prefix) || name === ours) continue;
    const pin = path.join(path.dirname(pagePath), name);
    const native = openPinned(addon, pin, pagePath);
    if (native !== null) {
      try {
        // A pin named after another inode than its own may be the current page: never retire that.
        const pinned = fstatSync(native.fd(), { bigint: true });
        if (current === null || !sameFile(pinned, current)) {
          retireMapping(native);
          retired++;
        }
      } finally {
        native.close();
      }
    }
    unpin(pin);
  }
  return retired;
}
