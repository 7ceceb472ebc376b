/**
 * A process's verify on the token database: the verified-secret cache kept
 * exact by the page slot and the change log, never by re-reading everything.
 *
 * - Fast path: the TOKEN_SHADOW slot equals the generation the cache was
 *   brought to, the TTL has not passed, and the keyed digest of the secret
 *   matches the cached one; the token's expiry is checked against the clock.
 * - The slot moved (or the TTL passed): load the slot, then fetch the ids
 *   changed after the last applied sequence and drop just those (a reader
 *   further behind than the kept log drops everything), then adopt the
 *   generation loaded first. The writer commits before it bumps, so the
 *   changes fetched include every change the loaded generation announced.
 * - Slow path: one lookup (its own read transaction: the committed state),
 *   one hash verify in the pool; cached only if the slot did not move
 *   meanwhile, and re-checked against a fresh lookup if it did.
 */
import { randomUUID } from 'node:crypto';
import { BusyError } from '../errors.js';
import { Freshness } from '../files/freshness.js';
import type { GenerationPage } from '../generations/page.js';
import { Slot } from '../generations/slots.js';
import type { HashPool } from '../hashing/pool.js';
import { VerifiedSecretCache } from '../shadow/verified-cache.js';
import type { TokenDatabaseReader, TokenRow } from './token-database.js';

const MAX_ATTEMPTS = 3;
const NO_HASHES: ReadonlyMap<string, string> = new Map();

export interface TokenVerifierOptions {
  database: TokenDatabaseReader;
  page: GenerationPage | null;
  pool: HashPool;
  /** Cached tokens at most (least recently verified go first). */
  maxEntries?: number;
  /** How often the change log is looked at even when the slot did not move (a crashed writer's change). */
  ttlMs?: number;
  /** Epoch seconds now (tests). */
  now?: () => number;
  /** A clock in ms for the TTL (tests); by default a timer marks it passed. */
  clock?: () => number;
}

export interface TokenVerifierStats {
  hits: number;
  slowVerifies: number;
  catchUps: number;
  dropped: number;
  fullResets: number;
}

export class TokenVerifier {
  readonly #db: TokenDatabaseReader;
  readonly #page: GenerationPage | null;
  readonly #pool: HashPool;
  readonly #cache: VerifiedSecretCache | null;
  readonly #freshness: Freshness;
  readonly #now: () => number;
  /** Expiry (epoch s) of the cached tokens that have one. */
  readonly #expiry = new Map<string, number>();
  #generation: number | null = null;
  #mapping = -1;
  #seq = 0;
  #dummyHash: Promise<string> | null = null;
  #stats: TokenVerifierStats = { hits: 0, slowVerifies: 0, catchUps: 0, dropped: 0, fullResets: 0 };

  constructor(options: TokenVerifierOptions) {
    this.#db = options.database;
    this.#page = options.page;
    this.#pool = options.pool;
    this.#cache =
      options.page === null ? null : new VerifiedSecretCache(options.maxEntries ?? 100_000);
    this.#freshness = new Freshness(options.ttlMs ?? 60_000, options.clock ?? null);
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000));
  }

  /** True when the cache proves `secret` right for an active `tokenid` now; undefined otherwise. */
  verifyCached(tokenid: string, secret: string): true | undefined {
    const page = this.#page;
    if (page === null || page.load(Slot.TOKEN_SHADOW) !== this.#generation) return undefined;
    if (page.mapping !== this.#mapping || this.#freshness.expired()) return undefined;
    if (this.#cache?.matches(tokenid, secret) !== true) return undefined;
    const expire = this.#expiry.get(tokenid);
    if (expire !== undefined && expire <= this.#now()) return undefined;
    this.#stats.hits++;
    return true;
  }

  /** Whether `secret` is the current secret of an enabled, unexpired `tokenid`. */
  async verify(tokenid: string, secret: string): Promise<boolean> {
    if (this.verifyCached(tokenid, secret)) return true;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const generation = this.#catchUp();
      const row = this.#db.lookup(tokenid);
      if (row === undefined || row.hash === '') {
        await this.#dummyVerify(secret);
        return false;
      }
      const ok = await this.#hashVerify(row.hash, secret);
      const page = this.#page;
      if (page === null || page.load(Slot.TOKEN_SHADOW) === generation) {
        if (
          ok &&
          active(row, this.#now()) &&
          generation !== null &&
          generation === this.#generation
        ) {
          this.#remember(row, secret);
        }
        return ok && active(row, this.#now());
      }
      // Something changed while we hashed: our answer stands only if the token did not.
      const now = this.#db.lookup(tokenid);
      if (now?.hash === row.hash) return ok && active(now, this.#now());
    }
    throw new BusyError('token changed during every verification attempt');
  }

  stats(): TokenVerifierStats & { entries: number; seq: number } {
    return { ...this.#stats, entries: this.#cache?.size ?? 0, seq: this.#seq };
  }

  /**
   * Brings the cache to the slot's current value (or, without a page, to
   * nothing); returns the generation it is consistent with. Synchronous: no
   * other verify of this process runs between the load and the adoption.
   */
  #catchUp(): number | null {
    const page = this.#page;
    if (page === null) return null;
    const generation = page.load(Slot.TOKEN_SHADOW);
    const moved = generation !== this.#generation || page.mapping !== this.#mapping;
    if (!moved && !this.#freshness.expired()) return generation;
    this.#stats.catchUps++;
    if (page.mapping !== this.#mapping || this.#generation === null) {
      this.#reset();
    } else {
      const changed = this.#db.changesSince(this.#seq);
      if (changed === 'too-old') this.#reset();
      else {
        this.#stats.dropped += this.#cache?.retainChanged(changed.ids, NO_HASHES) ?? 0;
        for (const id of changed.ids) this.#expiry.delete(id);
        this.#seq = changed.seq;
      }
    }
    this.#mapping = page.mapping;
    this.#generation = generation;
    this.#freshness.touch();
    return generation;
  }

  #reset(): void {
    this.#stats.fullResets++;
    this.#cache?.clear();
    this.#expiry.clear();
    this.#seq = this.#db.newestSeq();
  }

  #remember(row: TokenRow, secret: string): void {
    this.#cache?.set(row.id, row.hash, secret);
    if (row.expire > 0) this.#expiry.set(row.id, row.expire);
  }

  async #hashVerify(hash: string, secret: string): Promise<boolean> {
    this.#stats.slowVerifies++;
    return this.#pool.verify(hash, secret);
  }

  /** An unknown id costs one verify against a throwaway hash, so timing shows nothing. */
  async #dummyVerify(secret: string): Promise<void> {
    this.#dummyHash ??= this.#pool.hash(randomUUID());
    await this.#hashVerify(await this.#dummyHash, secret);
  }
}

function active(row: TokenRow, now: number): boolean {
  return row.enable && (row.expire === 0 || row.expire > now);
}
