/**
 * Storage candidates for a million tokens (issue 25): the same workload on
 * each candidate store, so that the choice in docs/ARCHITECTURE.md rests on
 * measurements.
 *
 * The workload: N tokens (default 1,000,000) of N/100 users with 100 tokens
 * each, every token a row with its user, its argon2id hash string and the
 * metadata user.cfg keeps (enable, expire, privsep, comment). The hashes are
 * real argon2id strings with the project's default parameters, but only 64
 * distinct ones are computed and reused across the tokens: what is measured is
 * storage, and a hash string costs the same bytes whatever secret it hides.
 *
 * For each candidate:
 * - load: the time to write the N rows once (an import; not a target);
 * - revoke: one token deleted and its change appended to the change log, as one
 *   durable (fsynced) commit, p50/max over `--revokes` commits;
 * - bulk: 10,000 tokens (100 users) deleted and logged in one durable commit;
 * - changes: a reader fetching the 10,000 ids changed since its last sequence;
 * - open: a fresh reader process opening the store and answering one lookup;
 * - RSS: that reader's resident memory after 100,000 random lookups (and the
 *   same process before it opened the store, for the baseline of Node itself);
 * - lookup: µs per random point lookup in that reader;
 * - crash: `--crash-rounds` rounds of a writer child revoking as fast as it can
 *   and printing each id once its commit returned, SIGKILLed at a random
 *   instant; the store is then reopened by a writer (which recovers it) and
 *   every acknowledged id must be gone, and the store must pass its integrity
 *   check.
 *
 * Candidates:
 * - store: the chosen one, src/store/token-database.ts itself (node:sqlite, built
 *   into Node 22.13+/24; rollback journal kept (PERSIST), synchronous=FULL,
 *   readers read-only).
 * - sqlite-delete / sqlite-persist: SQLite through better-sqlite3 with a rollback
 *   journal, readers opened read-only (they take only fcntl read locks, write
 *   nothing). DELETE with synchronous=EXTRA (the journal's unlink, the commit
 *   point, is fsynced with its directory) or PERSIST with synchronous=FULL (the
 *   journal is kept; zeroing its header, fsynced, is the commit point).
 * - sqlite-wal: the same in WAL mode, for comparison: its readers write the
 *   -shm wal-index, which the API's group must not be able to (I6).
 * - lmdb: LMDB through lmdb-js, synchronous transactions (fsync on commit),
 *   readers opened readOnly (LMDB still writes their slot in lock.mdb).
 * - files (baseline, with --files): today's token.shadow rewritten whole per change
 *   (serialise, write a temp, fsync, rename, fsync the directory).
 *
 *   npm run build:ts && node dist/bench/storage-candidates.js [--n 1000000] [--revokes 200] [--crash-rounds 10] [--files]
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  openSync,
  readdirSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import argon2 from 'argon2';
import { DEFAULT_ARGON2 } from '../src/hashing/params.js';
import {
  TokenDatabaseReader,
  TokenDatabaseWriter,
  type TokenRow,
  tokenDatabaseAvailable,
} from '../src/store/token-database.js';
import { removeTempDir, tempDir, track } from './lib/children.js';
import { fmt, machineLine, percentile } from './lib/stats.js';
import { printTable } from './lib/table.js';

const require = createRequire(import.meta.url);
const TOKENS_PER_USER = 100;
const BULK_USERS = 100; // 100 users x 100 tokens = 10,000 tokens in one bulk revoke
const LOOKUPS = 100_000;

/** A token as the candidates store it: the store's row, flags as 0/1, no creation time. */
type Row = Omit<TokenRow, 'enable' | 'privsep' | 'created'> & { enable: number; privsep: number };

interface Found {
  hash: string;
  enable: number;
  expire: number;
}

interface Writer {
  /** One token removed and logged, durable when this returns. */
  revoke(id: string): void;
  /** Every token of these users removed and logged in one durable commit; the count. */
  revokeUsers(users: string[]): number;
  lastSeq(): number;
  /** True when the store's own check finds nothing wrong. */
  integrity(): boolean;
  close(): void;
}

interface Reader {
  lookup(id: string): Found | undefined;
  /** The ids changed after `seq`, and the newest sequence. */
  changesSince(seq: number): { ids: string[]; seq: number };
  close(): void;
}

