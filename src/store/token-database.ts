/**
 * The token database (issue 25): every API token's metadata and hash as one
 * row of an SQLite file (`access.db`), so that a change costs what it changes
 * and a reader looks up one token instead of parsing everything.
 *
 * - One writer at a time (the manager, or tokenctl), serialised by
 *   proper-lockfile on `access.db.lock` as the files are; SQLite's own locks
 *   only keep readers off a half-written commit.
 * - Rollback journal (journal_mode=PERSIST) with synchronous=FULL: a commit
 *   returns only after the journal's header was zeroed (the commit point) and
 *   fsynced. Not WAL: WAL readers write the `-shm` wal-index,
 *   so an unprivileged reader could make the writer overwrite committed frames.
 * - Readers open the file read-only (O_RDONLY): they take fcntl read locks and
 *   write nothing, so the API's group cannot corrupt or roll back the store
 *   (invariant I6). The config directory is not group-writable, so nobody but
 *   root can plant a journal for the writer to "roll back".
 * - Every change appends the ids it touched to `changes` under a sequence
 *   number in the same transaction. A reader that sees the page slot move asks
 *   for the ids changed after the last sequence it applied and drops just
 *   those from its verified cache: O(change), never a re-read of everything.
 *   Old sequences are pruned; a reader that is further behind than what is
 *   kept is told so and starts its cache afresh.
 *
 * Inspect it with the sqlite3 CLI: `sqlite3 -readonly access.db 'SELECT id,
 * enable, expire FROM tokens LIMIT 10'`.
 */
