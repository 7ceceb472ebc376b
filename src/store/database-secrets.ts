/**
 * The secrets' side of the token database for the Authenticator: a
 * SecretVerifier over `access.db`, as TokenShadow is over token.shadow. A
 * process looks up only the token it verifies (one indexed read), and keeps
 * the secrets it verified in a VerifiedSecretCache kept exact by the
 * TOKEN_SHADOW slot and the change log, never by re-reading everything:
 *
 * - Fast path: the slot equals the generation the cache was brought to (it
 *   catches up first if not, below), the TTL has not passed, and the keyed
 *   digest of the secret matches the cached one. Whether the token is enabled
 *   and unexpired is the Authenticator's question (StoredTokens, user.cfg's
 *   view of the tokens), not this one's.
 * - The slot moved (or the TTL passed): load the slot, then fetch the ids
 *   changed after the last applied sequence and drop just those (a reader
 *   further behind than the kept log drops everything), then adopt the
 *   generation loaded first. The writer commits before it bumps, so the
 *   changes fetched include every change the loaded generation announced.
 * - Slow path: one lookup (its own read transaction: the committed state),
 *   one hash verify in the pool; cached only if the slot did not move
 *   meanwhile, and re-checked against a fresh lookup if it did.
 * - Multi-host mode: once this host's fence has passed (src/generations/fence.ts)
 *   nothing is answered from the cache and every verify is a FencedError (a
 *   503), before and after it hashed, as TokenShadow does: a copy that may be
 *   stale never says yes.
 */
import { randomUUID } from 'node:crypto';
import { BusyError, FencedError } from '../errors.js';
import { Freshness } from '../files/freshness.js';
import { fencePassed } from '../generations/fence.js';
import type { GenerationPage } from '../generations/page.js';
import { Slot } from '../generations/slots.js';
import type { HashPool } from '../hashing/pool.js';
import { previousSecretId, secretOwnerOf } from '../ids.js';
import type { SecretVerifier } from '../shadow/secret-verifier.js';
import {
  MAX_SECRET_LENGTH,
  type TokenShadowStats,
  verifyCounters,
} from '../shadow/token-shadow.js';
import { VerifiedSecretCache } from '../shadow/verified-cache.js';
import type { TokenDatabaseReader } from './token-database.js';

const MAX_ATTEMPTS = 3;
const NO_HASHES: ReadonlyMap<string, string> = new Map();

export interface DatabaseSecretsOptions {
  database: TokenDatabaseReader;
  page: GenerationPage | null;
  pool: HashPool;
  /** Cached secrets at most (least recently verified go first). */
  maxEntries?: number;
  /** How often the change log is looked at even when the slot did not move (a crashed writer's change). */
  ttlMs?: number;
  /** A clock in ms for the TTL (tests); by default a timer marks it passed, so the fast path reads no clock. */
  clock?: () => number;
}

export class DatabaseSecrets implements SecretVerifier {
  readonly #db: TokenDatabaseReader;
  readonly #page: GenerationPage | null;
  readonly #pool: HashPool;
  readonly #cache: VerifiedSecretCache | null;
  readonly #freshness: Freshness;
  #generation: number | null = null;
  #mapping = -1;
  #seq = 0;
  #dummyHash: Promise<string> | null = null;
  #stats = verifyCounters();

  constructor(options: DatabaseSecretsOptions) {
    this.#db = options.database;
    this.#page = options.page;
    this.#pool = options.pool;
    this.#cache =
      options.page === null ? null : new VerifiedSecretCache(options.maxEntries ?? 100_000);
    this.#freshness = new Freshness(options.ttlMs ?? 60_000, options.clock ?? null);
  }

