/**
 * The token database at 1,000 / 10,000 / 100,000 / 1,000,000 tokens (issue 25),
 * through the store's own pieces, without HTTP: TokenStore writes under the lock and
 * bumps the page, DatabaseSecrets (the daemons' SecretVerifier on access.db) verifies
 * in another process.
 *
 * Per size:
 * - revoke: one token removed (lock, durable commit, bump), p50/max over `--revokes`;
 * - create: one token row put (the hash made beforehand: a create costs one hash
 *   more, bench/argon2.ts), p50;
 * - bulk: min(10,000, N/10) tokens of whole users revoked in one call;
 * - a verifier process: open and its first (slow) verify, RSS after caching K = 1,000
 *   tokens (each one slow verify), the cached verify in ns, and after the bulk
 *   revoke returned (it covers those K tokens): how many of them it still
 *   accepted (must be 0) and what its first verify after the bump cost (the
 *   catch-up on the change log);
 * - start: the writer's open (what the manager pays at start).
 *
 * Rows: N/100 users x 100 tokens. The K verified tokens have their own secrets and
 * FAST hashes (so that filling the cache is quick); every other row reuses one of 64
 * real argon2id strings of the default parameters (storage cost is the same).
 *
 *   npm run build:ts && node dist/bench/store-scale.js [--sizes 1000,10000,100000,1000000] [--revokes 100]
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import argon2 from 'argon2';
import { withFileLock } from '../src/files/lock.js';
import { GenerationPage } from '../src/generations/page.js';
import { DEFAULT_ARGON2 } from '../src/hashing/params.js';
import { HashPool } from '../src/hashing/pool.js';
import { serializeShadow } from '../src/shadow/file.js';
import { TokenShadow } from '../src/shadow/token-shadow.js';
import { DatabaseSecrets } from '../src/store/database-secrets.js';
import {
  TokenDatabaseReader,
  type TokenRow,
  tokenDatabaseAvailable,
} from '../src/store/token-database.js';
import { TokenStore } from '../src/store/token-store.js';
import { removeTempDir, tempDir, track } from './lib/children.js';
import { fmt, machineLine, percentile } from './lib/stats.js';
import { printTable } from './lib/table.js';

const PER_USER = 100;
const VERIFIED = 1000;
const FAST = { memoryCost: 512, timeCost: 1, parallelism: 1 };
const MiB = 1024 * 1024;

const idOf = (user: number, token: number) => `u${user}@pve!t${token}`;
const secretOf = (id: string) => `secret-of-${id}`;

/** Tokens the bulk revocation takes: min(10,000, N/10), whole users from the end. */
function bulkUserCount(n: number): number {
  return Math.max(1, Math.min(10_000, n / 10) / PER_USER);
}

/** The K verified tokens: all among the bulk revocation's users, spread over them. */
function verifiedIds(n: number): string[] {
  const users = n / PER_USER;
  const bulkUsers = bulkUserCount(n);
  const k = Math.min(VERIFIED, bulkUsers * PER_USER);
  return Array.from({ length: k }, (_, i) =>
    idOf(users - 1 - (i % bulkUsers), Math.floor(i / bulkUsers)),
  );
}

// --- the verifier process ---------------------------------------------------------

