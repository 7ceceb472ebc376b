/**
 * The configuration directory's record of which generation page announces
 * changes to its files. Every process that caches user.cfg and token.shadow
 * must map the page their writers bump; paths each process was given (a
 * runtime directory, $RUNTIME_DIRECTORY, a page path) can disagree, the files
 * cannot. So the first writer records its page next to the files, and every
 * later process, whatever it was given, maps the recorded page.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchownSync,
  fstatSync,
  linkSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { untrustworthy } from '../trust.js';

/** File name of the record inside the configuration directory. */
export const PAGE_RECORD_FILE_NAME = 'generation-page';

/** A record is one absolute path and a newline; anything longer is not one. */
const MAX_RECORD_BYTES = 4096;

export function pageRecordPathIn(configDir: string): string {
  return path.join(configDir, PAGE_RECORD_FILE_NAME);
}

/** What the record says: no writer has run yet, the page it names, or why it cannot be trusted. */
export type PageRecord =
  | { kind: 'absent' }
  | { kind: 'recorded'; pagePath: string }
  | { kind: 'invalid'; reason: string };

/** Reads the record at `recordPath` (never through a symlink); never throws. */
export function readPageRecord(recordPath: string): PageRecord {
  let fd: number;
  try {
    fd = openSync(recordPath, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'absent' };
    if (code === 'ELOOP') return { kind: 'invalid', reason: 'a symbolic link, not followed' };
    return { kind: 'invalid', reason: `unreadable (${code ?? (error as Error).message})` };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { kind: 'invalid', reason: 'not a regular file' };
    // Whoever could rewrite it could point readers at a page nobody bumps.
    const insecure = untrustworthy(st, { groupMayWrite: false });
    if (insecure !== null) return { kind: 'invalid', reason: insecure };
    if (st.size > MAX_RECORD_BYTES) return { kind: 'invalid', reason: 'too large' };
    return parseRecord(readFileSync(fd, 'utf8'));
  } catch (error) {
    return { kind: 'invalid', reason: `unreadable (${(error as Error).message})` };
  } finally {
    closeSync(fd);
  }
}

function parseRecord(text: string): PageRecord {
  const pagePath = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (
    pagePath === '' ||
    /[\0\n]/.test(pagePath) ||
    !path.isAbsolute(pagePath) ||
    path.normalize(pagePath) !== pagePath
  ) {
    return { kind: 'invalid', reason: 'does not hold one absolute, normalised path' };
  }
  return { kind: 'recorded', pagePath };
}

/**
 * Records `pagePath` unless a record exists already (atomically: a complete
 * file is linked into place, so two first writers cannot both win). Returns
 * the record in force afterwards, ours or the one that was there; throws
 * when the record can be neither read nor written (e.g. EACCES).
 */
export function claimPageRecord(
  recordPath: string,
  pagePath: string,
  gid: number | undefined,
): PageRecord {
  const existing = readPageRecord(recordPath);
  if (existing.kind !== 'absent') return existing;
  // A name nobody can guess: the directory may be writable by the deployment's group.
  const temp = `${recordPath}.${process.pid}.${randomBytes(6).toString('hex')}.new`;
  try {
    const fd = openSync(temp, 'wx', 0o640);
    try {
      writeFileSync(fd, `${path.normalize(pagePath)}\n`);
      // Readers in the deployment's group (the API daemon) must read it.
      if (gid !== undefined) fchownSync(fd, -1, gid);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(temp, recordPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  } finally {
    rmSync(temp, { force: true });
  }
  return readPageRecord(recordPath);
}
