/**
 * token.shadow on disk: one JSON object, token id -> hash. Reading is strict
 * (anything but an object of strings is corrupt) so that a mutation never
 * rewrites a file it did not understand; a missing file is an empty one.
 */
import { promises as fsp } from 'node:fs';
import { ShadowFileError } from '../errors.js';
import { ABSENT, type FileStamp, stampOf } from '../files/stamp.js';
import { untrustworthy } from '../trust.js';

export interface ShadowSnapshot {
  /** token id -> hash, as on disk when `stamp` was taken. */
  readonly entries: ReadonlyMap<string, string>;
  readonly stamp: FileStamp;
  /** The bytes parsed, kept so that the next read can parse only what changed. */
  readonly bytes?: Buffer;
  /**
   * Ids whose hash differs from the snapshot this one was derived from
   * (readShadow with `previous`); absent when the whole file was parsed.
   */
  readonly changed?: readonly string[];
}

export const EMPTY_SNAPSHOT: ShadowSnapshot = Object.freeze({
  entries: new Map<string, string>(),
  stamp: ABSENT,
});

/** Whether JSON must escape a character of `key` (a quote, a backslash, a control character). */
function needsEscape(key: string): boolean {
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c) return true;
  }
  return false;
}

/** Parses file content; errors say where, never what (the content holds hashes). */
export function parseShadow(path: string, text: string): Map<string, string> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new ShadowFileError(path, 'bad-json', `not valid JSON (${text.length} bytes)`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ShadowFileError(path, 'bad-shape', 'expected a JSON object of token id -> hash');
  }
  const entries = new Map<string, string>();
  // Only a key with an escape can need one; V8 (Node 24) may read an escaped key back wrong
  // (nodejs/node#63785), and no token id has such a character, so such a key is refused.
  const escapes = text.includes('\\');
  let index = 0;
  for (const [key, value] of Object.entries(data)) {
    index++;
    if (typeof value !== 'string' || value.length === 0) {
      throw new ShadowFileError(path, 'bad-shape', `entry #${index} is not a non-empty string`);
    }
    if (escapes && needsEscape(key)) {
      throw new ShadowFileError(path, 'bad-shape', `entry #${index} has a key no token id has`);
    }
    entries.set(key, value);
  }
  return entries;
}

/** Canonical text: sorted keys, one entry per line, trailing newline. */
export function serializeShadow(entries: ReadonlyMap<string, string>): string {
  const sorted = [...entries.keys()].sort();
  // No prototype: a "__proto__" key must be written as data, not hit the setter.
  const object: Record<string, string> = Object.create(null);
  for (const key of sorted) object[key] = entries.get(key) as string;
  return `${JSON.stringify(object, null, 1)}\n`;
}

// --- parsing only what changed ---------------------------------------------------

const NEWLINE = 0x0a;
const CHUNK = 64 * 1024;
/**
 * One member line of the canonical text: ` "id": "hash",` (no comma on the last). The two
 * strings are then parsed by JSON.parse, which refuses what JSON refuses (raw control characters).
 */
const MEMBER = /^ ("(?:[^"\\]|\\.)*"): ("(?:[^"\\]|\\.)*")(,?)$/;

/** Length of the common prefix of a and b, by memcmp over chunks, then bisection in the first differing one. */
function commonPrefix(a: Buffer, b: Buffer): number {
  const limit = Math.min(a.length, b.length);
  let at = 0;
  while (at < limit) {
    const end = Math.min(limit, at + CHUNK);
    if (a.compare(b, at, end, at, end) !== 0) break;
    at = end;
  }
  if (at >= limit) return limit;
  let lo = at;
  let hi = Math.min(limit, at + CHUNK); // a[lo, hi) differs somewhere; a[at, lo) is equal
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (a.compare(b, lo, mid, lo, mid) === 0) lo = mid;
    else hi = mid;
  }
  return a[lo] === b[lo] ? lo + 1 : lo;
}

/** Length of the common suffix of a and b, at most `limit`. */
function commonSuffix(a: Buffer, b: Buffer, limit: number): number {
  let n = 0;
  while (n < limit) {
    const step = Math.min(CHUNK, limit - n);
    if (a.compare(b, b.length - n - step, b.length - n, a.length - n - step, a.length - n) !== 0) {
      break;
    }
    n += step;
  }
  if (n >= limit) return limit;
  // Bisect within the next chunk: the longest k with equal last n + k bytes.
  let lo = 0;
  let hi = Math.min(CHUNK, limit - n);
  while (lo < hi) {
    const k = (lo + hi + 1) >>> 1;
    const equal =
      a.compare(b, b.length - n - k, b.length - n, a.length - n - k, a.length - n) === 0;
    if (equal) lo = k;
    else hi = k - 1;
  }
  return n + lo;
}

