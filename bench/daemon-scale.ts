/**
 * Issue 25 through the daemons: what `npm start` runs (the manager and an API
 * of two workers) on a deployment of N tokens, N/100 users of 100 privilege-
 * separated tokens each, with real argon2id hash strings of the default
 * parameters (64 distinct ones reused: a string costs the same bytes whatever
 * secret it hides). Each size runs on the token database (`access.db`) and,
 * up to `--files-max`, on today's files, side by side:
 *
 * - API ready: from spawning the manager to the first 200 of the API;
 * - revoke: `DELETE /access/users/{user}/token/{id}`, p50 / max of `--revokes`;
 * - create: `POST .../token/{id}`, p50, and the same less one hash (measured here);
 * - bulk: `POST /access/tokens/revoke` of whole users, min(10,000, N/10) tokens;
 * - RSS of the manager and of the largest worker after all of it;
 * - a cached GET /version on a keep-alive connection, p50;
 * - nothing stale: 20 tokens of the bulk's users, each accepted by both workers before it
 *   (cached), must all be refused once it returned;
 * - with `--crash-rounds K` (token database only): K times, the manager is SIGKILLed at a
 *   random instant during a stream of deletes through the API, the daemons start again, and
 *   every delete that was answered 200 must still be in effect (its secret refused by both
 *   workers), the store must open and serve.
 *
 *   npm run build:ts && node dist/bench/daemon-scale.js [--sizes 1000,10000,100000,1000000]
 *     [--revokes 50] [--files-max 10000] [--crash-rounds 0]
 */
import http from 'node:http';
import path from 'node:path';
import argon2 from 'argon2';
import { DEFAULT_ARGON2 } from '../src/hashing/params.js';
import { tokenDatabaseAvailable } from '../src/store/token-database.js';
import { killTracked, removeTempDir, tempDir } from './lib/children.js';
import { option } from './lib/options.js';
import { procMemory } from './lib/proc.js';
import {
  build,
  bulkPlan,
  headerOf,
  ok,
  PER_USER,
  progress,
  request,
  type Store,
  started,
  statusesOf,
} from './lib/scale-deployment.js';
import { fmt, machineLine, percentile } from './lib/stats.js';
import { printTable } from './lib/table.js';

const sizes = option('sizes', '1000,10000,100000,1000000').split(',').map(Number);
const revokes = Number(option('revokes', '50'));
const filesMax = Number(option('files-max', '10000'));
/** SIGKILL rounds on the token database at each size (0: none). */
const crashRounds = Number(option('crash-rounds', '0'));

interface Row {
  store: Store;
  n: number;
  readyMs: number;
  revokeP50: number;
  revokeMax: number;
  createP50: number;
  hashMs: number;
  bulkTokens: number;
  bulkMs: number;
  managerMiB: number;
  workerMiB: number;
  /** The same right after start, before any request but the readiness probe. */
  managerStartMiB: number;
  workerStartMiB: number;
  cachedGetMs: number;
  /** Tokens of the bulk revocation verified (cached) before it, and how many were accepted after. */
  checked: number;
  acceptedAfter: number;
  /** The crash rounds: rounds run, deletes acknowledged before the SIGKILL, and of those accepted after. */
  crash: { rounds: number; acked: number; acceptedAfter: number } | null;
}

/**
 * SIGKILL rounds: deletes streamed through the API while the manager is killed at a random
 * instant; after a restart every answered delete must still hold on both workers.
 */
