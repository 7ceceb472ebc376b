/**
 * The manager's last-used file, `last-used.json` next to token.shadow: token id
 * -> epoch second of its last use (`tokens`), where from (`where`: token id ->
 * source address and, in multi-host mode, the host that recorded it), since
 * when uses are recorded, and (multi-host mode) the name of the host that wrote
 * it. `where` and `host` were added without changing the format number: a file
 * without them reads (no source known), and an older reader ignores them and
 * still reads the times. It holds no secret and no hash. Only the manager writes it, atomically (temp, fsync,
 * rename, fsync dir) and without any lock: it is the file's only writer, and
 * it must never wait on the locks of user.cfg or token.shadow for it.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { LastUsedFileError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic.js';
import { ABSENT, type FileStamp, sameStamp, stampOf, stampPath } from '../files/stamp.js';
import { type LastUse, type LastUsedMap, lastUseOf } from './notes.js';
import type { LastUsedBatch, LastUsedSink } from './sink.js';
import { isHostName, isSourceAddress } from './where.js';

export const LAST_USED_FILE = 'last-used.json';
const FORMAT = 1;

/** The file's path for a token.shadow path: the same directory. */
export function lastUsedPathFor(shadowPath: string): string {
  return path.join(path.dirname(shadowPath), LAST_USED_FILE);
}

export interface LastUsedRecord {
  /** Epoch second from which uses were recorded (the first write); null for no file. */
  since: number | null;
  tokens: ReadonlyMap<string, LastUse>;
  /** The host that wrote the file (multi-host mode): where this host's workers' own notes are from. */
  host?: string;
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
  const { format, since, tokens, where, host } = data as Record<string, unknown>;
  if (format !== FORMAT) throw shape(`unknown format ${JSON.stringify(format)}`);
  if (!isSecond(since)) throw shape('since is not an epoch second');
  if (!isPlainObject(tokens)) throw shape('tokens is not an object');
  if (where !== undefined && !isPlainObject(where)) throw shape('where is not an object');
  if (host !== undefined && !isHostName(host)) throw shape('host is not a host name');
  const map: LastUsedMap = new Map();
  for (const [tokenid, seconds] of Object.entries(tokens)) {
    if (!isSecond(seconds)) throw shape(`the entry of ${JSON.stringify(tokenid)} is not a second`);
    const place = where === undefined || !Object.hasOwn(where, tokenid) ? {} : where[tokenid];
    if (!isPlainObject(place)) throw shape(`where of ${JSON.stringify(tokenid)} is not an object`);
    if (place.source !== undefined && !isSourceAddress(place.source)) {
      throw shape(`the source of ${JSON.stringify(tokenid)} is not an address`);
    }
    if (place.host !== undefined && !isHostName(place.host)) {
      throw shape(`the host of ${JSON.stringify(tokenid)} is not a host name`);
    }
    map.set(
      tokenid,
      lastUseOf(seconds, place.source as string | undefined, place.host as string | undefined),
    );
  }
  return { since, tokens: map, ...(host === undefined ? {} : { host }) };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export interface SerializeOptions {
  /** No indentation and no newline (etcd's copy, src/cluster). */
  compact?: boolean;
  /** Leave out each use's host (etcd's copy: its key names the host). */
  withoutHosts?: boolean;
  /** The host writing the file (multi-host mode). */
  host?: string;
}

/** The file's text. */
export function serializeLastUsed(
  since: number,
  tokens: ReadonlyMap<string, LastUse>,
  options: SerializeOptions = {},
): string {
  // No prototype: a "__proto__" key must be written as data, not hit the setter.
  const times: Record<string, number> = Object.create(null);
  const where: Record<string, { source?: string; host?: string }> = Object.create(null);
  let placed = false;
  for (const tokenid of [...tokens.keys()].sort()) {
    const use = tokens.get(tokenid) as LastUse;
    times[tokenid] = use.seconds;
    const host = options.withoutHosts ? undefined : use.host;
    if (use.source === undefined && host === undefined) continue;
    where[tokenid] = {
      ...(use.source === undefined ? {} : { source: use.source }),
      ...(host === undefined ? {} : { host }),
    };
    placed = true;
  }
  const record = {
    format: FORMAT,
    since,
    ...(options.host === undefined ? {} : { host: options.host }),
    tokens: times,
    ...(placed ? { where } : {}),
  };
  return options.compact ? JSON.stringify(record) : `${JSON.stringify(record, null, 1)}\n`;
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
  /** This host's name in multi-host mode, written as the file's `host`. */
  host?: string;
  /** 0600, or 0640 when the deployment shares its files with a group (the API workers read it). */
  mode?: number;
  gid?: number;
}

/** The sink that keeps the manager's view in the local file: one atomic write per batch. */
export class LastUsedFileSink implements LastUsedSink {
  readonly path: string;
  #mode: number;
  #gid: number | undefined;
  #host: string | undefined;
  writes = 0;

  constructor(file: string, options: LastUsedFileOptions = {}) {
    this.path = file;
    this.#host = options.host;
    this.#gid = options.gid;
    this.#mode = options.mode ?? (options.gid === undefined ? 0o600 : 0o640);
  }

  async load(): Promise<LastUsedRecord> {
    return readLastUsed(this.path);
  }

  async write(batch: LastUsedBatch): Promise<void> {
    const host = this.#host;
    const text = serializeLastUsed(batch.since, batch.all, host === undefined ? {} : { host });
    await writeFileAtomic(this.path, text, {
      mode: this.#mode,
      ...(this.#gid === undefined ? {} : { gid: this.#gid }),
    });
    this.writes++;
  }
}
