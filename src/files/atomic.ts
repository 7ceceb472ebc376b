/**
 * Atomic file replacement: write a temp file in the same directory, fsync it,
 * rename it over the target, fsync the directory. A crash at any instant leaves
 * either the old or the new file, both complete (invariant I2).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

export interface AtomicWriteOptions {
  /** Mode of the new file, applied with fchmod so the umask cannot widen or narrow it. */
  mode: number;
  /** Group of the new file, when the deployment shares it with a group. */
  gid?: number | undefined;
}

const TEMP_MARKER = '.tmp-';

function tempName(target: string): string {
  return `${target}${TEMP_MARKER}${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Fsyncs a directory so that a rename inside it survives a crash. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function writeFileAtomic(
  target: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions,
): Promise<void> {
  const temp = tempName(target);
  const handle = await fsp.open(temp, 'wx', 0o600);
  try {
    try {
      await handle.chmod(options.mode);
      if (options.gid !== undefined) await handle.chown(-1, options.gid);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, target);
  } catch (error) {
    await fsp.rm(temp, { force: true });
    throw error;
  }
  await fsyncDirectory(path.dirname(target));
}

/**
 * Removes temp files a killed writer left beside `target`. Only call it while
 * holding the target's lock: then no live writer owns any of them.
 */
export async function removeStrayTemps(target: string): Promise<number> {
  const dir = path.dirname(target);
  const prefix = `${path.basename(target)}${TEMP_MARKER}`;
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return 0;
  }
  const stray = names.filter((name) => name.startsWith(prefix));
  await Promise.all(stray.map((name) => fsp.rm(path.join(dir, name), { force: true })));
  return stray.length;
}