async function verifierChild(
  file: string,
  pagePath: string,
  n: number,
  shadowPath: string,
): Promise<void> {
  const base = process.memoryUsage().rss;
  const pool = new HashPool({ threads: 1, maxQueue: 64, argon2: FAST });
  let t = performance.now();
  const verifier = new DatabaseSecrets({
    database: new TokenDatabaseReader(file),
    page: GenerationPage.open(pagePath),
    pool,
  });
  const ids = verifiedIds(n);
  if (!(await verifier.verifySecret(ids[0] as string, secretOf(ids[0] as string))))
    throw new Error('first verify failed');
  const openMs = performance.now() - t;
  for (const id of ids)
    if (!(await verifier.verifySecret(id, secretOf(id)))) throw new Error(`${id} refused`);
  // The cached verify, cycling through the K tokens.
  const secrets = ids.map(secretOf);
  const rounds = 200_000;
  t = performance.now();
  let hits = 0;
  for (let i = 0; i < rounds; i++)
    if (verifier.verifyCached(ids[i % ids.length] as string, secrets[i % ids.length] as string))
      hits++;
  const cachedNs = ((performance.now() - t) * 1e6) / rounds;
  if (hits !== rounds) throw new Error(`only ${hits} of ${rounds} cached`);
  const rss = process.memoryUsage().rss;
  // Side by side: today's TokenShadow on a token.shadow of the same K tokens, same page.
  const shadow = new TokenShadow({ path: shadowPath, page: GenerationPage.open(pagePath), pool });
  for (const id of ids)
    if (!(await shadow.verifySecret(id, secretOf(id))))
      throw new Error(`${id} refused by TokenShadow`);
  t = performance.now();
  let shadowHits = 0;
  for (let i = 0; i < rounds; i++)
    if (shadow.verifyCached(ids[i % ids.length] as string, secrets[i % ids.length] as string))
      shadowHits++;
  const shadowNs = ((performance.now() - t) * 1e6) / rounds;
  if (shadowHits !== rounds) throw new Error(`TokenShadow: only ${shadowHits} of ${rounds} cached`);
  process.stdout.write(`${JSON.stringify({ openMs, cachedNs, shadowNs, rss, base })}\n`);
  // Then: after the parent's bulk revoke returned, how many are still accepted?
  for await (const _ of createInterface({ input: process.stdin })) {
    t = performance.now();
    const first = await verifier.verifySecret(ids[0] as string, secretOf(ids[0] as string));
    const firstMs = performance.now() - t;
    let accepted = first ? 1 : 0;
    for (const id of ids.slice(1)) if (await verifier.verifySecret(id, secretOf(id))) accepted++;
    process.stdout.write(`${JSON.stringify({ accepted, firstMs, stats: verifier.stats() })}\n`);
    break;
  }
  await pool.close();
}

// --- one size -----------------------------------------------------------------------

interface SizeResult {
  n: number;
  loadS: number;
  startMs: number;
  revokeP50: number;
  revokeMax: number;
  lockP50: number;
  shadowNs: number;
  createP50: number;
  bulkTokens: number;
  bulkMs: number;
  openMs: number;
  rssMiB: number;
  baseMiB: number;
  cachedNs: number;
  accepted: number;
  firstAfterBulkMs: number;
}

async function oneSize(n: number, hashes: string[], revokes: number): Promise<SizeResult> {
  const dir = tempDir('store-scale-');
  try {
    const file = path.join(dir, 'access.db');
    const pagePath = path.join(dir, 'config-versions');
    const page = GenerationPage.open(pagePath);
    const users = n / PER_USER;
    const verified = new Set(verifiedIds(n));
    const fastHashes = new Map<string, string>();
    for (const id of verified)
      fastHashes.set(id, await argon2.hash(secretOf(id), { type: argon2.argon2id, ...FAST }));
    let t = performance.now();
    let store = new TokenStore(file, { page });
    let batch: TokenRow[] = [];
    for (let user = 0, made = 0; user < users; user++) {
      for (let token = 0; token < PER_USER; token++, made++) {
        const id = idOf(user, token);
        batch.push({
          id,
          userid: `u${user}@pve`,
          hash: fastHashes.get(id) ?? (hashes[made % hashes.length] as string),
          enable: true,
          expire: 0,
          privsep: true,
          comment: `customer ${user}`,
          created: 1_700_000_000 + user,
        });
        if (batch.length === 50_000) {
          await store.put(batch);
          batch = [];
        }
      }
    }
    await store.put(batch);
    const loadS = (performance.now() - t) / 1000;
    store.close();
    t = performance.now();
    store = new TokenStore(file, { page });
    const startMs = performance.now() - t;

    // The K tokens in a token.shadow too, for TokenShadow's cached verify side by side.
    const shadowPath = path.join(dir, 'token.shadow');
    writeFileSync(shadowPath, serializeShadow(fastHashes), { mode: 0o600 });
    // A verifier in its own process caches the K tokens.
    const child = track(
      spawn(
        process.execPath,
        [fileURLToPath(import.meta.url), '--verifier', file, pagePath, String(n), shadowPath],
        {
          stdio: ['pipe', 'pipe', 'inherit'],
        },
      ),
    );
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[
      Symbol.asyncIterator
    ]();
    const next = async () => JSON.parse((await lines.next()).value as string);
    const filled = await next();

    // Single revokes and creates, away from the verified users.
    const revokeMs: number[] = [];
    const createMs: number[] = [];
    const spare = Math.max(1, users - bulkUserCount(n));
    for (let i = 0; i < revokes; i++) {
      const id = idOf(randomInt(spare), 1 + randomInt(PER_USER - 1));
      t = performance.now();
      await store.remove([id]);
      revokeMs.push(performance.now() - t);
      const row = {
        id: `${id}-new`,
        userid: id.slice(0, id.indexOf('!')),
        hash: hashes[0] as string,
        enable: true,
        expire: 0,
        privsep: true,
        comment: '',
        created: 0,
      };
      t = performance.now();
      await store.put([row]);
      createMs.push(performance.now() - t);
    }
    // What the lock alone costs (proper-lockfile: mkdir, and rmdir on release).
    const lockMs: number[] = [];
    for (let i = 0; i < revokes; i++) {
      t = performance.now();
      await withFileLock(path.join(dir, 'lock-probe'), async () => undefined);
      lockMs.push(performance.now() - t);
    }
    // Bulk: whole users from the end, covering the K verified tokens.
    const bulkUsers = bulkUserCount(n);
    const targets = Array.from({ length: bulkUsers }, (_, i) => `u${users - 1 - i}@pve`);
    t = performance.now();
    const bulk = await store.revokeWhere({ users: targets });
    const bulkMs = performance.now() - t;
    child.stdin?.write('check\n');
    const after = await next();
    child.stdin?.end();
    await new Promise((resolve) => child.once('exit', resolve));
    store.close();
    page.close();
    return {
      n,
      loadS,
      startMs,
      revokeP50: percentile(revokeMs, 50),
      revokeMax: Math.max(...revokeMs),
      lockP50: percentile(lockMs, 50),
      shadowNs: filled.shadowNs,
      createP50: percentile(createMs, 50),
      bulkTokens: bulk.result.length,
      bulkMs,
      openMs: filled.openMs,
      rssMiB: filled.rss / MiB,
      baseMiB: filled.base / MiB,
      cachedNs: filled.cachedNs,
      accepted: after.accepted,
      firstAfterBulkMs: after.firstMs,
    };
  } finally {
    removeTempDir(dir);
  }
}