  /**
   * The fast path. Unlike token.shadow's, it may catch up itself (synchronous:
   * one indexed read of the change log, once per change), so a change to one
   * token leaves every other cached token on the fast path.
   */
  verifyCached(id: string, secret: string): true | undefined {
    const page = this.#page;
    if (page === null) return undefined;
    if (
      page.load(Slot.TOKEN_SHADOW) !== this.#generation ||
      page.mapping !== this.#mapping ||
      this.#freshness.expired()
    ) {
      try {
        this.#catchUp();
      } catch {
        return undefined; // the slow path says what is wrong with the database
      }
    }
    if (fencePassed(page) || this.#cache?.matches(id, secret) !== true) return undefined;
    this.#stats.hits++;
    return true;
  }

  async verifySecret(id: string, secret: string): Promise<boolean> {
    if (this.verifyCached(id, secret)) return true;
    this.#refuseIfFenced();
    if (typeof secret !== 'string' || secret.length === 0 || secret.length > MAX_SECRET_LENGTH) {
      return false;
    }
    this.#stats.misses++;
    // A full hashing queue refuses at once, before any lookup (the same for every id).
    const pool = this.#pool;
    if (pool.inFlight >= pool.threads + pool.maxQueue) {
      this.#stats.busyRejections++;
      throw new BusyError('hashing queue full');
    }
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const generation = this.#catchUp();
      const hash = this.#hashOf(id);
      if (hash === undefined) {
        await this.#dummyVerify(secret);
        return false;
      }
      const ok = await this.#hashVerify(hash, secret);
      if (ok) this.#refuseIfFenced();
      const page = this.#page;
      if (page === null || page.load(Slot.TOKEN_SHADOW) === generation) {
        if (ok && generation !== null && generation === this.#generation) {
          this.#cache?.set(id, hash, secret);
        }
        return ok;
      }
      // Something changed while we hashed: the answer stands only if this secret did not.
      this.#stats.revalidations++;
      if (this.#hashOf(id) === hash) return ok;
    }
    throw new BusyError('token changed during every verification attempt');
  }

  async verifyWithoutHashing(id: string, secret: string): Promise<true | undefined> {
    if (this.verifyCached(id, secret)) return true;
    this.#refuseIfFenced();
    this.#catchUp();
    if (this.#page === null || this.#cache?.matches(id, secret) !== true) return undefined;
    this.#stats.hits++;
    return true;
  }

  async verifyHashed(id: string | null, secret: string): Promise<boolean> {
    this.#refuseIfFenced();
    const hash = id === null ? undefined : this.#hashOf(id);
    if (hash === undefined) {
      await this.#dummyVerify(secret);
      return false;
    }
    return this.#hashVerify(hash, secret);
  }

  stats(): TokenShadowStats {
    return {
      ...this.#stats,
      evictions: this.#cache?.evictions ?? 0,
      entries: this.#cache?.size ?? 0,
      generation: this.#generation,
    };
  }

  async warmUp(): Promise<void> {
    this.#dummyHash ??= this.#pool.hash(randomUUID());
    await this.#dummyHash;
  }

  #refuseIfFenced(): void {
    const page = this.#page;
    if (page !== null && fencePassed(page)) throw new FencedError();
  }

  /** The hash stored under `id` now (its own read transaction), undefined when none. */
  #hashOf(id: string): string | undefined {
    const { tokenid, previous } = secretOwnerOf(id);
    const row = this.#db.lookup(tokenid);
    const hash = previous ? row?.previousHash : row?.hash;
    return hash ? hash : undefined;
  }

  /**
   * Brings the cache to the slot's value: drops the secrets of every id the
   * change log names after the last sequence applied (all of them when the log
   * no longer reaches back). Synchronous, so no verify runs in between.
   */
  #catchUp(): number | null {
    const page = this.#page;
    if (page === null) return null;
    const generation = page.load(Slot.TOKEN_SHADOW);
    const moved = generation !== this.#generation || page.mapping !== this.#mapping;
    if (!moved && !this.#freshness.expired()) return generation;
    const changed =
      page.mapping !== this.#mapping || this.#generation === null
        ? 'too-old'
        : this.#db.changesSince(this.#seq);
    if (changed === 'too-old') {
      this.#cache?.clear();
      this.#seq = this.#db.newestSeq();
    } else {
      const ids = changed.ids.flatMap((tokenid) => [tokenid, previousSecretId(tokenid)]);
      this.#stats.invalidationsByGeneration += this.#cache?.retainChanged(ids, NO_HASHES) ?? 0;
      this.#seq = changed.seq;
    }
    this.#mapping = page.mapping;
    this.#generation = generation;
    this.#freshness.touch();
    return generation;
  }

  async #hashVerify(hash: string, secret: string): Promise<boolean> {
    this.#stats.slowVerifies++;
    return this.#pool.verify(hash, secret);
  }

  /** An unknown id costs one verify against a throwaway hash, so timing shows nothing. */
  async #dummyVerify(secret: string): Promise<void> {
    this.#stats.dummyVerifies++;
    this.#dummyHash ??= this.#pool.hash(randomUUID());
    await this.#hashVerify(await this.#dummyHash, secret);
  }
}
