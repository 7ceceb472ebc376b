/**
 * TokenShadow: token.shadow plus this process's verified-secret cache, kept
 * exact across processes through the TOKEN_SHADOW slot of the generation page.
 * The semantics follow Proxmox's token_shadow.rs; where it drops the whole
 * cache, we revalidate entry by entry (see #revalidate).
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { BusyError, FencedError } from '../errors.js';
import { Freshness } from '../files/freshness.js';
import type { LockOptions } from '../files/lock.js';
import { publishUnderLock } from '../files/publish.js';
import { isRacy, sameStamp, stampPath, wallClockNs } from '../files/stamp.js';
import { fencePassed } from '../generations/fence.js';
import type { GenerationPage } from '../generations/page.js';
import { Slot } from '../generations/slots.js';
import { isLegacyHash } from '../hashing/params.js';
import type { HashPool } from '../hashing/pool.js';
import { parseTokenid, previousSecretId } from '../ids.js';
import { newSecret, type SecretFormat } from '../secret-format.js';
import { readShadow, type ShadowSnapshot, serializeShadow } from './file.js';
import { VerifiedSecretCache } from './verified-cache.js';

/** Where token.shadow is, the page and the hash pool, and how the file is checked and written. */
export interface TokenShadowOptions {
  /** Path of token.shadow. */
  path: string;
  /** The shared generation page, or null: then nothing is cached (correct, slower). */
  page: GenerationPage | null;
  pool: HashPool;
  /** How long a stat of the file is trusted, in ms (default 60 s). */
  ttlMs?: number;
  /** Most secrets cached at once (default 100,000). */
  maxEntries?: number;
  /** Group that may read the file; the mode then defaults to 0640 instead of 0600. */
  gid?: number;
  mode?: number;
  lock?: LockOptions;
  /** Rehash a legacy crypt hash as argon2id after it verified (default false). */
  upgradeLegacyHashes?: boolean;
  /** The form of new secrets (src/secret-format.ts): 'scannable' (default) or Proxmox's 'uuid'. */
  secretFormat?: SecretFormat;
  onWarning?: (message: string) => void;
}

/**
 * What only tests give a TokenShadow (not part of the package's public face:
 * src/index.ts exports TokenShadowOptions alone); tokenShadowForTests takes them.
 */
export interface TokenShadowTestOptions {
  /**
   * Monotonic milliseconds, for tests that control time. Without it, an unref'd
   * timer marks the TTL as passed, so the fast path reads no clock at all.
   */
  clock?: () => number;
  /** Test hooks to make interleavings deterministic. */
  hooks?: TokenShadowHooks;
}

/** Test hooks that make interleavings deterministic. */
export interface TokenShadowHooks {
  /** Awaited after a hash verify returned, before its result is used. */
  afterHashVerify?: (tokenid: string) => Promise<void>;
}

/** Counters of the cache and the verifies, for metrics. */
export interface TokenShadowStats {
  hits: number;
  misses: number;
  slowVerifies: number;
  dummyVerifies: number;
  coalescedWaits: number;
  invalidationsByGeneration: number;
  invalidationsByFileChange: number;
  revalidations: number;
  busyRejections: number;
  evictions: number;
  entries: number;
  generation: number | null;
}

/** The counters of TokenShadowStats a verifier counts itself, all at 0 (the rest it reads off its cache). */
export function verifyCounters(): Omit<TokenShadowStats, 'evictions' | 'entries' | 'generation'> {
  return {
    hits: 0,
    misses: 0,
    slowVerifies: 0,
    dummyVerifies: 0,
    coalescedWaits: 0,
    invalidationsByGeneration: 0,
    invalidationsByFileChange: 0,
    revalidations: 0,
    busyRejections: 0,
  };
}

/** Longest secret we hash; longer ones are refused without work. */
export const MAX_SECRET_LENGTH = 1024;
const MAX_ATTEMPTS = 3;

