/**
 * A host's copy of the store's tokens in its token database (multi-host mode
 * on a host with `access.db`): the sync agent hands it what each revision did
 * to `token/` and `shadow/` keys, one SQLite transaction per revision, and at
 * the start of a session the whole store, page by page, writing only the rows
 * that differ. Its cost is what changed, never what is stored; the workers
 * read the database and follow TOKEN_SHADOW as on a single host.
 *
 * The store may hold a secret before its token (a writer on the files puts
 * the hash first, then the token's line): such a secret waits here until its
 * row arrives. It authenticates nobody meanwhile, as in token.shadow.
 */
import { Worker } from 'node:worker_threads';
import { parseTokenEntry } from '../config/parse.js';
import type { TokenEntry } from '../config/types.js';
import { previousSecretId, secretOwnerOf } from '../ids.js';
import { rowOf } from '../store/interop.js';
import type { ReplicatedSecret, TokenRow } from '../store/token-database.js';
import type { TokenStore } from '../store/token-store.js';
import type { ClusterSettings } from './settings.js';
import type { EtcdStore } from './store.js';

/** Tokens per page of a resynchronisation: some 1.5 MB of answers from etcd. */
const PAGE = 5_000;

const PREVIOUS = previousSecretId('');

/** One change of a `token/` or `shadow/` key; `value` null for a delete. */
export interface ReplicaEvent {
  kind: 'token' | 'shadow';
  id: string;
  value: string | null;
}

/** A `shadow/` key's id and value as the secret it is. */
function secretOf(id: string, hash: string): ReplicatedSecret {
  const { tokenid, previous } = secretOwnerOf(id);
  return { id: tokenid, previous, hash };
}

function slotKey(secret: { id: string; previous: boolean }): string {
  return secret.previous ? previousSecretId(secret.id) : secret.id;
}

/** A token's entry from its stored line; null when a file would drop the line. */
function entryOfLine(id: string, line: string): TokenEntry | null {
  const parsed = parseTokenEntry(line);
  if ('problem' in parsed || `${parsed.userid}!${parsed.name}` !== id) return null;
  return parsed.entry;
}

export class TokenReplica {
  readonly #store: TokenStore;
  /** Secrets with no row yet, by their `shadow/` id. */
  readonly #waiting = new Map<string, ReplicatedSecret>();

  constructor(store: TokenStore) {
    this.#store = store;
  }

  /** One revision's changes, in order: one transaction, one bump of TOKEN_SHADOW. */
  async apply(events: readonly ReplicaEvent[]): Promise<void> {
    const tokens = new Map<string, TokenEntry | null>();
    const secrets = new Map<string, ReplicatedSecret>();
    for (const event of events) {
      if (event.kind === 'token') {
        tokens.set(event.id, event.value === null ? null : entryOfLine(event.id, event.value));
      } else {
        secrets.set(event.id, secretOf(event.id, event.value ?? ''));
      }
    }
    // A token arriving now takes the secrets that waited for it (unless replaced here).
    for (const [id, entry] of tokens) {
      if (entry === null) continue;
      for (const key of [id, previousSecretId(id)]) {
        const waiting = this.#waiting.get(key);
        if (waiting !== undefined && !secrets.has(key)) secrets.set(key, waiting);
      }
    }
    for (const key of secrets.keys()) this.#waiting.delete(key);
    if (tokens.size === 0 && secrets.size === 0) return;
    const { result: unplaced } = await this.#store.replicate(
      [...tokens].map(([id, entry]) => ({ id, entry })),
      [...secrets.values()],
    );
    for (const secret of unplaced) this.#waiting.set(slotKey(secret), secret);
  }

  /**
   * Makes the database hold exactly the store's tokens at `revision`, in a
   * thread of its own (token-resync-worker.ts): reading a million tokens'
   * pages grows a heap to a peak V8 keeps, and a thread's heap goes with it.
   * Then one bump announces what changed. Returns how many rows changed.
   */
  async resync(job: ResyncJob, signal?: AbortSignal): Promise<number> {
    this.#waiting.clear();
    const worker = new Worker(new URL('./token-resync-worker.js', import.meta.url), {
      workerData: job,
      // A page's objects are garbage once written: a small heap collects them often, rather
      // than growing to hundreds of MiB the process may keep after the thread ended.
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 8 },
    });
    const stop = () => void worker.terminate();
    signal?.addEventListener('abort', stop, { once: true });
    try {
      const outcome = await new Promise<ResyncOutcome>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`the resync thread ended (${code})`)));
      });
      for (const secret of outcome.waiting) this.#waiting.set(slotKey(secret), secret);
      if (outcome.changed > 0) await this.#store.announce();
      return outcome.changed;
    } finally {
      signal?.removeEventListener('abort', stop);
      await worker.terminate();
    }
  }
}

