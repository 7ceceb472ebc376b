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
}

export const EMPTY_SNAPSHOT: ShadowSnapshot = Object.freeze({
  entries: new Map<string, string>(),
  stamp: ABSENT,
});

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
  let index = 0;
  for (const [key, value] of Object.entries(data)) {
    index++;
    if (typeof value !== 'string' || value.length === 0) {
      throw new ShadowFileError(path, 'bad-shape', `entry #${index} is not a non-empty string`);
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

/**
 * Reads and parses the file, stamping it from the same open descriptor so the
 * stamp describes exactly the bytes parsed.
 */
export async function readShadow(path: string): Promise<ShadowSnapshot> {
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
    const text = await handle.readFile('utf8');
    return { entries: parseShadow(path, text), stamp };
  } catch (error) {
    if (error instanceof ShadowFileError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new ShadowFileError(path, 'unreadable', `cannot read: ${code ?? 'error'}`);
  } finally {
    await handle.close();
  }
}