type Reason = 'generation' | 'file';

/** token.shadow and this process's verified-secret cache, kept exact across processes by the page. */
export class TokenShadow {
  readonly path: string;
  readonly ttlMs: number;
  #page: GenerationPage | null;
  #pool: HashPool;
  /** Null without a page: nothing is cached, and the addon is not needed. */
  #cache: VerifiedSecretCache | null;
  #mode: number;
  #gid: number | undefined;
  #lock: LockOptions;
  #upgrade: boolean;
  readonly #secretFormat: SecretFormat;
  #freshness: Freshness;
  #hooks: TokenShadowHooks;
  #warn: (message: string) => void;

  /** Generation the cache is consistent with; null until first synced. */
  #generation: number | null = null;
  /** Which of the page's mappings #generation was read from (GenerationPage.mapping). */
  #mapping = -1;
  /** The page went bad and no good one is at its path (see GenerationPage.usable). */
  #pageBad = false;
  /** Last parsed file, reused while its stamp is unchanged and not racy. */
  #snapshot: ShadowSnapshot | null = null;
  /** Wall-clock ns when #snapshot was read (decides whether its stamp is racy). */
  #readAtNs = 0n;
  #syncing: Promise<void> | null = null;
  #reading: Promise<ShadowSnapshot> | null = null;
  #inflight = new Map<string, Promise<boolean>>();
  #dummyHash: Promise<string> | null = null;
  /** Keys the in-flight map, so that it holds no secret (slow path only: an HMAC is cheap there). */
  #inflightKey = randomBytes(32);
  #upgrades = new Set<Promise<void>>();
  #stats = verifyCounters();

  constructor(options: TokenShadowOptions) {
    this.path = options.path;
    this.#page = options.page;
    this.#pool = options.pool;
    this.ttlMs = options.ttlMs ?? 60_000;
    this.#cache =
      options.page === null ? null : new VerifiedSecretCache(options.maxEntries ?? 100_000);
    this.#gid = options.gid;
    this.#mode = options.mode ?? (options.gid === undefined ? 0o600 : 0o640);
    this.#lock = options.lock ?? {};
    this.#upgrade = options.upgradeLegacyHashes ?? false;
    this.#secretFormat = options.secretFormat ?? 'scannable';
    const testing = options as TokenShadowOptions & TokenShadowTestOptions;
    this.#freshness = new Freshness(this.ttlMs, testing.clock ?? null);
    this.#hooks = testing.hooks ?? {};
    this.#warn = options.onWarning ?? ((m) => process.emitWarning(m, { code: 'TOKEN_SHADOW' }));
  }

  /** Whether verified secrets are cached (only with a generation page, and while it is good). */
  get caching(): boolean {
    return this.#page !== null && !this.#pageBad;
  }