import { chmodSync, chownSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { TokenEntry } from '../config/types.js';
import { TokenDatabaseError } from '../errors.js';
import { parseTokenid } from '../ids.js';

// --- node:sqlite, the part used here ------------------------------------------------
// Built into Node 22.13+ and 24 (no install, no compiler); @types/node 20 has no types for it.

type SqlValue = string | number | bigint | null | Uint8Array;

interface Statement {
  get(...params: unknown[]): Record<string, SqlValue> | undefined;
  all(...params: unknown[]): Record<string, SqlValue>[];
  run(...params: unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint };
  iterate(...params: unknown[]): IterableIterator<Record<string, SqlValue>>;
}

interface Database {
  prepare(sql: string): Statement;
  exec(sql: string): void;
  close(): void;
}

type DatabaseConstructor = new (path: string, options?: { readOnly?: boolean }) => Database;

let sqlite: DatabaseConstructor | null = null;

/** node:sqlite's DatabaseSync, or a TokenDatabaseError naming the runtime that lacks it. */
function databaseClass(path: string): DatabaseConstructor {
  if (sqlite !== null) return sqlite;
  try {
    const loaded = createRequire(import.meta.url)('node:sqlite') as {
      DatabaseSync: DatabaseConstructor;
    };
    sqlite = loaded.DatabaseSync;
    return sqlite;
  } catch (error) {
    throw new TokenDatabaseError(
      path,
      `node:sqlite is not available in Node ${process.version} (it needs 22.13 or later)`,
      { cause: error },
    );
  }
}

/** Whether this runtime can open the token database (node:sqlite is there). */
export function tokenDatabaseAvailable(): boolean {
  try {
    databaseClass('');
    return true;
  } catch {
    return false;
  }
}

/** Bumped when the schema changes; a reader refuses a file of another version. */
export const SCHEMA_VERSION = 2;

/**
 * How a commit is made durable: the journal is kept between transactions and
 * zeroing its header, fsynced, is the commit point (no file created, unlinked
 * and directory-synced per commit, as journal_mode=DELETE needs).
 */
const JOURNAL_MODE = 'PERSIST';
const SYNCHRONOUS = 'FULL';

/** The writer's page cache, KiB (see TokenDatabaseWriter's constructor). */
const WRITER_CACHE_KIB = 8 * 1024;

/** How many change sequences are kept for readers to catch up with. */
export const DEFAULT_CHANGES_KEPT = 200_000;

/** One token as stored: user.cfg's metadata and token.shadow's hash in one row. */
export interface TokenRow {
  /** `USER@REALM!NAME`. */
  id: string;
  userid: string;
  /** The argon2id (or legacy crypt) hash of the secret; '' while no secret was set. */
  hash: string;
  enable: boolean;
  /** Epoch seconds; 0 means never. */
  expire: number;
  privsep: boolean;
  comment: string;
  /** Epoch seconds of the creation (0 when imported without one). */
  created: number;
  /** Token policy (issue 27): where its requests may come from, canonical; absent: anywhere. */
  allowedIps?: string;
  /** Until when (epoch seconds) `previousHash` still verifies; absent: no grace. */
  graceUntil?: number;
  /** The hash of the secret before the last rotation with a grace. */
  previousHash?: string;
}

/** What a reader needs to verify a token. */
export interface TokenState {
  hash: string;
  enable: boolean;
  expire: number;
  privsep: boolean;
}

/**
 * Which tokens a bulk revocation takes: every given criterion must hold (an
 * absent one holds for all). At least one criterion is required.
 */
export interface TokenFilter {
  /** Tokens of these users. */
  users?: readonly string[];
  /** Tokens created before this epoch second. */
  createdBefore?: number;
  /** Exactly these token ids (e.g. those a last-use ledger says were unused since a date). */
  ids?: readonly string[];
  /** A SQL LIKE pattern on the comment (`%` any run, `_` one character). */
  commentLike?: string;
}

/** Token metadata a change stores (see TokenDatabaseWriter.applyChange). */
export interface TokenMetadataChange {
  /** With `hash`, a new token's secret goes in the same transaction. */
  entries: ReadonlyArray<{ id: string; userid: string; entry: TokenEntry; hash?: string }>;
  removed: readonly string[];
  usersGone: readonly string[];
}

/** A secret replicated from multi-host mode's store: a token's current or previous hash. */
export interface ReplicatedSecret {
  id: string;
  previous: boolean;
  /** '' when the secret was removed. */
  hash: string;
}

/** The ids changed after a sequence, or 'too-old' when the log no longer reaches back that far. */
export type ChangesSince = { seq: number; ids: string[] } | 'too-old';

export interface OpenWriterOptions {
  /** File mode of the database and its journal (0600; 0640 when a group reads it). */
  mode?: number;
  /** Group that may read the database (the API workers'). */
  gid?: number;
  changesKept?: number;
  /** How long a commit waits for readers' locks before it fails, not stored (default 5 s). */
  busyTimeoutMs?: number;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    userid TEXT NOT NULL,
    hash TEXT NOT NULL,
    enable INTEGER NOT NULL,
    expire INTEGER NOT NULL,
    privsep INTEGER NOT NULL,
    comment TEXT NOT NULL,
    created INTEGER NOT NULL,
    allowed_ips TEXT NOT NULL DEFAULT '',
    grace_until INTEGER NOT NULL DEFAULT 0,
    previous_hash TEXT NOT NULL DEFAULT ''
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens (userid);
  CREATE INDEX IF NOT EXISTS tokens_by_created ON tokens (created);
  CREATE INDEX IF NOT EXISTS tokens_by_expire ON tokens (expire) WHERE expire > 0;
  CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, tokenid TEXT NOT NULL);
`;

interface RawRow {
  id: string;
  userid: string;
  hash: string;
  enable: number;
  expire: number;
  privsep: number;
  comment: string;
  created: number;
  allowed_ips: string;
  grace_until: number;
  previous_hash: string;
}

function toRow(raw: RawRow): TokenRow {
  return {
    id: raw.id,
    userid: raw.userid,
    hash: raw.hash,
    enable: raw.enable !== 0,
    expire: raw.expire,
    privsep: raw.privsep !== 0,
    comment: raw.comment,
    created: raw.created,
    ...(raw.allowed_ips ? { allowedIps: raw.allowed_ips } : {}),
    ...(raw.grace_until ? { graceUntil: raw.grace_until } : {}),
    ...(raw.previous_hash ? { previousHash: raw.previous_hash } : {}),
  };
}

function toRaw(row: TokenRow): RawRow {
  return {
    id: row.id,
    userid: row.userid,
    hash: row.hash,
    enable: row.enable ? 1 : 0,
    expire: row.expire,
    privsep: row.privsep ? 1 : 0,
    comment: row.comment,
    created: row.created,
    allowed_ips: row.allowedIps ?? '',
    grace_until: row.graceUntil ?? 0,
    previous_hash: row.previousHash ?? '',
  };
}

/** The parameters of putEntry: metadata, a secret when not '', the creation time of a new row. */
function putEntryParams(id: string, entry: TokenEntry, hash: string, created: number) {
  return {
    id,
    userid: parseTokenid(id).userid,
    hash,
    enable: entry.enable ? 1 : 0,
    expire: entry.expire,
    privsep: entry.privsep ? 1 : 0,
    comment: entry.comment,
    created,
    allowed_ips: entry.allowedIps ?? '',
    grace_until: entry.graceUntil ?? 0,
  };
}

/** Equal but for the creation time (multi-host mode's store does not carry it). */
function sameRaw(a: RawRow, b: RawRow): boolean {
  return (
    a.userid === b.userid &&
    a.hash === b.hash &&
    a.enable === b.enable &&
    a.expire === b.expire &&
    a.privsep === b.privsep &&
    a.comment === b.comment &&
    a.allowed_ips === b.allowed_ips &&
    a.grace_until === b.grace_until &&
    a.previous_hash === b.previous_hash
  );
}

function sqliteError(path: string, what: string, error: unknown): TokenDatabaseError {
  if (error instanceof TokenDatabaseError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new TokenDatabaseError(path, `${what}: ${detail}`, { cause: error });
}

function rowOf(record: Record<string, SqlValue> | undefined): TokenRow | undefined {
  return record === undefined ? undefined : toRow(record as unknown as RawRow);
}

/** The one column of a one-row, one-column answer (count, max...). */
function scalar(statement: Statement, ...params: unknown[]): SqlValue | undefined {
  const record = statement.get(...params);
  return record === undefined ? undefined : Object.values(record)[0];
}

function numberOr(value: SqlValue | undefined, fallback: number): number {
  return typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : fallback;
}

/**
 * Runs `fn` in one transaction: COMMIT when it returns, ROLLBACK when it or the
 * COMMIT throws. A COMMIT that fails (SQLITE_BUSY after busy_timeout: a reader
 * held its lock) leaves the transaction open; rolling it back there means a
 * caller that got the error never sees the change take effect later.
 */
function inTransaction<T>(db: Database, begin: 'BEGIN' | 'BEGIN IMMEDIATE', fn: () => T): T {
  db.exec(begin);
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (error) {
    try {
      db.exec('ROLLBACK');
    } catch {
      // Already rolled back by SQLite itself (some errors end the transaction).
    }
    throw error;
  }
}

/** The read side, for every process (read-only: writes nothing, not even a lock file). */
export class TokenDatabaseReader {
  readonly path: string;
  readonly #db: Database;
  readonly #get: Statement;
  readonly #ofUser: Statement;
  readonly #expiring: Statement;
  readonly #usersMatching: Statement;
  readonly #since: Statement;
  readonly #oldest: Statement;
  readonly #newest: Statement;

  constructor(path: string, options: { cacheKiB?: number } = {}) {
    this.path = path;
    const Sqlite = databaseClass(path);
    let opened: Database | undefined;
    try {
      opened = new Sqlite(path, { readOnly: true });
      // First: any statement may read the schema, and without it a writer's lock fails it at once.
      opened.exec('PRAGMA busy_timeout = 5000');
      // A reader needs the index pages of its lookups, not the whole file.
      opened.exec(`PRAGMA cache_size = -${Math.floor(options.cacheKiB ?? 2048)}`);
      const version = scalar(opened.prepare("SELECT value FROM meta WHERE key = 'schema'"));
      if (version !== String(SCHEMA_VERSION)) {
        throw new Error(`schema version ${String(version)}, expected ${SCHEMA_VERSION}`);
      }
      this.#get = opened.prepare('SELECT * FROM tokens WHERE id = ?');
      this.#ofUser = opened.prepare('SELECT * FROM tokens WHERE userid = ? ORDER BY id');
      this.#expiring = opened.prepare(
        'SELECT id, userid, expire FROM tokens WHERE expire > ? AND expire <= ? AND enable = 1',
      );
      // GLOB is case-sensitive, as the bulk revocation's comment glob is.
      this.#usersMatching = opened.prepare(
        `SELECT DISTINCT userid FROM tokens
         WHERE (:glob IS NULL OR comment GLOB :glob) AND (:before IS NULL OR created < :before)`,
      );
      this.#since = opened.prepare('SELECT seq, tokenid FROM changes WHERE seq > ? ORDER BY seq');
      this.#oldest = opened.prepare('SELECT min(seq) AS v FROM changes');
      this.#newest = opened.prepare('SELECT max(seq) AS v FROM changes');
      this.#db = opened;
    } catch (error) {
      opened?.close();
      throw sqliteError(path, 'cannot open the token database', error);
    }
  }

  /** The token's row as committed now (each call is its own read transaction: never a stale snapshot). */
  lookup(tokenid: string): TokenRow | undefined {
    return rowOf(this.#get.get(tokenid));
  }

  /** The tokens of one user as committed now (one indexed range read). */
  rowsOf(userid: string): TokenRow[] {
    return this.#ofUser.all(userid).map((record) => toRow(record as unknown as RawRow));
  }

  /**
   * The users having a token whose comment matches `glob` (`*` any run, `?`
   * one character, the rest literal) and made before `createdBefore`, each
   * criterion only when given: where a bulk revocation must look.
   */
  usersWithTokensMatching(filter: { glob?: string; createdBefore?: number }): string[] {
    const glob = filter.glob === undefined ? null : filter.glob.replace(/\[/g, '[[]');
    const before = filter.createdBefore ?? null;
    return this.#usersMatching.all({ glob, before }).map((record) => record.userid as string);
  }

  /** Enabled tokens whose own expiry is in (from, to], as [userid, token name, expiry]. */
  expiringBetween(from: number, to: number): Array<[string, string, number]> {
    return this.#expiring.all(from, to).map((record) => {
      const userid = record.userid as string;
      return [userid, (record.id as string).slice(userid.length + 1), numberOr(record.expire, 0)];
    });
  }

  /** The newest change sequence (0 for none yet): where a fresh cache starts. */
  newestSeq(): number {
    return numberOr(scalar(this.#newest), 0);
  }

  /**
   * Ids changed after `seq`, oldest first, and the newest sequence. 'too-old'
   * when sequences after `seq` were pruned: the caller drops its whole cache.
   */
  changesSince(seq: number): ChangesSince {
    // One read transaction for both: a prune between them must not hide a gap.
    return inTransaction(this.#db, 'BEGIN', (): ChangesSince => {
      const rows = this.#since.all(seq);
      // Pruned past `seq`: the oldest kept change is not the one right after it.
      const oldest = scalar(this.#oldest);
      if (oldest !== null && oldest !== undefined && numberOr(oldest, 0) > seq + 1)
        return 'too-old';
      const last = rows.at(-1);
      return {
        seq: last === undefined ? seq : numberOr(last.seq, seq),
        ids: rows.map((row) => row.tokenid as string),
      };
    });
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * The write side: the manager's and tokenctl's. Every method is one durable
 * transaction that also logs the ids it changed. The caller holds the
 * proper-lockfile lock (withFileLock on `path`) around it and bumps the page
 * slot after it returns.
 */
export class TokenDatabaseWriter {
  readonly path: string;
  readonly #db: Database;
  readonly #changesKept: number;
  readonly #statements: Record<
    | 'get'
    | 'ofUser'
    | 'put'
    | 'putEntry'
    | 'remove'
    | 'setHash'
    | 'setPrevious'
    | 'range'
    | 'setSecret'
    | 'log'
    | 'newest'
    | 'prune'
    | 'count',
    Statement
  >;

  constructor(path: string, options: OpenWriterOptions = {}) {
    this.path = path;
    this.#changesKept = options.changesKept ?? DEFAULT_CHANGES_KEPT;
    const Sqlite = databaseClass(path);
    let opened: Database | undefined;
    try {
      opened = new Sqlite(path);
      // Tighten before anything is read or written. SQLite gives a journal it creates the
      // database's mode, but PERSIST keeps the journal, with the mode it was made with: one
      // left group-writable would let the group plant a hot journal, one left without the
      // group's read bit makes every reader take it for hot and fail. It follows the database.
      const mode = options.mode ?? (options.gid === undefined ? 0o600 : 0o640);
      for (const file of [path, `${path}-journal`]) {
        try {
          chmodSync(file, mode);
          if (options.gid !== undefined) chownSync(file, -1, options.gid);
        } catch (error) {
          if (file === path || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      }
      // First, as for readers: another connection's commit must be waited for, not fail this one.
      opened.exec(`PRAGMA busy_timeout = ${Math.floor(options.busyTimeoutMs ?? 5000)}`);
      opened.exec(`PRAGMA journal_mode = ${JOURNAL_MODE}`);
      opened.exec(`PRAGMA synchronous = ${SYNCHRONOUS}`);
      // A transaction larger than the page cache spills into the file before its commit, and
      // holds the exclusive lock from then on: readers wait for the whole of it, not just the
      // commit. 8 MiB holds a bulk revocation's or a resync page's pages (used only as needed).
      opened.exec(`PRAGMA cache_size = -${WRITER_CACHE_KIB}`);
      opened.exec(SCHEMA);
      opened
        .prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)")
        .run(String(SCHEMA_VERSION));
      this.#statements = {
        get: opened.prepare('SELECT * FROM tokens WHERE id = ?'),
        put: opened.prepare(
          `INSERT INTO tokens (id, userid, hash, enable, expire, privsep, comment, created,
             allowed_ips, grace_until, previous_hash)
           VALUES (:id, :userid, :hash, :enable, :expire, :privsep, :comment, :created,
             :allowed_ips, :grace_until, :previous_hash)
           ON CONFLICT (id) DO UPDATE SET userid = excluded.userid, hash = excluded.hash,
             enable = excluded.enable, expire = excluded.expire, privsep = excluded.privsep,
             comment = excluded.comment, created = excluded.created,
             allowed_ips = excluded.allowed_ips, grace_until = excluded.grace_until,
             previous_hash = excluded.previous_hash`,
        ),
        // Metadata, and a new token's secret when given; an edit keeps hash and creation.
        putEntry: opened.prepare(
          `INSERT INTO tokens (id, userid, hash, enable, expire, privsep, comment, created,
             allowed_ips, grace_until)
           VALUES (:id, :userid, :hash, :enable, :expire, :privsep, :comment, :created,
             :allowed_ips, :grace_until)
           ON CONFLICT (id) DO UPDATE SET enable = excluded.enable, expire = excluded.expire,
             hash = CASE WHEN excluded.hash != '' THEN excluded.hash ELSE tokens.hash END,
             privsep = excluded.privsep, comment = excluded.comment,
             allowed_ips = excluded.allowed_ips, grace_until = excluded.grace_until`,
        ),
        ofUser: opened.prepare('SELECT * FROM tokens WHERE userid = ? ORDER BY id'),
        remove: opened.prepare('DELETE FROM tokens WHERE id = ?'),
        // The right-hand sides see the row as it was: the previous hash is the old current one.
        setSecret: opened.prepare(
          `UPDATE tokens SET previous_hash = CASE WHEN :keep THEN hash ELSE '' END, hash = :hash
           WHERE id = :id`,
        ),
        setHash: opened.prepare('UPDATE tokens SET hash = ? WHERE id = ?'),
        setPrevious: opened.prepare('UPDATE tokens SET previous_hash = ? WHERE id = ?'),
        range: opened.prepare(
          `SELECT * FROM tokens WHERE (:from IS NULL OR id >= :from)
             AND (:to IS NULL OR id < :to) ORDER BY id`,
        ),
        log: opened.prepare('INSERT INTO changes (tokenid) VALUES (?)'),
        newest: opened.prepare('SELECT max(seq) AS v FROM changes'),
        prune: opened.prepare('DELETE FROM changes WHERE seq <= ?'),
        count: opened.prepare('SELECT count(*) AS v FROM tokens'),
      };
      this.#db = opened;
    } catch (error) {
      opened?.close();
      throw sqliteError(path, 'cannot open the token database for writing', error);
    }
  }

  get(tokenid: string): TokenRow | undefined {
    return rowOf(this.#statements.get.get(tokenid));
  }

  count(): number {
    return numberOr(scalar(this.#statements.count), 0);
  }

  /** Adds or replaces tokens (one transaction); returns the sequence of the change. */
  put(rows: readonly TokenRow[]): number {
    for (const row of rows) parseTokenid(row.id);
    return this.#commit(() => {
      for (const row of rows) {
        this.#statements.put.run(toRaw(row));
        this.#statements.log.run(row.id);
      }
    });
  }

  /** Sets the hash of an existing token; false when there is no such token. */
  setHash(tokenid: string, hash: string): boolean {
    let found = false;
    this.#commit(() => {
      found = Number(this.#statements.setHash.run(hash, tokenid).changes) > 0;
      if (found) this.#statements.log.run(tokenid);
    });
    return found;
  }

  /** The tokens of one user (the writer's own connection). */
  rowsOf(userid: string): TokenRow[] {
    return this.#statements.ofUser.all(userid).map((record) => toRow(record as unknown as RawRow));
  }

  /**
   * Sets a token's secret hash ('' for none); the one it replaces stays as the
   * previous secret with `keepPrevious` (a rotation's grace), else any
   * previous one goes. False when there is no such token.
   */
  setSecret(tokenid: string, hash: string, keepPrevious: boolean): boolean {
    let found = false;
    this.#commit(() => {
      const params = { id: tokenid, hash, keep: keepPrevious ? 1 : 0 };
      found = Number(this.#statements.setSecret.run(params).changes) > 0;
      if (found) this.#statements.log.run(tokenid);
    });
    return found;
  }

  /**
   * One change of token metadata as one transaction: every token of
   * `usersGone` (users deleted or replaced) removed, then ids removed, then
   * entries stored (a new one created `now`, with its `hash` if given; an
   * existing one keeps its secret). Returns the ids removed.
   */
  applyChange(change: TokenMetadataChange, now: number): string[] {
    const removed: string[] = [];
    for (const { id } of change.entries) parseTokenid(id);
    this.#commit(() => {
      // All of them, even ids stored again below: a replaced token must not keep the old secret.
      for (const userid of change.usersGone) {
        for (const record of this.#statements.ofUser.all(userid)) {
          const id = record.id as string;
          this.#statements.remove.run(id);
          this.#statements.log.run(id);
          removed.push(id);
        }
      }
      for (const id of change.removed) {
        if (Number(this.#statements.remove.run(id).changes) > 0) {
          this.#statements.log.run(id);
          removed.push(id);
        }
      }
      for (const { id, entry, hash } of change.entries) {
        this.#statements.putEntry.run(putEntryParams(id, entry, hash ?? '', now));
        this.#statements.log.run(id);
      }
    });
    return removed;
  }

  /**
   * Changes replicated from multi-host mode's store (src/cluster/token-replica.ts),
   * as one transaction: token metadata first (null removes the row; a new row
   * has no secret yet, an existing one keeps its own), then secrets ('' for
   * none) on the rows there are. Returns the secrets that found no row.
   */
  replicate(
    tokens: ReadonlyArray<{ id: string; entry: TokenEntry | null }>,
    secrets: readonly ReplicatedSecret[],
  ): ReplicatedSecret[] {
    const unplaced: ReplicatedSecret[] = [];
    this.#commit(() => {
      for (const { id, entry } of tokens) {
        if (entry === null) {
          if (Number(this.#statements.remove.run(id).changes) > 0) this.#statements.log.run(id);
          continue;
        }
        this.#statements.putEntry.run(putEntryParams(id, entry, '', 0));
        this.#statements.log.run(id);
      }
      for (const secret of secrets) {
        const statement = secret.previous ? this.#statements.setPrevious : this.#statements.setHash;
        if (Number(statement.run(secret.hash, secret.id).changes) > 0) {
          this.#statements.log.run(secret.id);
        } else if (secret.hash !== '') {
          unplaced.push(secret);
        }
      }
    });
    return unplaced;
  }

  /**
   * Makes the rows whose ids are in [from, to) exactly `rows` (null bounds:
   * open), as one transaction; only rows that differ are written and logged.
   * Returns how many changed. A resynchronising replica calls it page by page.
   */
  resyncRange(from: string | null, to: string | null, rows: readonly TokenRow[]): number {
    let changed = 0;
    this.#commit(() => {
      const wanted = new Map(rows.map((row) => [row.id, toRaw(row)]));
      for (const record of this.#statements.range.iterate({ from, to })) {
        const stored = record as unknown as RawRow;
        const want = wanted.get(stored.id);
        if (want !== undefined && sameRaw(stored, want)) {
          wanted.delete(stored.id);
        } else if (want !== undefined) {
          // The store does not carry creation times: a row keeps the one it has.
          want.created = stored.created;
        } else {
          this.#statements.remove.run(stored.id);
          this.#statements.log.run(stored.id);
          changed++;
        }
      }
      for (const raw of wanted.values()) {
        this.#statements.put.run(raw);
        this.#statements.log.run(raw.id);
        changed++;
      }
    });
    return changed;
  }

  /** Removes tokens (one transaction); returns the ids that were there. */
  remove(tokenids: readonly string[]): string[] {
    const removed: string[] = [];
    this.#commit(() => {
      for (const id of tokenids) {
        if (Number(this.#statements.remove.run(id).changes) > 0) {
          this.#statements.log.run(id);
          removed.push(id);
        }
      }
    });
    return removed;
  }

  /** The ids a filter selects, without changing anything (a dry run). */
  select(filter: TokenFilter): string[] {
    const { where, params } = whereOf(filter);
    const rows = this.#db.prepare(`SELECT id FROM tokens WHERE ${where}`).all(params);
    return rows.map((row) => row.id as string);
  }

  /** Removes every token the filter selects, as one durable change; returns their ids. */
  revokeWhere(filter: TokenFilter): string[] {
    const { where, params } = whereOf(filter);
    const select = this.#db.prepare(`SELECT id FROM tokens WHERE ${where}`);
    let removed: string[] = [];
    this.#commit(() => {
      removed = select.all(params).map((row) => row.id as string);
      for (const id of removed) {
        this.#statements.remove.run(id);
        this.#statements.log.run(id);
      }
    });
    return removed;
  }

  /** Every row, in id order (export, tests). */
  *rows(): Generator<TokenRow> {
    for (const record of this.#db.prepare('SELECT * FROM tokens ORDER BY id').iterate()) {
      yield toRow(record as unknown as RawRow);
    }
  }

  newestSeq(): number {
    return numberOr(scalar(this.#statements.newest), 0);
  }

  /** SQLite's own check of the file (b-trees, indexes): true when it finds nothing. */
  integrityOk(): boolean {
    return scalar(this.#db.prepare('PRAGMA integrity_check')) === 'ok';
  }

  close(): void {
    this.#db.close();
  }

  /** BEGIN IMMEDIATE -> change -> prune the log -> COMMIT (fsynced); the newest sequence. */
  #commit(change: () => void): number {
    try {
      return inTransaction(this.#db, 'BEGIN IMMEDIATE', () => {
        change();
        const newest = this.newestSeq();
        if (newest > this.#changesKept) this.#statements.prune.run(newest - this.#changesKept);
        return newest;
      });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_SQLITE_ERROR') {
        throw sqliteError(this.path, 'the change was not stored', error);
      }
      throw error;
    }
  }
}

/** SQL for a filter; refuses an empty one (a bulk revoke must say what it takes). */
function whereOf(filter: TokenFilter): { where: string; params: Record<string, unknown> } {
  const clauses: string[] = [];
  const params: Record<string, unknown> = {};
  if (filter.users !== undefined) {
    clauses.push('userid IN (SELECT value FROM json_each(:users))');
    params.users = JSON.stringify(filter.users);
  }
  if (filter.ids !== undefined) {
    clauses.push('id IN (SELECT value FROM json_each(:ids))');
    params.ids = JSON.stringify(filter.ids);
  }
  if (filter.createdBefore !== undefined) {
    clauses.push('created < :createdBefore');
    params.createdBefore = filter.createdBefore;
  }
  if (filter.commentLike !== undefined) {
    clauses.push("comment LIKE :commentLike ESCAPE '\\'");
    params.commentLike = filter.commentLike;
  }
  if (clauses.length === 0) {
    throw new TokenDatabaseError('', 'a bulk revocation needs at least one criterion');
  }
  return { where: clauses.join(' AND '), params };
}
