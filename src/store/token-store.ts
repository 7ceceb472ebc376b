/**
 * The writer's protocol on the token database, as publishUnderLock is on the
 * files: take `access.db.lock` (proper-lockfile; the manager and tokenctl
 * exclude each other) -> check every reader's mapping of the page is reachable
 * -> one durable SQLite transaction -> bump the TOKEN_SHADOW slot -> release.
 * Once a method returns, every process that compares the slot sees the change
 * (I1): its next verify fetches the ids changed since its last sequence.
 */

import type { TokenEntry } from '../config/types.js';
import { GenerationPageError } from '../errors.js';
import { type LockOptions, withFileLock } from '../files/lock.js';
import type { GenerationPage } from '../generations/page.js';
import { Slot } from '../generations/slots.js';
import {
  type OpenWriterOptions,
  type ReplicatedSecret,
  TokenDatabaseWriter,
  type TokenFilter,
  type TokenMetadataChange,
  type TokenRow,
} from './token-database.js';

export interface TokenStoreOptions extends OpenWriterOptions {
  /** The page to bump; null runs without one (no process caches then). */
  page: GenerationPage | null;
  lock?: LockOptions;
}

/** A change that was committed: its sequence and the page slot's value after the bump. */
export interface Committed<T> {
  result: T;
  seq: number;
  generation: number | null;
}

export class TokenStore {
  readonly path: string;
  readonly #writer: TokenDatabaseWriter;
  readonly #page: GenerationPage | null;
  readonly #lock: LockOptions;

  constructor(path: string, options: TokenStoreOptions) {
    this.path = path;
    this.#page = options.page;
    this.#lock = options.lock ?? {};
    this.#writer = new TokenDatabaseWriter(path, options);
  }

  /** The row as committed (the writer's own connection). */
  get(tokenid: string): TokenRow | undefined {
    return this.#writer.get(tokenid);
  }

  put(rows: readonly TokenRow[]): Promise<Committed<number>> {
    return this.#publish((writer) => (rows.length === 0 ? 0 : writer.put(rows)));
  }

  setHash(tokenid: string, hash: string): Promise<Committed<boolean>> {
    return this.#publish((writer) => writer.setHash(tokenid, hash));
  }

  setSecret(tokenid: string, hash: string, keepPrevious: boolean): Promise<Committed<boolean>> {
    return this.#publish((writer) => writer.setSecret(tokenid, hash, keepPrevious));
  }

  /** A change of token metadata (TokenDatabaseWriter.applyChange); the ids removed. */
  applyChange(change: TokenMetadataChange, now: number): Promise<Committed<string[]>> {
    return this.#publish((writer) => writer.applyChange(change, now));
  }

  /** Changes replicated from multi-host mode's store; the secrets that found no row. */
  replicate(
    tokens: ReadonlyArray<{ id: string; entry: TokenEntry | null }>,
    secrets: readonly ReplicatedSecret[],
  ): Promise<Committed<ReplicatedSecret[]>> {
    return this.#publish((writer) => writer.replicate(tokens, secrets));
  }

  /** One page of a replica's resynchronisation (TokenDatabaseWriter.resyncRange). */
  resyncRange(
    from: string | null,
    to: string | null,
    rows: readonly TokenRow[],
  ): Promise<Committed<number>> {
    return this.#publish((writer) => writer.resyncRange(from, to, rows));
  }

  /**
   * Announces changes another connection committed (a resynchronisation
   * thread's): one bump of TOKEN_SHADOW under the lock.
   */
  async announce(): Promise<void> {
    await this.#publish(() => undefined, { force: true });
  }

  rowsOf(userid: string): TokenRow[] {
    return this.#writer.rowsOf(userid);
  }

  /** Removes the tokens; the ids that were there. */
  remove(tokenids: readonly string[]): Promise<Committed<string[]>> {
    return this.#publish((writer) => writer.remove(tokenids));
  }

  /** Bulk revocation: every token the filter selects, as one durable change. */
  revokeWhere(filter: TokenFilter): Promise<Committed<string[]>> {
    return this.#publish((writer) => writer.revokeWhere(filter));
  }

  /** What revokeWhere would take, changing nothing. */
  select(filter: TokenFilter): string[] {
    return this.#writer.select(filter);
  }

  rows(): Generator<TokenRow> {
    return this.#writer.rows();
  }

  close(): void {
    this.#writer.close();
  }

  async #publish<T>(
    change: (writer: TokenDatabaseWriter) => T,
    options: { force?: boolean } = {},
  ): Promise<Committed<T>> {
    const page = this.#page;
    if (page?.readOnly) {
      throw new GenerationPageError(page.path, 'read-only', 'cannot publish a change');
    }
    return withFileLock(
      this.path,
      async (assertHeld) => {
        assertHeld();
        // Before anything changes: every reader's mapping must be reachable (else this throws).
        const bumpable = page?.prepareWrite() ?? false;
        const before = this.#writer.newestSeq();
        const result = change(this.#writer);
        const seq = this.#writer.newestSeq();
        // Nothing committed (no such token): nothing to announce.
        if (seq === before && options.force !== true)
          return { result, seq, generation: page?.load(Slot.TOKEN_SHADOW) ?? null };
        const generation = page?.bump(Slot.TOKEN_SHADOW, bumpable) ?? null;
        return { result, seq, generation };
      },
      this.#lock,
    );
  }
}