  /**
   * The fast path alone: true when the cache proves `secret` right for
   * `tokenid` right now, undefined when only the slow path can tell.
   */
  verifyCached(tokenid: string, secret: string): true | undefined {
    const page = this.#page;
    if (page === null || page.load(Slot.TOKEN_SHADOW) !== this.#generation) return undefined;
    if (page.mapping !== this.#mapping) return undefined;
    if (this.#freshness.expired() || fencePassed(page)) return undefined;
    if (this.#cache?.matches(tokenid, secret) !== true) return undefined;
    this.#stats.hits++;
    return true;
  }

  /**
   * Whether `secret` is the current secret of `tokenid`. Throws BusyError when
   * the hashing queue is full, ShadowFileError when the file is corrupt and
   * FencedError (a BusyError: 503) when this host's fence has passed, before
   * or while it checked: a copy that may be stale never says yes.
   */
  async verifySecret(tokenid: string, secret: string): Promise<boolean> {
    if (this.verifyCached(tokenid, secret)) return true;
    // The page first: a retired one (replaced under us) carries a fence nobody renews any more.
    await this.#refresh();
    this.#refuseIfFenced();
    if (typeof secret !== 'string' || secret.length === 0 || secret.length > MAX_SECRET_LENGTH) {
      return false;
    }
    if (this.#page !== null && this.#cache?.matches(tokenid, secret) === true) {
      this.#stats.hits++;
      this.#refuseIfFenced();
      return true;
    }
    this.#stats.misses++;
    const ok = await this.#coalesced(tokenid, secret);
    if (ok) this.#refuseIfFenced();
    return ok;
  }

  /**
   * verifySecret without its hash, for a caller that must cost none (a
   * source penalised for its failures): true when the cache proves `secret`
   * once the slow path's checks are made (the TTL's stat of the file, a
   * generation that moved), undefined when only a hash could tell.
   */
  async verifyWithoutHashing(tokenid: string, secret: string): Promise<true | undefined> {
    if (this.verifyCached(tokenid, secret)) return true;
    await this.#refresh();
    this.#refuseIfFenced();
    if (this.#page === null || this.#cache?.matches(tokenid, secret) !== true) return undefined;
    this.#stats.hits++;
    return true;
  }

  /**
   * Whether `secret` is the secret stored under `id` (a token id, or the key
   * of its previous secret: previousSecretId), always at the cost of exactly
   * one hash verify: against the stored hash, or a throwaway one when there
   * is none (or `id` is null). Never the cache
   * (a hit would answer sooner) and never cached: for a caller whose answer
   * must not tell a match by its time, such as a report of a leaked secret.
   */
  async verifyHashed(id: string | null, secret: string): Promise<boolean> {
    await this.#refresh();
    this.#refuseIfFenced();
    const { entries } = await this.#currentSnapshot();
    const hash = id === null ? undefined : entries.get(id);
    if (hash === undefined) {
      await this.#dummyVerify(secret);
      return false;
    }
    return this.#hashVerify(hash, secret);
  }

  #refuseIfFenced(): void {
    const page = this.#page;
    if (page !== null && fencePassed(page)) throw new FencedError();
  }

  /**
   * Makes a new random secret (scannable, `tsk_...`, unless the options ask
   * for Proxmox's lowercase UUID v4), stores its hash, returns it once.
   */
  async generateAndSetSecret(tokenid: string): Promise<string> {
    const secret = newSecret(tokenid, this.#secretFormat);
    await this.setSecret(tokenid, secret);
    return secret;
  }

  /**
   * A rotation: a new secret (as generateAndSetSecret), and in the same write
   * the hash it replaces kept under previousSecretId (`keepPrevious`: a
   * grace, which user.cfg's graceUntil bounds) or any previous one removed,
   * so that at most two secrets are ever stored for a token.
   */
  async rotateSecret(tokenid: string, keepPrevious: boolean): Promise<string> {
    parseTokenid(tokenid);
    const secret = newSecret(tokenid, this.#secretFormat);
    const hash = await this.#pool.hash(secret);
    const previousId = previousSecretId(tokenid);
    await this.#mutate(
      (entries) => {
        const current = entries.get(tokenid);
        if (keepPrevious && current !== undefined) entries.set(previousId, current);
        else entries.delete(previousId);
        entries.set(tokenid, hash);
        return true;
      },
      () => this.#cache?.set(tokenid, hash, secret),
    );
    return secret;
  }

  /** Stores the hash of a given secret (imports, tests). */
  async setSecret(tokenid: string, secret: string): Promise<void> {
    parseTokenid(tokenid);
    const hash = await this.#pool.hash(secret);
    await this.#mutate(
      (entries) => {
        entries.set(tokenid, hash);
        return true;
      },
      () => this.#cache?.set(tokenid, hash, secret),
    );
  }

  /** Removes the token's secret; true when there was one. */
  async deleteSecret(tokenid: string): Promise<boolean> {
    return (await this.deleteSecrets([tokenid])).length > 0;
  }

  /** Removes the secrets of all these tokens in one write; the ids that had one. */
  async deleteSecrets(tokenids: Iterable<string>): Promise<string[]> {
    const wanted = [...tokenids];
    let removed: string[] = [];
    await this.#mutate((entries) => {
      removed = wanted.filter((tokenid) => entries.delete(tokenid));
      return removed.length > 0;
    });
    return removed;
  }

  stats(): TokenShadowStats {
    return {
      ...this.#stats,
      evictions: this.#cache?.evictions ?? 0,
      entries: this.#cache?.size ?? 0,
      generation: this.#generation,
    };
  }

  // --- keeping the cache current -------------------------------------------

  /**
   * The page, unless it went bad (truncated, replaced, removed, made writable
   * by others) and no good page is at its path: then nothing is cached until
   * one is. A page remapped meanwhile starts the cache afresh: generations of
   * two files do not compare.
   */
  #livePage(): GenerationPage | null {
    const page = this.#page;
    if (page === null) return null;
    const usable = page.usable(this.#warn);
    this.#pageBad = !usable;
    if (!usable || page.mapping !== this.#mapping) this.#forget(page);
    return usable ? page : null;
  }

  #forget(page: GenerationPage): void {
    this.#cache?.clear();
    this.#generation = null;
    this.#mapping = page.mapping;
  }

  /** Brings the cache to the current generation, and stats the file once per TTL. */
  async #refresh(): Promise<void> {
    let page = this.#page;
    if (page === null) return;
    while (this.#syncing) await this.#syncing;
    const generationMoved =
      page.load(Slot.TOKEN_SHADOW) !== this.#generation || page.mapping !== this.#mapping;
    const ttlPassed = this.#freshness.expired();
    if (!generationMoved && !ttlPassed) return;
    page = this.#livePage();
    if (page === null) return;
    this.#syncing = (generationMoved ? this.#revalidate('generation') : this.#checkFile(page))
      .then(() => undefined)
      .finally(() => {
        this.#syncing = null;
      });
    await this.#syncing;
  }

  /**
   * TTL passed: stat the file. Unchanged (and not racy): trust it for another
   * TTL. Otherwise revalidate, and if the content really changed behind our
   * back (a hand edit), bump the generation so every process revalidates.
   */
  async #checkFile(page: GenerationPage): Promise<void> {
    const before = this.#snapshot;
    const stamp = await stampPath(this.path);
    if (before !== null && sameStamp(stamp, before.stamp) && !isRacy(stamp, this.#readAtNs)) {
      this.#freshness.touch();
      return;
    }
    await this.#revalidate('file');
    const after = this.#snapshot;
    if (before !== null && after !== null && !sameEntries(before.entries, after.entries)) {
      if (page.readOnly) return;
      page.increment(Slot.TOKEN_SHADOW);
    }
  }

  /**
   * Load the generation first, then re-read the file, keep exactly the entries
   * whose hash is still the one they were verified against, and adopt the
   * generation loaded first: a writer that bumps after our load makes us
   * revalidate again, so we can never adopt a generation newer than our read.
   */
  async #revalidate(reason: Reason): Promise<void> {
    const page = this.#page;
    if (page === null) return;
    const generation = page.load(Slot.TOKEN_SHADOW);
    await this.#currentSnapshot(reason);
    this.#stats.revalidations++;
    this.#generation = generation;
  }

  /**
   * The parsed file, reusing the last parse while its stamp is unchanged and
   * trustworthy. Concurrent callers share one read; a read parses only the
   * lines that changed since the last one when it can (readShadow).
   */
  #currentSnapshot(reason: Reason = 'file'): Promise<ShadowSnapshot> {
    this.#reading ??= this.#readCurrent(reason).finally(() => {
      this.#reading = null;
    });
    return this.#reading;
  }

  async #readCurrent(reason: Reason): Promise<ShadowSnapshot> {
    const previous = this.#snapshot;
    if (previous !== null) {
      const stamp = await stampPath(this.path);
      if (sameStamp(stamp, previous.stamp) && !isRacy(stamp, this.#readAtNs)) {
        this.#freshness.touch();
        return previous;
      }
    }
    const readAtNs = wallClockNs();
    const snapshot = await readShadow(this.path, previous);
    const dropped = this.#adopt(snapshot, readAtNs, previous);
    if (reason === 'generation') this.#stats.invalidationsByGeneration += dropped;
    else this.#stats.invalidationsByFileChange += dropped;
    return snapshot;
  }

  /**
   * Makes `snapshot` the current parse and keeps the cache agreeing with it
   * (invariant: every cached entry's hash is the current snapshot's hash for
   * its id). When it was derived from `from`, the snapshot the cache agreed
   * with, only the ids it lists as changed are looked at. Returns how many
   * entries were dropped.
   */
  #adopt(snapshot: ShadowSnapshot, readAtNs: bigint, from: ShadowSnapshot | null): number {
    let dropped: number;
    if (snapshot === from) dropped = 0;
    else if (snapshot.changed !== undefined && from !== null && from === this.#snapshot) {
      dropped = this.#cache?.retainChanged(snapshot.changed, snapshot.entries) ?? 0;
    } else dropped = this.#cache?.retainMatching(snapshot.entries) ?? 0;
    this.#snapshot = snapshot;
    this.#readAtNs = readAtNs;
    this.#freshness.touch();
    return dropped;
  }

  // --- the slow path ---------------------------------------------------------

  /** Concurrent verifies of one (tokenid, secret) share one hash verify. */
  #coalesced(tokenid: string, secret: string): Promise<boolean> {
    const digest = createHmac('sha256', this.#inflightKey).update(secret).digest('base64');
    const key = `${tokenid}\n${digest}`;
    const running = this.#inflight.get(key);
    if (running !== undefined) {
      this.#stats.coalescedWaits++;
      return running;
    }
    // A full hashing queue refuses at once, before the file is read (the same for every id).
    const pool = this.#pool;
    if (pool.inFlight >= pool.threads + pool.maxQueue) {
      this.#stats.busyRejections++;
      return Promise.reject(new BusyError());
    }
    const task = this.#verifyFresh(tokenid, secret).finally(() => {
      this.#inflight.delete(key);
    });
    this.#inflight.set(key, task);
    return task;
  }

  /**
   * Verify against the file as it is now. A result is only used if nothing
   * changed while hashing; otherwise, if the token's hash changed meanwhile,
   * verify again against the new one (invariant I1: a mutation that returned
   * is never overruled by a verify that was still running).
   */
  async #verifyFresh(tokenid: string, secret: string): Promise<boolean> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // Without a synced generation (no good page) the file's stamp tells what changed.
      const page = this.#generation === null ? null : this.#page;
      const mapping = page?.mapping;
      const before = page?.load(Slot.TOKEN_SHADOW) ?? null;
      // The snapshot of the generation we are at is the file as of it: no stat, no re-read
      // (the TTL check in #refresh catches edits nobody announced).
      const known = this.#snapshot;
      const snapshot =
        page !== null && before === this.#generation && mapping === this.#mapping && known !== null
          ? known
          : await this.#currentSnapshot();
      const hash = snapshot.entries.get(tokenid);
      if (hash === undefined) {
        await this.#dummyVerify(secret);
        return false;
      }
      const ok = await this.#hashVerify(hash, secret);
      await this.#hooks.afterHashVerify?.(tokenid);
      const unchanged =
        page === null
          ? sameStamp(await stampPath(this.path), snapshot.stamp)
          : page.load(Slot.TOKEN_SHADOW) === before;
      if (unchanged) {
        // Cached only if the current parse still says `hash` (the invariant of #adopt).
        if (
          ok &&
          page !== null &&
          before === this.#generation &&
          mapping === this.#mapping &&
          this.#snapshot?.entries.get(tokenid) === hash
        ) {
          this.#cache?.set(tokenid, hash, secret);
        }
        if (ok && this.#upgrade && isLegacyHash(hash)) this.#upgradeLater(tokenid, hash, secret);
        return ok;
      }
      // Something changed while we hashed: does our answer still stand?
      const now = await readShadow(this.path, this.#snapshot);
      if (now.entries.get(tokenid) === hash) return ok;
    }
    throw new BusyError('token changed during every verification attempt');
  }

  /** Counts a hash verify only when the pool took it: a Busy refusal is not one. */
  async #hashVerify(hash: string, secret: string): Promise<boolean> {
    try {
      const ok = await this.#pool.verify(hash, secret);
      this.#stats.slowVerifies++;
      return ok;
    } catch (error) {
      if (error instanceof BusyError) this.#stats.busyRejections++;
      else this.#stats.slowVerifies++;
      throw error;
    }
  }

  /** An unknown id costs one verify against a throwaway hash, so timing shows nothing. */
  async #dummyVerify(secret: string): Promise<void> {
    this.#stats.dummyVerifies++;
    this.#dummyHash ??= this.#pool.hash(randomUUID());
    await this.#hashVerify(await this.#dummyHash, secret);
  }

  /** Prepares the dummy hash now rather than on the first unknown id. */
  async warmUp(): Promise<void> {
    this.#dummyHash ??= this.#pool.hash(randomUUID());
    await this.#dummyHash;
  }

  #upgradeLater(tokenid: string, legacy: string, secret: string): void {
    const run = async () => {
      const hash = await this.#pool.hash(secret);
      await this.#mutate(
        (entries) => {
          const still = entries.get(tokenid) === legacy;
          if (still) entries.set(tokenid, hash);
          return still;
        },
        () => this.#cache?.set(tokenid, hash, secret),
      );
    };
    const task = run()
      .catch((error) => this.#warn(`upgrading the hash of ${tokenid} failed: ${error}`))
      .finally(() => this.#upgrades.delete(task));
    this.#upgrades.add(task);
  }

  /** Resolves when background hash upgrades have finished (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#upgrades.size > 0) await Promise.all(this.#upgrades);
  }

  // --- mutations ---------------------------------------------------------------

  /**
   * lock -> read -> change -> write temp, fsync, rename, fsync dir -> bump ->
   * update own cache -> unlock. `change` returns false to write nothing;
   * `cached` updates this process's cache after the bump, still under the lock.
   */
  async #mutate(
    change: (entries: Map<string, string>) => boolean,
    cached?: () => void,
  ): Promise<void> {
    const page = this.#page;
    const target = {
      path: this.path,
      page,
      slot: Slot.TOKEN_SHADOW,
      mode: this.#mode,
      gid: this.#gid,
      lock: this.#lock,
    };
    await publishUnderLock(target, async (publish) => {
      // Corrupt: throws, never overwritten. Parses only what changed since our last look.
      const current = await readShadow(this.path, this.#snapshot);
      const entries = new Map(current.entries);
      if (!change(entries)) return;
      const text = serializeShadow(entries);
      const { stamp, writtenAtNs, generation } = await publish(text);
      if (page === null) return;
      if (generation === null || page.mapping !== this.#mapping) this.#forget(page);
      if (generation === null) return;
      // Whatever changed behind our back since our last look is in `current`:
      // keep only what it confirms, then what we wrote is the whole truth.
      this.#adopt({ entries, stamp, bytes: Buffer.from(text, 'utf8') }, writtenAtNs, null);
      this.#generation = generation;
      cached?.();
    });
  }
}

function sameEntries(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, value] of a) if (b.get(key) !== value) return false;
  return true;
}

/** A TokenShadow with the test-only options (src/ only: the package does not export this). */
export function tokenShadowForTests(
  options: TokenShadowOptions & TokenShadowTestOptions,
): TokenShadow {
  return new TokenShadow(options);
}