interface Candidate {
  name: string;
  /** Creates the store in `dir` and loads the rows in one go. */
  load(dir: string, rows: Iterable<Row>): void;
  writer(dir: string): Writer;
  reader(dir: string): Reader;
}

// --- the tokens ---------------------------------------------------------------------

function userOf(index: number): string {
  return `u${index}@pve`;
}

function tokenId(user: number, token: number): string {
  return `${userOf(user)}!t${token}`;
}

function* rows(n: number, hashes: string[]): Generator<Row> {
  const users = Math.ceil(n / TOKENS_PER_USER);
  let made = 0;
  for (let user = 0; user < users; user++) {
    for (let token = 0; token < TOKENS_PER_USER && made < n; token++, made++) {
      yield {
        id: tokenId(user, token),
        userid: userOf(user),
        hash: hashes[made % hashes.length] as string,
        enable: 1,
        expire: 0,
        privsep: 1,
        comment: `customer ${user} token ${token}`,
      };
    }
  }
}

async function someHashes(count: number): Promise<string[]> {
  const hashes: string[] = [];
  for (let i = 0; i < count; i++) {
    hashes.push(
      await argon2.hash(`secret-${i}-${Math.random()}`, {
        type: argon2.argon2id,
        ...DEFAULT_ARGON2,
      }),
    );
  }
  return hashes;
}

// --- SQLite (better-sqlite3), rollback journal, read-only readers ------------------------

// better-sqlite3 is not a dependency (it compiles from source here, per Node ABI): these
// candidates run only when it was installed by hand (`npm i --no-save better-sqlite3@12`).
interface SqliteDatabase {
  pragma(sql: string, options?: { simple: boolean }): unknown;
  exec(sql: string): void;
  prepare(sql: string): {
    run(...params: unknown[]): unknown;
    get(...params: unknown[]): unknown;
    all(...params: unknown[]): unknown[];
    pluck(): { get(...params: unknown[]): unknown; all(...params: unknown[]): unknown[] };
    raw(): { all(...params: unknown[]): unknown[] };
  };
  transaction<A extends unknown[], R>(
    fn: (...args: A) => R,
  ): ((...args: A) => R) & { immediate(...args: A): R };
  close(): void;
}
type SqliteConstructor = new (
  file: string,
  options?: { readonly?: boolean; fileMustExist?: boolean },
) => SqliteDatabase;
let betterSqlite: SqliteConstructor | undefined;
function Sqlite(
  file: string,
  options?: { readonly?: boolean; fileMustExist?: boolean },
): SqliteDatabase {
  betterSqlite ??= require('better-sqlite3') as SqliteConstructor;
  return new betterSqlite(file, options);
}

const SQLITE_SCHEMA = `
  CREATE TABLE tokens (
    id TEXT PRIMARY KEY, userid TEXT NOT NULL, hash TEXT NOT NULL,
    enable INTEGER NOT NULL, expire INTEGER NOT NULL, privsep INTEGER NOT NULL, comment TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX tokens_by_user ON tokens(userid);
  CREATE TABLE changes (seq INTEGER PRIMARY KEY, tokenid TEXT NOT NULL);
`;

function sqliteFile(dir: string): string {
  return path.join(dir, 'access.db');
}

/** How the writer commits: the journal mode and the synchronous level that make it durable. */
interface SqliteMode {
  journal: 'DELETE' | 'PERSIST' | 'WAL';
  synchronous: 'EXTRA' | 'FULL';
}

function sqliteWriterDb(dir: string, mode: SqliteMode): SqliteDatabase {
  const db = Sqlite(sqliteFile(dir));
  db.pragma(`journal_mode = ${mode.journal}`);
  db.pragma(`synchronous = ${mode.synchronous}`);
  db.pragma('busy_timeout = 5000');
  return db;
}