async function main(): Promise<void> {
  if (!tokenDatabaseAvailable())
    throw new Error(`node:sqlite is not in Node ${process.version}: run on 22.13+ or 24`);
  const at = process.argv.indexOf('--sizes');
  const sizes = (at >= 0 ? (process.argv[at + 1] as string) : '1000,10000,100000,1000000')
    .split(',')
    .map(Number);
  const ri = process.argv.indexOf('--revokes');
  const revokes = ri >= 0 ? Number(process.argv[ri + 1]) : 100;
  const hashes: string[] = [];
  for (let i = 0; i < 64; i++)
    hashes.push(
      await argon2.hash(`s${i}-${Math.random()}`, { type: argon2.argon2id, ...DEFAULT_ARGON2 }),
    );
  console.log(`${machineLine()}\n`);
  const rows: (string | number)[][] = [];
  for (const n of sizes) {
    const r = await oneSize(n, hashes, revokes);
    rows.push([
      n,
      fmt(r.loadS, 3),
      fmt(r.startMs, 3),
      fmt(r.revokeP50, 3),
      fmt(r.revokeMax, 3),
      fmt(r.lockP50, 3),
      fmt(r.createP50, 3),
      `${r.bulkTokens} in ${fmt(r.bulkMs, 3)}`,
      fmt(r.openMs, 3),
      `${fmt(r.rssMiB, 3)} (${fmt(r.baseMiB, 3)})`,
      `${fmt(r.cachedNs, 3)} / ${fmt(r.shadowNs, 3)}`,
      `${r.accepted} of ${verifiedIds(n).length}`,
      fmt(r.firstAfterBulkMs, 3),
    ]);
    console.log(`${n}: done`);
  }
  printTable(
    'Token database (src/store) by size: TokenStore writes, a DatabaseSecrets process reads',
    [
      'tokens',
      'load s',
      'writer open ms',
      'revoke p50 ms',
      'revoke max ms',
      'of which the lock p50 ms',
      'create p50 ms (+1 hash)',
      'bulk revoke (tokens in ms)',
      'verifier open + 1st verify ms',
      'verifier RSS MiB (node alone)',
      'cached verify ns: DatabaseSecrets / TokenShadow',
      'accepted after bulk',
      '1st verify after bulk ms',
    ],
    rows,
  );
}

const args = process.argv.slice(2);
if (args[0] === '--verifier') {
  await verifierChild(args[1] as string, args[2] as string, Number(args[3]), args[4] as string);
} else await main();
