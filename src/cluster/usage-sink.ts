/**
 * Last uses in multi-host mode: each host's manager keeps the uses its own
 * workers reported under `usage/<host>` (compact JSON, the format of
 * last-used.json: token ids, epoch seconds and source addresses, never a
 * secret or a hash; no host per use, the key names it),
 * with at most one put per batch, and only when something changed; and at
 * every batch it reads `usage/` once, so that its ledger takes the newer uses
 * other hosts recorded and its last-used.json shows uses anywhere. The keys
 * are outside `data/`: the sync agents never see them, no page is bumped and
 * no writer's wait for acks is woken.
 */
import type { Etcd3 } from 'etcd3';
import { ClusterError } from '../errors.js';
import { parseLastUsed, serializeLastUsed } from '../usage/file.js';
import { type LastUse, type LastUsedMap, lastUseOf, mergeLatest } from '../usage/notes.js';
import type { LastUsedBatch, LastUsedSink } from '../usage/sink.js';
import { retrying } from './client.js';
import type { ClusterKeys } from './keys.js';

/**
 * The largest value put: etcd refuses requests over 1.5 MiB by default
 * (`--max-request-bytes` 1,572,864); the rest is room for the key and framing.
 * At ~40 bytes per entry that is some 37,000 tokens (~20,000 with a source each).
 */
export const MAX_USAGE_VALUE_BYTES = 1_500_000;

export interface EncodedUsage {
  value: string;
  /** Entries left out because the value would not fit (the oldest uses). */
  omitted: number;
}

/** Bytes an entry adds to the compact JSON: `"id":second,` and `"id":{"source":"…"},` if it has one. */
function entryBytes(tokenid: string, use: LastUse): number {
  const id = Buffer.byteLength(JSON.stringify(tokenid));
  const time = id + String(use.seconds).length + 2;
  return use.source === undefined
    ? time
    : time + id + JSON.stringify({ source: use.source }).length + 2;
}

/** `,"where":{}`: what the first entry with a source adds besides its own bytes. */
const WHERE_BYTES = 11;

/**
 * The value of a host's key: every entry if it fits in `maxBytes`, otherwise
 * the most recent uses that fit (ties by token id, so the choice is stable).
 */
export function encodeUsage(
  since: number,
  tokens: ReadonlyMap<string, LastUse>,
  maxBytes = MAX_USAGE_VALUE_BYTES,
): EncodedUsage {
  const options = { compact: true, withoutHosts: true };
  const value = serializeLastUsed(since, tokens, options);
  if (Buffer.byteLength(value) <= maxBytes) return { value, omitted: 0 };
  let room =
    maxBytes - Buffer.byteLength(serializeLastUsed(since, new Map(), options)) - WHERE_BYTES;
  const newestFirst = [...tokens].sort(
    (a, b) => b[1].seconds - a[1].seconds || (a[0] < b[0] ? -1 : 1),
  );
  const kept: LastUsedMap = new Map();
  for (const [tokenid, use] of newestFirst) {
    room -= entryBytes(tokenid, use);
    if (room < 0) break;
    kept.set(tokenid, use);
  }
  return { value: serializeLastUsed(since, kept, options), omitted: tokens.size - kept.size };
}

export interface EtcdUsageSinkOptions {
  client: Etcd3;
  keys: ClusterKeys;
  /** This host's name: its key is `usage/<host>`. */
  host: string;
  /** How long one put or read may retry on other members before the batch gives up. */
  deadlineMs: number;
  maxBytes?: number;
  /**
   * What this host recorded before (its last-used.json): put at the first
   * batch when etcd has no record of this host yet, so that the uses of a
   * host that just joined (tokenctl cluster init) are seen on every host.
   */
  recorded?: ReadonlyMap<string, LastUse>;
  /** Said once: how many entries did not fit, and a record of another host that does not parse. */
  warn?: (fields: Record<string, unknown>, message: string) => void;
}

