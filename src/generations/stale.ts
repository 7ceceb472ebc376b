/**
 * Finding the pages other processes still map after the file at the page's
 * path was replaced or removed. Every process keeps its page's descriptor open
 * (native/page.cc), so `/proc/PID/fd` shows it, as the path it was opened by
 * or "PATH (deleted)", and opening that link reaches the very inode, even an
 * unlinked one. A writer retires each such page (RETIRED set, every slot
 * bumped), so its readers fall to the slow path at their next request and map
 * the page at the path. Only processes this one may inspect are seen: root (the
 * manager, tokenctl) sees all; a writer of another user sees its own user's.
 */
import { readdirSync, readlinkSync, type Stats, statSync } from 'node:fs';
import path from 'node:path';
import { GenerationPageError } from '../errors.js';
import { loadAddon, type NativePage } from '../native.js';
import { COUNTER_SLOTS, PAGE_SIZE, PageWord } from './slots.js';

const DELETED = ' (deleted)';
/** Errors that mean the page is gone or is no page: its readers fault or never cached. */
const HARMLESS = new Set(['ENOENT', 'EBADSIZE', 'EBADMAGIC', 'ENOTREG', 'ESRCH']);

/** Sets RETIRED and bumps every counter slot of a writable mapping (never the stored ones). */
export function retireMapping(native: NativePage): void {
  for (const slot of COUNTER_SLOTS) native.increment(slot);
  native.increment(PageWord.RETIRED);
}

/** The descriptors (as /proc links) of pages in `pagePath`'s directory other than `current`. */
export function staleMappings(pagePath: string, current: Stats | null): string[] {
  const dir = path.dirname(pagePath);
  const found = new Map<string, string>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch (error) {
    throw new GenerationPageError(
      pagePath,
      'unreachable',
      `cannot list processes to find older pages they map: ${(error as Error).message}`,
    );
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // exited, or not ours to inspect
    }
    for (const fd of fds) {
      const link = `/proc/${pid}/fd/${fd}`;
      let target: string;
      let st: Stats;
      try {
        target = readlinkSync(link);
        if (target.endsWith(DELETED)) target = target.slice(0, -DELETED.length);
        if (path.dirname(target) !== dir) continue;
        st = statSync(link);
      } catch {
        continue;
      }
      if (!st.isFile() || st.size !== PAGE_SIZE) continue;
      if (current !== null && st.dev === current.dev && st.ino === current.ino) continue;
      const key = `${st.dev}:${st.ino}`;
      if (!found.has(key)) found.set(key, link);
    }
  }
  return [...found.values()];
}

/**
 * Retires every older page some process maps. Throws GenerationPageError
 * 'unreachable' when one cannot be opened for writing: its readers would not
 * see the next bump, so the writer must not change anything.
 */
export function retireStaleMappings(pagePath: string, current: Stats | null): number {
  const addon = loadAddon();
  let retired = 0;
  for (const link of staleMappings(pagePath, current)) {
    let native: NativePage;
    try {
      native = new addon.NativePage(link, { create: false, readOnly: false });
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      if (HARMLESS.has(code)) continue;
      throw new GenerationPageError(
        pagePath,
        'unreachable',
        `a process maps an older page this writer cannot open (${(error as Error).message}); refusing to change anything`,
      );
    }
    try {
      retireMapping(native);
      retired++;
    } finally {
      native.close();
    }
  }
  return retired;
}
