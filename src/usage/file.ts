/**
 * The manager's last-used file, `last-used.json` next to token.shadow: token id
 * -> epoch second of its last use, and since when uses are recorded. It holds
 * no secret and no hash. Only the manager writes it, atomically (temp, fsync,
 * rename, fsync dir) and without any lock: it is the file's only writer, and
 * it must never wait on the locks of user.cfg or token.shadow for it.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { LastUsedFileError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic.js';
import { ABSENT, type FileStamp, sameStamp, stampOf, stampPath } from '../files/stamp.js';
import type { LastUsedMap } from './notes.js';
import type { LastUsedBatch, LastUsedSink } from './sink.js';

export const LAST_USED_FILE = 'last-used.json';
const FORMAT = 1;

/** The file's path for a token.shadow path: the same directory. */
export function lastUsedPathFor(shadowPath: string): string {
  return path.join(path.dirname(shadowPath), LAST_USED_FILE);
}

export interface LastUsedRecord {
  /** Epoch second from which uses were recorded (the first write); null for no file. */
  since: number | null;
  tokens: ReadonlyMap<string, number>;
}

export const NO_RECORD: LastUsedRecord = Object.freeze({ since: null, tokens: new Map() });

function isSecond(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

export function parseLastUsed(file: string, text: string): LastUsedRecord {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new LastUsedFileError(file, 'bad-json', `not valid JSON (${text.length} bytes)`);
  }
  const shape = (detail: string) => new LastUsedFileError(file, 'bad-shape', detail);
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw shape('expected a JSON object');
  }
  const { format, since, tokens } = data as Record<string, unknown>;
  if (format !== FORMAT) throw shape(`unknown format ${JSON.stringify(format)}`);
  if (!isSecond(since)) throw shape('since is not an epoch second');
  if (typeof tokens !== 'object' || tokens === null || Array.isArray(tokens)) {
    throw shape('tokens is not an object');
  }
  const map: LastUsedMap = new Map();
  for (const [tokenid, seconds] of Object.entries(tokens)) {
    if (!isSecond(seconds)) throw shape(`the entry of ${JSON.stringify(tokenid)} is not a second`);
    map.set(tokenid, seconds);
  }
  return { since, tokens: map };
}

/** The file's text; `compact` leaves out the indentation and newline (etcd's copy, src/cluster). */
export function serializeLastUsed(
  since: number,
  tokens: ReadonlyMap<string, number>,
  compact = false,
): string {
  // No prototype: a "__proto__" key must be written as data, not hit the setter.
  const object: Record<string, number> = Object.create(null);
  for (const tokenid of [...tokens.keys()].sort()) object[tokenid] = tokens.get(tokenid) as number;
  const record = { format: FORMAT, since, tokens: object };
  return compact ? JSON.stringify(record) : `${JSON.stringify(record, null, 1)}\n`;
}

/** Reads the file; a missing file is NO_RECORD. */
export async function readLastUsed(file: string): Promise<LastUsedRecord> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return NO_RECORD;
    throw new LastUsedFileError(file, 'unreadable', `cannot read: ${code ?? 'error'}`);
  }
  return parseLastUsed(file, text);
}

/**
 * The file as readers (API workers, tokenctl) see it: parsed again only when
 * its stamp changed, so a listing costs one stat. Every write replaces the
 * inode, so the stamp always moves.
 */
export class LastUsedReader {
  readonly path: string;
  #stamp: FileStamp | null = null;
  #record: LastUsedRecord = NO_RECORD;

  constructor(file: string) {
    this.path = file;
  }

  async read(): Promise<LastUsedRecord> {
    const stamp = await stampPath(this.path);
    if (sameStamp(stamp, this.#stamp)) return this.#record;
    let record: LastUsedRecord = NO_RECORD;
    if (stamp !== ABSENT) {
      const handle = await fsp.open(this.path, 'r').catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return null;
        throw new LastUsedFileError(this.path, 'unreadable', `cannot open: ${error.code}`);
      });
      if (handle === null) return this.read();
      try {
        const st = stampOf(await handle.stat({ bigint: true }));
        record = parseLastUsed(this.path, await handle.readFile('utf8'));
        this.#stamp = st;
      } finally {
        await handle.close();
      }
    } else {
      this.#stamp = ABSENT;
    }
    this.#record = record;
    return record;
  }
}

export interface LastUsedFileOptions {
  /** 0600, or 0640 when the deployment shares its files with a group (the API workers read it). */
  mode?: number;
  gid?: number;
}

/** The sink that keeps the manager's view in the local file: one atomic write per batch. */
export class LastUsedFileSink implements LastUsedSink {
  readonly path: string;
  #mode: number;
  #gid: number | undefined;
  writes = 0;

  constructor(file: string, options: LastUsedFileOptions = {}) {
    this.path = file;
    this.#gid = options.gid;
    this.#mode = options.mode ?? (options.gid === undefined ? 0o600 : 0o640);
  }

  async load(): Promise<LastUsedRecord> {
    return readLastUsed(this.path);
  }

  async write(batch: LastUsedBatch): Promise<void> {
    await writeFileAtomic(this.path, serializeLastUsed(batch.since, batch.all), {
      mode: this.#mode,
      ...(this.#gid === undefined ? {} : { gid: this.#gid }),
    });
    this.writes++;
  }
}