/** What a resynchronisation thread is given: where to read, at which revision, what to write. */
export interface ResyncJob {
  settings: ClusterSettings;
  revision: number;
  /** The store's users at `revision`: where the blocks of the read begin. */
  users: string[];
  /** The token database and the writer's options (the deployment's group). */
  path: string;
  gid?: number | undefined;
}

/** What it answers: rows changed, and secrets whose token the store does not hold (yet). */
export interface ResyncOutcome {
  changed: number;
  waiting: ReplicatedSecret[];
}

/**
 * Users per block of a resynchronisation. etcd 3.4 counts every key of a
 * range to answer a limited read of it, so pages read off one range of a
 * million keys cost a million each: each read stays inside a block of users.
 */
const USERS_PER_BLOCK = 500;

/**
 * Reads the store's tokens at `revision` page by page and hands each page's
 * rows to `write` with the ids it covers, [from, to) (null: open), for the
 * database to hold exactly those there. Pages follow key order (the
 * database's too), at most PAGE tokens each, never across a block of `users`
 * (their token ids start with `USER!`; the blocks cover every id).
 */
export async function resyncPages(
  store: EtcdStore,
  revision: number,
  users: readonly string[],
  write: (from: string | null, to: string | null, rows: TokenRow[]) => Promise<number>,
  sizes: { page?: number; usersPerBlock?: number } = {},
): Promise<ResyncOutcome> {
  const pageSize = sizes.page ?? PAGE;
  const perBlock = sizes.usersPerBlock ?? USERS_PER_BLOCK;
  const starts = users.map((userid) => `${userid}!`).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const bounds: Array<string | null> = [null];
  for (let i = perBlock; i < starts.length; i += perBlock) {
    bounds.push(starts[i] as string);
  }
  bounds.push(null);
  const waiting: ReplicatedSecret[] = [];
  let changed = 0;
  // The next page of tokens is read while this one's secrets are read and its rows written.
  type Page = Array<{ id: string; value: string }>;
  const readTokens = (from: string | null, end: string | null): Promise<Page> => {
    const read = store.range('token', revision, {
      ...(from === null ? {} : { from }),
      ...(end === null ? {} : { to: end }),
      limit: pageSize,
    });
    read.catch(() => undefined); // awaited below; a failure then ends the resync
    return read;
  };
  let block = 0;
  let from = bounds[0] ?? null;
  let end = bounds[1] ?? null;
  let ahead: Promise<Page> | null = readTokens(from, end);
  while (ahead !== null) {
    const page: Page = await ahead;
    // A full page ends after its last token's secrets (`X` and `X previous` sort together).
    const last: string | null = page.length < pageSize ? null : (page.at(-1)?.id ?? null);
    const to: string | null = last === null ? end : `${last}${PREVIOUS}\0`;
    // Next: the rest of this block, else the next block, else nothing.
    let next: { from: string | null; end: string | null } | null = null;
    if (last !== null) next = { from: to, end };
    else if (block + 2 < bounds.length) {
      block++;
      next = { from: bounds[block] ?? null, end: bounds[block + 1] ?? null };
    }
    ahead = next === null ? null : readTokens(next.from, next.end);
    const secrets = await store.range('shadow', revision, {
      ...(from === null ? {} : { from }),
      ...(to === null ? {} : { to }),
    });
    const hashes = new Map<string, string>();
    for (const { id, value } of secrets) hashes.set(id, value);
    const rows: TokenRow[] = [];
    for (const { id, value } of page) {
      const entry = entryOfLine(id, value);
      if (entry === null) continue;
      rows.push(
        rowOf(id, id.slice(0, id.lastIndexOf('!')), entry, {
          hash: hashes.get(id) ?? '',
          previousHash: hashes.get(previousSecretId(id)) ?? '',
          created: 0,
        }),
      );
      hashes.delete(id);
      hashes.delete(previousSecretId(id));
    }
    for (const [id, hash] of hashes) waiting.push(secretOf(id, hash));
    changed += await write(from, to, rows);
    if (next !== null) ({ from, end } = next);
  }
  return { changed, waiting };
}