export class EtcdUsageSink implements LastUsedSink {
  readonly key: string;
  /** Puts done (the test counts them against batches). */
  puts = 0;
  #client: Etcd3;
  #prefix: string;
  #deadlineMs: number;
  #maxBytes: number;
  #warn: NonNullable<EtcdUsageSinkOptions['warn']>;
  /** The uses this host's workers reported: what its key holds, or will after the next put. */
  #mine: LastUsedMap = new Map();
  /** False until the key was read once: a put before that would drop what an earlier run stored. */
  #read = false;
  #unsaved = false;
  #warnedOmitted = false;
  #warnedKeys = new Set<string>();
  #recorded: ReadonlyMap<string, LastUse>;
  #host: string;

  constructor(options: EtcdUsageSinkOptions) {
    this.#client = options.client;
    this.#host = options.host;
    this.#prefix = options.keys.usage;
    this.key = options.keys.usageOf(options.host);
    this.#deadlineMs = options.deadlineMs;
    this.#maxBytes = options.maxBytes ?? MAX_USAGE_VALUE_BYTES;
    this.#warn = options.warn ?? (() => undefined);
    this.#recorded = options.recorded ?? new Map();
  }

  /** Something to put: uses recorded before this host had a key, or a put that failed. */
  get pending(): boolean {
    return this.#unsaved;
  }

  /**
   * One range read of `usage/`: every host's uses, this host's own too (after
   * a lost file), each with the host its key names.
   */
  async gather(): Promise<LastUsedMap> {
    const records = await retrying(
      'reading the last uses of every host',
      { deadlineMs: this.#deadlineMs },
      () => this.#client.getAll().prefix(this.#prefix).strings(),
    );
    const uses: LastUsedMap = new Map();
    for (const [key, value] of Object.entries(records)) {
      let tokens: LastUsedMap;
      try {
        const host = key.slice(this.#prefix.length);
        tokens = new Map(
          [...parseLastUsed(key, value).tokens].map(([tokenid, use]) => [
            tokenid,
            lastUseOf(use.seconds, use.source, host),
          ]),
        );
      } catch (error) {
        if (!this.#warnedKeys.has(key)) {
          this.#warn(
            { key, err: (error as Error).message },
            'unreadable last-used record of a host: skipped',
          );
        }
        this.#warnedKeys.add(key);
        continue;
      }
      if (key === this.key && !this.#read) mergeLatest(this.#mine, tokens);
      mergeLatest(uses, tokens);
    }
    if (!this.#read && !Object.hasOwn(records, this.key) && this.#recorded.size > 0) {
      // Uses the file says another host recorded are that host's to keep.
      const own = [...this.#recorded].filter(([, use]) => (use.host ?? this.#host) === this.#host);
      mergeLatest(this.#mine, own);
      if (own.length > 0) this.#unsaved = true;
    }
    this.#read = true;
    return uses;
  }

  /** Puts this host's uses if they changed: one put, or none. */
  async write(batch: LastUsedBatch): Promise<void> {
    for (const [tokenid, use] of batch.changed) {
      const mine = this.#mine.get(tokenid);
      if (mine === undefined || mine.seconds < use.seconds) {
        this.#mine.set(tokenid, lastUseOf(use.seconds, use.source));
        this.#unsaved = true;
      }
    }
    for (const tokenid of this.#mine.keys()) {
      // Pruned by the ledger (a deleted token): it leaves this host's record too.
      if (!batch.all.has(tokenid) && this.#mine.delete(tokenid)) this.#unsaved = true;
    }
    if (!this.#unsaved) return;
    if (!this.#read) {
      throw new ClusterError(
        'unavailable',
        `${this.key} not read yet: its put waits for a later batch`,
      );
    }
    const { value, omitted } = encodeUsage(batch.since, this.#mine, this.#maxBytes);
    if (omitted > 0 && !this.#warnedOmitted) {
      this.#warn(
        { key: this.key, omitted, kept: this.#mine.size - omitted, maxBytes: this.#maxBytes },
        'last-used record too large for etcd: the oldest uses left out',
      );
      this.#warnedOmitted = true;
    }
    await retrying('storing the last uses of this host', { deadlineMs: this.#deadlineMs }, () =>
      this.#client.put(this.key).value(value).exec(),
    );
    this.#unsaved = false;
    this.puts++;
  }
}