const sqlite = (name: string, mode: SqliteMode): Candidate => ({
  name,
  load(dir, source) {
    const db = sqliteWriterDb(dir, mode);
    db.exec(SQLITE_SCHEMA);
    const insert = db.prepare(
      'INSERT INTO tokens (id, userid, hash, enable, expire, privsep, comment) VALUES (@id, @userid, @hash, @enable, @expire, @privsep, @comment)',
    );
    db.transaction(() => {
      for (const row of source) insert.run(row);
    })();
    db.close();
  },
  writer(dir) {
    const db = sqliteWriterDb(dir, mode);
    const remove = db.prepare('DELETE FROM tokens WHERE id = ?');
    const log = db.prepare('INSERT INTO changes (tokenid) VALUES (?)');
    const ofUser = db.prepare('SELECT id FROM tokens WHERE userid = ?').pluck();
    const removeUser = db.prepare('DELETE FROM tokens WHERE userid = ?');
    const last = db.prepare('SELECT coalesce(max(seq), 0) FROM changes').pluck();
    const revoke = db.transaction((id: string) => {
      remove.run(id);
      log.run(id);
    });
    const revokeUsers = db.transaction((users: string[]) => {
      let count = 0;
      for (const user of users) {
        for (const id of ofUser.all(user) as string[]) {
          log.run(id);
          count++;
        }
        removeUser.run(user);
      }
      return count;
    });
    return {
      revoke: (id) => revoke.immediate(id),
      revokeUsers: (users) => revokeUsers.immediate(users),
      lastSeq: () => last.get() as number,
      integrity: () => db.pragma('integrity_check', { simple: true }) === 'ok',
      close: () => db.close(),
    };
  },
  reader(dir) {
    const db = Sqlite(sqliteFile(dir), { readonly: true, fileMustExist: true });
    db.pragma('cache_size = -2000'); // 2 MiB of page cache per reader
    const get = db.prepare('SELECT hash, enable, expire FROM tokens WHERE id = ?');
    const since = db.prepare('SELECT seq, tokenid FROM changes WHERE seq > ? ORDER BY seq').raw();
    return {
      lookup: (id) => get.get(id) as Found | undefined,
      changesSince(seq) {
        const found = since.all(seq) as [number, string][];
        return { ids: found.map((row) => row[1]), seq: found.at(-1)?.[0] ?? seq };
      },
      close: () => db.close(),
    };
  },
});

// --- LMDB (lmdb-js), synchronous commits -------------------------------------------------

function lmdbEnv(dir: string, readOnly: boolean) {
  const lmdb = require('lmdb') as typeof import('lmdb');
  const env = lmdb.open({
    path: path.join(dir, 'access.lmdb'),
    compression: false,
    overlappingSync: false,
    noSync: false,
    readOnly,
    mapSize: 4 * 1024 ** 3,
  });
  return {
    env,
    tokens: env.openDB<Row, string>({ name: 'tokens' }),
    byUser: env.openDB<string, string>({ name: 'by-user', dupSort: true }),
    changes: env.openDB<string, number>({ name: 'changes', keyEncoding: 'uint32' }),
  };
}

const lmdbCandidate: Candidate = {
  name: 'lmdb',
  load(dir, source) {
    const { env, tokens, byUser } = lmdbEnv(dir, false);
    env.transactionSync(() => {
      for (const row of source) {
        tokens.put(row.id, row);
        byUser.put(row.userid, row.id);
      }
    });
    env.close();
  },
  writer(dir) {
    const { env, tokens, byUser, changes } = lmdbEnv(dir, false);
    let seq = 0;
    for (const key of changes.getKeys({ reverse: true, limit: 1 })) seq = key;
    const logAndRemove = (id: string, userid: string) => {
      tokens.remove(id);
      byUser.remove(userid, id);
      changes.put(++seq, id);
    };
    return {
      revoke(id) {
        const row = tokens.get(id);
        env.transactionSync(() => {
          if (row) logAndRemove(id, row.userid);
        });
      },
      revokeUsers(users) {
        let count = 0;
        env.transactionSync(() => {
          for (const user of users) {
            for (const id of [...byUser.getValues(user)]) {
              logAndRemove(id, user);
              count++;
            }
          }
        });
        return count;
      },
      lastSeq: () => seq,
      // LMDB has no integrity check of its own: every row readable and the index consistent with it.
      integrity() {
        let rowsSeen = 0;
        for (const { key, value } of tokens.getRange()) {
          if (value.id !== key) return false;
          rowsSeen++;
        }
        let indexed = 0;
        for (const _ of byUser.getKeys({ snapshot: false })) indexed += byUser.getValuesCount(_);
        return indexed === rowsSeen;
      },
      close: () => env.close(),
    };
  },
  reader(dir) {
    const { env, tokens, changes } = lmdbEnv(dir, true);
    return {
      lookup(id) {
        const row = tokens.get(id);
        return row ? { hash: row.hash, enable: row.enable, expire: row.expire } : undefined;
      },
      changesSince(seq) {
        // lmdb-js keeps a read transaction until the event loop turns: renew it, or a reader
        // that just saw the page's bump could read the snapshot from before the change.
        env.resetReadTxn();
        const ids: string[] = [];
        let newest = seq;
        for (const { key, value } of changes.getRange({ start: seq + 1 })) {
          ids.push(value);
          newest = key;
        }
        return { ids, seq: newest };
      },
      close: () => env.close(),
    };
  },
};