/** The member lines of `text` as [id, hash] and whether the last had a comma; null if any is not one. */
function memberLines(
  text: string,
): { members: Array<[string, string]>; lastComma: boolean } | null {
  const members: Array<[string, string]> = [];
  let lastComma = true;
  if (text.length === 0) return { members, lastComma };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const match = MEMBER.exec(lines[i] as string);
    if (match === null) return null;
    const comma = match[3] === ',';
    if (!comma && i !== lines.length - 1) return null; // only the very last member has none
    lastComma = comma;
    if ((match[1] as string).includes('\\')) return null; // an escaped key: the full parse judges
    let key: unknown;
    let value: unknown;
    try {
      key = JSON.parse(match[1] as string);
      value = JSON.parse(match[2] as string);
    } catch {
      return null;
    }
    if (typeof key !== 'string' || typeof value !== 'string' || value.length === 0) return null;
    members.push([key, value]);
  }
  return { members, lastComma };
}

function linesOf(bytes: Buffer): number {
  let n = 0;
  for (let at = bytes.indexOf(NEWLINE); at >= 0; at = bytes.indexOf(NEWLINE, at + 1)) n++;
  return n;
}

/**
 * The entries of `bytes` derived from `previous` (a snapshot of the same
 * file), parsing only the lines between the common prefix and suffix; null
 * when that is not certain to give what a full parse would (anything but whole
 * member lines of the canonical text changed, a key now appears twice...).
 */
export function parseChanges(
  previous: ShadowSnapshot,
  bytes: Buffer,
): { entries: Map<string, string>; changed: string[] } | null {
  const old = previous.bytes;
  if (old === undefined) return null;
  if (old.equals(bytes)) return { entries: new Map(previous.entries), changed: [] };
  const prefix = commonPrefix(old, bytes);
  const suffix = commonSuffix(old, bytes, Math.min(old.length, bytes.length) - prefix);
  // Whole lines: from the start of the line holding the first difference...
  const start = old.lastIndexOf(NEWLINE, prefix - 1) + 1;
  // ...to the newline ending the line of the last difference (it is in the common suffix).
  const oldEnd = old.indexOf(NEWLINE, Math.max(start, old.length - suffix - 1));
  if (oldEnd < 0 || start === 0) return null;
  const newEnd = oldEnd - old.length + bytes.length;
  if (newEnd < start || bytes[newEnd] !== NEWLINE) return null;
  const before = memberLines(old.toString('utf8', start, oldEnd));
  const after = memberLines(bytes.toString('utf8', start, newEnd));
  if (before === null || after === null) return null;
  // A member is last exactly when the next line closes the object.
  const closesNext = bytes[newEnd + 1] === 0x7d; // '}'
  if (after.members.length > 0 && after.lastComma === closesNext) return null;
  if (after.members.length === 0 && before.members.length > 0 && !before.lastComma) return null;
  const entries = new Map(previous.entries);
  const removed = new Set<string>();
  for (const [key] of before.members) {
    entries.delete(key);
    removed.add(key);
  }
  const changed = new Set<string>();
  for (const [key, value] of after.members) {
    // A key that is also outside the changed lines would be a duplicate: let the full parse judge.
    if (entries.has(key)) return null;
    entries.set(key, value);
  }
  for (const key of removed) {
    if (entries.get(key) !== previous.entries.get(key)) changed.add(key);
  }
  for (const [key, value] of after.members) {
    if (previous.entries.get(key) !== value) changed.add(key);
  }
  return { entries, changed: [...changed] };
}

/**
 * Reads and parses the file, stamping it from the same open descriptor so the
 * stamp describes exactly the bytes parsed. With `previous` (an earlier
 * snapshot of the same path), only the lines that changed are parsed when
 * that is certain to give the same entries; `changed` then lists the ids
 * whose hash moved.
 */
export async function readShadow(
  path: string,
  previous: ShadowSnapshot | null = null,
): Promise<ShadowSnapshot> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return EMPTY_SNAPSHOT;
    throw new ShadowFileError(path, 'unreadable', `cannot open: ${code ?? 'error'}`);
  }
  try {
    const st = await handle.stat({ bigint: true });
    const insecure = untrustworthy(st, { groupMayWrite: false });
    if (insecure !== null) {
      throw new ShadowFileError(path, 'insecure', `refusing token.shadow: ${insecure}`);
    }
    const stamp = stampOf(st);
    const bytes = await handle.readFile();
    const delta = previous === null ? null : parseChanges(previous, bytes);
    if (delta !== null) return { entries: delta.entries, stamp, bytes, changed: delta.changed };
    const entries = parseShadow(path, bytes.toString('utf8'));
    // Kept for the next read only when every member is on a line of its own, once (no duplicate
    // key that a line-wise update could get wrong): the canonical text has size + 2 lines.
    return linesOf(bytes) === entries.size + 2 ? { entries, stamp, bytes } : { entries, stamp };
  } catch (error) {
    if (error instanceof ShadowFileError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new ShadowFileError(path, 'unreadable', `cannot read: ${code ?? 'error'}`);
  } finally {
    await handle.close();
  }
}
