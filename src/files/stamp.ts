/**
 * A file's identity and version as far as stat can tell: device, inode, size,
 * mtime and ctime in nanoseconds. An atomic replace always changes the inode;
 * an edit in place changes mtime/ctime (and usually the size). This catches
 * more than Proxmox's mtime + length check.
 */
import { type BigIntStats, promises as fsp, statSync } from 'node:fs';

export interface FileStamp {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

/** The stamp of a missing file: equal only to itself. */
export const ABSENT: FileStamp = Object.freeze({
  dev: -1n,
  ino: -1n,
  size: -1n,
  mtimeNs: -1n,
  ctimeNs: -1n,
});

export function stampOf(st: BigIntStats): FileStamp {
  return {
    dev: st.dev,
    ino: st.ino,
    size: st.size,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
  };
}

export function sameStamp(a: FileStamp | null, b: FileStamp | null): boolean {
  if (a === null || b === null) return a === b;
  return (
    a.ino === b.ino &&
    a.dev === b.dev &&
    a.size === b.size &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs
  );
}

/**
 * Timestamps come from a coarse clock (a jiffy, or seconds on some file
 * systems), so an edit right after the stamp was taken can leave it unchanged.
 * Like git's "racily clean" index entries, a stamp whose ctime is this close to
 * the moment it was observed proves nothing, and the content must be compared.
 */
export const RACY_WINDOW_NS = 2_000_000_000n;

export function isRacy(stamp: FileStamp, observedAtNs: bigint): boolean {
  return stamp !== ABSENT && observedAtNs - stamp.ctimeNs < RACY_WINDOW_NS;
}

function absentOnEnoent(error: unknown): FileStamp {
  if ((error as NodeJS.ErrnoException).code === 'ENOENT') return ABSENT;
  throw error;
}

export async function stampPath(path: string): Promise<FileStamp> {
  try {
    return stampOf(await fsp.stat(path, { bigint: true }));
  } catch (error) {
    return absentOnEnoent(error);
  }
}

export function stampPathSync(path: string): FileStamp {
  try {
    return stampOf(statSync(path, { bigint: true }));
  } catch (error) {
    return absentOnEnoent(error);
  }
}

/** Wall-clock now in ns, comparable with file timestamps (for isRacy). */
export function wallClockNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}