async function crashes(dir: string, n: number, rounds: number, hashCount: number) {
  const users = n / PER_USER;
  let acked = 0;
  let acceptedAfter = 0;
  for (let round = 0; round < rounds; round++) {
    progress(`crash round ${round + 1}: starting`);
    const { deployment, api } = await started(dir);
    const answered: string[] = [];
    try {
      const token = 10 + round; // t0 and the checks' t50+ are used by the measurements
      let stop = false;
      const stream = (async () => {
        for (let u = 0; u < users && !stop; u++) {
          const reply = await request(
            api,
            'DELETE',
            `/access/users/u${u}@pve/token/t${token}`,
            null,
          ).catch(() => ({ status: 0 }));
          if (reply.status === 200) answered.push(headerOf(u, token, hashCount));
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 400));
      deployment.manager.kill('SIGKILL');
      stop = true;
      await stream;
    } finally {
      await deployment.stop();
    }
    acked += answered.length;
    progress(`crash round ${round + 1}: ${answered.length} deletes answered, restarting`);
    const again = await started(dir);
    try {
      for (const header of answered) {
        for (let i = 0; i < 4; i++) {
          const reply = await request(again.api, 'GET', '/version', null, undefined, header).catch(
            (error) => {
              throw new Error(`checking ${header.slice(0, header.lastIndexOf('='))}: ${error}`);
            },
          );
          if (reply.status === 200) {
            acceptedAfter++;
            break;
          }
        }
      }
    } finally {
      await again.deployment.stop();
    }
  }
  return { rounds, acked, acceptedAfter };
}

async function measure(n: number, store: Store, hashes: string[], hashMs: number): Promise<Row> {
  const dir = tempDir('token-shadow-daemon-scale-');
  try {
    await build(path.join(dir, 'etc'), n, store, hashes);
    const t0 = performance.now();
    const { deployment, api } = await started(dir);
    let crash: Row['crash'] = null;
    try {
      const readyMs = performance.now() - t0;
      const managerStartMiB = procMemory(deployment.manager.pid as number).rssMiB;
      const workerStartMiB = Math.max(...api.workerPids.map((pid) => procMemory(pid).rssMiB));
      for (let i = 0; i < 8; i++) await ok(request(api, 'GET', '/version', null));
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const gets: number[] = [];
      for (let i = 0; i < 300; i++)
        gets.push(await ok(request(api, 'GET', '/version', null, agent)));
      agent.destroy();
      const revoke: number[] = [];
      for (let i = 0; i < revokes; i++) {
        const user = i % (n / PER_USER);
        const token = Math.floor(i / (n / PER_USER));
        revoke.push(
          await ok(request(api, 'DELETE', `/access/users/u${user}@pve/token/t${token}`, null)),
        );
      }
      const managerOf = () => fmt(procMemory(deployment.manager.pid as number).rssMiB);
      progress(`${store} ${n}: manager RSS ${managerOf()} MiB after the revokes`);
      const create: number[] = [];
      for (let i = 0; i < revokes; i++) {
        const route = `/access/users/u${i % (n / PER_USER)}@pve/token/new${i}`;
        create.push(await ok(request(api, 'POST', route, { privsep: '1' })));
      }
      // Tokens of the bulk's users, each verified on both workers first (cached there).
      const { users, checks } = bulkPlan(n, hashes.length);
      progress(`${store} ${n}: revokes and creates done, checking`);
      for (const header of checks) {
        const before = await statusesOf(api, header);
        if (before.some((s) => s !== 200)) throw new Error(`before the bulk: ${before}`);
      }
      progress(`${store} ${n}: manager RSS ${managerOf()} MiB after the creates and checks`);
      const bulk = await request(api, 'POST', '/access/tokens/revoke', { users });
      progress(`${store} ${n}: manager RSS ${managerOf()} MiB after the bulk revoke`);
      if (bulk.status !== 200) throw new Error(`bulk: ${bulk.status} ${bulk.body.slice(0, 300)}`);
      const bulkTokens = (JSON.parse(bulk.body) as { data: { revoked: string[] } }).data.revoked
        .length;
      let acceptedAfter = 0;
      for (const header of checks) {
        if ((await statusesOf(api, header)).some((s) => s === 200)) acceptedAfter++;
      }
      const managerPid = deployment.manager.pid as number;
      const workerMiB = Math.max(...api.workerPids.map((pid) => procMemory(pid).rssMiB));
      const managerMiB = procMemory(managerPid).rssMiB;
      if (store === 'database' && crashRounds > 0) {
        await deployment.stop();
        crash = await crashes(dir, n, crashRounds, hashes.length);
      }
      return {
        store,
        n,
        readyMs,
        revokeP50: percentile(revoke, 50),
        revokeMax: Math.max(...revoke),
        createP50: percentile(create, 50),
        hashMs,
        bulkTokens,
        bulkMs: bulk.ms,
        managerMiB,
        managerStartMiB,
        workerStartMiB,
        workerMiB,
        cachedGetMs: percentile(gets, 50),
        checked: checks.length,
        acceptedAfter,
        crash,
      };
    } finally {
      await deployment.stop();
    }
  } finally {
    removeTempDir(dir);
  }
}

async function main(): Promise<void> {
  if (!tokenDatabaseAvailable()) throw new Error(`node:sqlite is not in Node ${process.version}`);
  process.on('exit', () => killTracked());
  console.log(machineLine());
  const t = performance.now();
  const hashes = await Promise.all(
    Array.from({ length: 64 }, (_, i) =>
      argon2.hash(`hash-${i}`, { type: argon2.argon2id, ...DEFAULT_ARGON2 }),
    ),
  );
  // What one hash of the default parameters costs here (a create makes one).
  const one: number[] = [];
  for (let i = 0; i < 5; i++) {
    const h = performance.now();
    await argon2.hash(`one-${i}`, { type: argon2.argon2id, ...DEFAULT_ARGON2 });
    one.push(performance.now() - h);
  }
  const hashMs = percentile(one, 50);
  console.log(
    `64 hash strings in ${fmt((performance.now() - t) / 1000)} s; one hash ${fmt(hashMs)} ms`,
  );
  const rows: Row[] = [];
  for (const n of sizes) {
    for (const store of ['database', 'files'] as const) {
      if (store === 'files' && n > filesMax) continue;
      const row = await measure(n, store, hashes, hashMs);
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
  printTable(
    'Issue 25 through the daemons (manager + API of 2 workers)',
    [
      'store',
      'tokens',
      'API ready s',
      'revoke p50 ms',
      'revoke max ms',
      'create p50 ms',
      'create - 1 hash ms',
      'bulk (tokens in ms)',
      'RSS manager / worker MiB: at start, at the end',
      'cached GET ms',
      'accepted after bulk',
      'SIGKILL rounds: acked deletes, accepted after',
    ],
    rows.map((r) => [
      r.store,
      r.n,
      fmt(r.readyMs / 1000),
      fmt(r.revokeP50),
      fmt(r.revokeMax),
      fmt(r.createP50),
      fmt(r.createP50 - r.hashMs),
      `${r.bulkTokens} in ${fmt(r.bulkMs)}`,
      `${fmt(r.managerStartMiB)} / ${fmt(r.workerStartMiB)}, ${fmt(r.managerMiB)} / ${fmt(r.workerMiB)}`,
      fmt(r.cachedGetMs),
      `${r.acceptedAfter} of ${r.checked}`,
      r.crash === null
        ? '-'
        : `${r.crash.rounds} rounds: ${r.crash.acked} acked, ${r.crash.acceptedAfter} accepted`,
    ]),
  );
}

await main();