// --- Today's files (baseline): token.shadow rewritten whole --------------------------------

function filesCandidate(): Candidate {
  let entries = new Map<string, string>();
  const write = (dir: string) => {
    const file = path.join(dir, 'token.shadow');
    const object: Record<string, string> = Object.create(null);
    for (const key of [...entries.keys()].sort()) object[key] = entries.get(key) as string;
    writeFileSync(`${file}.tmp`, `${JSON.stringify(object, null, 1)}\n`);
    const fd = openSync(`${file}.tmp`, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(`${file}.tmp`, file);
    const dfd = openSync(dir, 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  };
  return {
    name: 'files',
    load(dir, source) {
      entries = new Map();
      for (const row of source) entries.set(row.id, row.hash);
      write(dir);
    },
    writer(dir) {
      return {
        revoke(id) {
          entries.delete(id);
          write(dir);
        },
        revokeUsers(users) {
          const prefixes = users.map((user) => `${user}!`);
          let count = 0;
          for (const id of [...entries.keys()]) {
            if (prefixes.some((prefix) => id.startsWith(prefix))) {
              entries.delete(id);
              count++;
            }
          }
          write(dir);
          return count;
        },
        lastSeq: () => 0,
        integrity: () => true,
        close() {},
      };
    },
    reader() {
      throw new Error('files: measured by bench/scale.ts and the issue, not here');
    },
  };
}

/** The chosen store itself (src/store/token-database.ts): node:sqlite, PERSIST journal, FULL sync. */
const store: Candidate = {
  name: 'store',
  load(dir, source) {
    const writer = new TokenDatabaseWriter(path.join(dir, 'access.db'));
    let batch: TokenRow[] = [];
    const flush = () => {
      // Loaded in large transactions, with the change log emptied after: an import, not a change stream.
      writer.put(batch);
      batch = [];
    };
    for (const row of source) {
      batch.push({ ...row, enable: row.enable === 1, privsep: row.privsep === 1, created: 0 });
      if (batch.length === 100_000) flush();
    }
    flush();
    writer.close();
  },
  writer(dir) {
    const writer = new TokenDatabaseWriter(path.join(dir, 'access.db'));
    return {
      revoke: (id) => void writer.remove([id]),
      revokeUsers: (users) => writer.revokeWhere({ users }).length,
      lastSeq: () => writer.newestSeq(),
      integrity: () => writer.integrityOk(),
      close: () => writer.close(),
    };
  },
  reader(dir) {
    const reader = new TokenDatabaseReader(path.join(dir, 'access.db'));
    return {
      lookup(id) {
        const row = reader.lookup(id);
        return row ? { hash: row.hash, enable: row.enable ? 1 : 0, expire: row.expire } : undefined;
      },
      changesSince(seq) {
        const changed = reader.changesSince(seq);
        if (changed === 'too-old')
          throw new Error('store: the change log was pruned past the reader');
        return changed;
      },
      close: () => reader.close(),
    };
  },
};

const CANDIDATES: Record<string, Candidate> = {
  store,
  // The journal's unlink is the commit point; EXTRA fsyncs the directory after it.
  'sqlite-delete': sqlite('sqlite-delete', { journal: 'DELETE', synchronous: 'EXTRA' }),
  // The journal stays; zeroing its header (fsynced) is the commit point: no create/unlink per commit.
  'sqlite-persist': sqlite('sqlite-persist', { journal: 'PERSIST', synchronous: 'FULL' }),
  // For comparison only: WAL readers must write the -shm, which I6 rules out (docs/ARCHITECTURE.md).
  'sqlite-wal': sqlite('sqlite-wal', { journal: 'WAL', synchronous: 'FULL' }),
  lmdb: lmdbCandidate,
};

// --- children -------------------------------------------------------------------------

/** A reader process: open, one lookup, then LOOKUPS random lookups; prints one JSON line. */
function readerChild(name: string, dir: string, n: number): void {
  const candidate = CANDIDATES[name] as Candidate;
  const baseRss = process.memoryUsage().rss;
  const started = performance.now();
  const reader = candidate.reader(dir);
  if (!reader.lookup(tokenId(Math.floor((n - 1) / TOKENS_PER_USER), 0))) {
    // The last user's first token may have been revoked by the run; any answer opens the store.
  }
  const openMs = performance.now() - started;
  const users = Math.ceil(n / TOKENS_PER_USER);
  const ids = Array.from({ length: LOOKUPS }, () =>
    tokenId(randomInt(users), randomInt(TOKENS_PER_USER)),
  );
  let found = 0;
  const t0 = performance.now();
  for (const id of ids) if (reader.lookup(id)) found++;
  const lookupUs = ((performance.now() - t0) * 1000) / LOOKUPS;
  const rss = process.memoryUsage().rss;
  reader.close();
  process.stdout.write(`${JSON.stringify({ openMs, lookupUs, rss, baseRss, found })}\n`);
}

/** A writer that revokes ids in order from `from` and prints each once its commit returned. */
function crashWriterChild(name: string, dir: string, from: number): void {
  const writer = (CANDIDATES[name] as Candidate).writer(dir);
  process.stdout.write('ready\n');
  for (let user = from; ; user++) {
    for (let token = 0; token < TOKENS_PER_USER; token++) {
      const id = tokenId(user, token);
      writer.revoke(id);
      // Synchronous write to the pipe: the parent has the id before the next commit starts.
      writeFileSync(1, `${id}\n`);
    }
  }
}

function child(args: string[], onLine: (line: string) => void): Promise<number | null> {
  const proc = track(
    spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', onLine);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

async function measureReader(name: string, dir: string, n: number) {
  let result: { openMs: number; lookupUs: number; rss: number; baseRss: number } | undefined;
  await child(['--reader', name, dir, String(n)], (line) => {
    result = JSON.parse(line);
  });
  if (!result) throw new Error(`${name}: the reader child printed nothing`);
  return result;
}

/** One crash round: a writer child killed at a random instant; every acknowledged id must be gone. */
async function crashRound(
  candidate: Candidate,
  dir: string,
  from: number,
): Promise<{ acked: number; ok: boolean }> {
  const acked: string[] = [];
  let proc: ReturnType<typeof spawn> | undefined;
  const done = new Promise<void>((resolve) => {
    proc = track(
      spawn(
        process.execPath,
        [fileURLToPath(import.meta.url), '--crash-writer', candidate.name, dir, String(from)],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      ),
    );
    let killAt = 0;
    createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (line === 'ready') {
        killAt = 20 + randomInt(200);
        return;
      }
      acked.push(line);
      if (acked.length === killAt) proc?.kill('SIGKILL');
    });
    proc.once('exit', () => resolve());
  });
  await done;
  const writer = candidate.writer(dir); // opening as the writer recovers a torn commit
  const reader = candidate.reader(dir);
  const missing = acked.filter((id) => reader.lookup(id) !== undefined);
  const ok = missing.length === 0 && writer.integrity();
  reader.close();
  writer.close();
  return { acked: acked.length, ok };
}

/** Whether the package and its native binding load on this Node (a binding built for another ABI does not). */
function canLoad(name: string): boolean {
  try {
    if (name === 'better-sqlite3') Sqlite(':memory:').close();
    else require(name);
    return true;
  } catch {
    return false;
  }
}

// --- main -------------------------------------------------------------------------------

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

const MiB = 1024 * 1024;

async function main(): Promise<void> {
  const n = option('--n', 1_000_000);
  if (n < (BULK_USERS + 100) * TOKENS_PER_USER)
    throw new Error(`--n must be at least ${(BULK_USERS + 100) * TOKENS_PER_USER}`);
  const revokes = option('--revokes', 200);
  const crashRounds = option('--crash-rounds', 10);
  const only = process.argv.includes('--only')
    ? [process.argv[process.argv.indexOf('--only') + 1] as string]
    : undefined;
  const hashes = await someHashes(64);
  console.log(
    `${machineLine()}\n${n} tokens, ${hashes.length} distinct argon2id hash strings (${hashes[0]?.length} chars)\n`,
  );
  const table: (string | number)[][] = [];
  const names =
    only ??
    Object.keys(CANDIDATES).filter((name) => {
      const usable =
        name === 'store'
          ? tokenDatabaseAvailable()
          : name.startsWith('sqlite')
            ? canLoad('better-sqlite3')
            : canLoad('lmdb');
      if (!usable) console.log(`${name}: skipped, not loadable on Node ${process.version}`);
      return usable;
    });
  const candidates = names.map((name) => CANDIDATES[name] as Candidate);
  if (process.argv.includes('--files')) candidates.push(filesCandidate());
  for (const candidate of candidates) {
    const dir = tempDir(`storage-${candidate.name}-`);
    try {
      let t = performance.now();
      candidate.load(dir, rows(n, hashes));
      const loadS = (performance.now() - t) / 1000;
      const size = dirBytes(dir);
      t = performance.now();
      const writer = candidate.writer(dir);
      const writerOpenMs = performance.now() - t;
      const users = Math.ceil(n / TOKENS_PER_USER);
      const times: number[] = [];
      const fileRevokes = candidate.name === 'files' ? Math.min(revokes, 5) : revokes;
      for (let i = 0; i < fileRevokes; i++) {
        // Spread over the whole key space: the B-tree pages touched differ every time.
        // Users 0..49 are the crash rounds', the last BULK_USERS the bulk revocation's.
        const id = tokenId(50 + randomInt(users - BULK_USERS - 50), randomInt(TOKENS_PER_USER));
        t = performance.now();
        writer.revoke(id);
        times.push(performance.now() - t);
      }
      const before = writer.lastSeq();
      const bulkUsers = Array.from({ length: BULK_USERS }, (_, i) => userOf(users - 1 - i));
      t = performance.now();
      const bulkCount = writer.revokeUsers(bulkUsers);
      const bulkMs = performance.now() - t;
      let changesMs: number | string = '-';
      let reading: Awaited<ReturnType<typeof measureReader>> | undefined;
      let crash = '-';
      if (candidate.name !== 'files') {
        const reader = candidate.reader(dir);
        t = performance.now();
        const changed = reader.changesSince(before);
        changesMs = performance.now() - t;
        if (changed.ids.length !== bulkCount)
          throw new Error(`${candidate.name}: ${changed.ids.length} changes, ${bulkCount} revoked`);
        if (bulkCount > 0 && reader.lookup(tokenId(users - 1, 0)) !== undefined)
          throw new Error(`${candidate.name}: a bulk-revoked token is still there`);
        reader.close();
        writer.close();
        reading = await measureReader(candidate.name, dir, n);
        let passed = 0;
        let ackedTotal = 0;
        for (let round = 0; round < crashRounds; round++) {
          // Each round revokes users of its own, from the middle of the key space.
          const result = await crashRound(candidate, dir, 10 + round * 3);
          ackedTotal += result.acked;
          if (result.ok) passed++;
        }
        crash = `${passed}/${crashRounds} (${ackedTotal} acked)`;
      } else {
        writer.close();
      }
      table.push([
        candidate.name,
        fmt(loadS, 3),
        fmt(size / MiB, 3),
        fmt(writerOpenMs, 3),
        fmt(percentile(times, 50), 3),
        fmt(Math.max(...times), 3),
        `${bulkCount} in ${fmt(bulkMs, 3)}`,
        typeof changesMs === 'number' ? fmt(changesMs, 3) : changesMs,
        reading ? fmt(reading.openMs, 3) : '-',
        reading ? `${fmt(reading.rss / MiB, 3)} (${fmt(reading.baseRss / MiB, 3)})` : '-',
        reading ? fmt(reading.lookupUs, 3) : '-',
        crash,
      ]);
    } finally {
      removeTempDir(dir);
    }
  }
  printTable(
    `Storage candidates at ${n} tokens`,
    [
      'store',
      'load s',
      'size MiB',
      'writer open ms',
      'revoke p50 ms',
      'revoke max ms',
      'bulk revoke (tokens in ms)',
      'reader: 10k changes ms',
      'reader open+1st lookup ms',
      'reader RSS MiB (node alone)',
      'lookup µs',
      'SIGKILL rounds ok',
    ],
    table,
  );
}

const args = process.argv.slice(2);
if (args[0] === '--reader') readerChild(args[1] as string, args[2] as string, Number(args[3]));
else if (args[0] === '--crash-writer')
  crashWriterChild(args[1] as string, args[2] as string, Number(args[3]));
else await main();
