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
 *   (cached), must all be refused once it returned.
 *
 *   npm run build:ts && node dist/bench/daemon-scale.js [--sizes 1000,10000,100000,1000000]
 *     [--revokes 50] [--files-max 10000]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import argon2 from 'argon2';
import { type Api, startDeployment } from '../harness/daemons.js';
import { DEFAULT_ARGON2 } from '../src/hashing/params.js';
import { serializeShadow } from '../src/shadow/file.js';
import {
  TokenDatabaseWriter,
  type TokenRow,
  tokenDatabaseAvailable,
} from '../src/store/token-database.js';
import {
  killTracked,
  removeTempDir,
  tempDir,
  track,
  trackPid,
  untrackPid,
} from './lib/children.js';
import { procMemory } from './lib/proc.js';
import { fmt, machineLine, percentile } from './lib/stats.js';
import { printTable } from './lib/table.js';

const PER_USER = 100;
const ADMIN_SECRET = 'bench-admin-secret-0123456789';

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? (process.argv[at + 1] ?? fallback) : fallback;
}

const sizes = option('sizes', '1000,10000,100000,1000000').split(',').map(Number);
const revokes = Number(option('revokes', '50'));
const filesMax = Number(option('files-max', '10000'));

type Store = 'database' | 'files';

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
  cachedGetMs: number;
  /** Tokens of the bulk revocation verified (cached) before it, and how many were accepted after. */
  checked: number;
  acceptedAfter: number;
}

/** One request on `agent` (a new connection without one); its status and the ms it took. */
function request(
  api: Api,
  method: string,
  route: string,
  form: Record<string, string> | null,
  agent?: http.Agent,
  authorization = `PVEAPIToken=root@pam!admin=${ADMIN_SECRET}`,
): Promise<{ status: number; ms: number; body: string }> {
  const body = form === null ? undefined : new URLSearchParams(form).toString();
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      new URL(`${api.url}${route}`),
      {
        method,
        agent: agent ?? false,
        headers: {
          authorization,
          ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, ms: performance.now() - t, body: text }),
        );
      },
    );
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

async function ok(reply: Promise<{ status: number; ms: number; body: string }>): Promise<number> {
  const { status, ms, body } = await reply;
  if (status !== 200) throw new Error(`status ${status}: ${body.slice(0, 300)}`);
  return ms;
}

/** The deployment's files: user.cfg (and token lines, with `files`), token.shadow or access.db. */
async function build(configDir: string, n: number, store: Store, hashes: string[]): Promise<void> {
  mkdirSync(configDir, { recursive: true, mode: 0o750 });
  const users = n / PER_USER;
  const adminHash = await argon2.hash(ADMIN_SECRET, { type: argon2.argon2id, ...DEFAULT_ARGON2 });
  const lines = ['user:root@pam:1:0::::::', 'token:root@pam!admin:1:0:0::'];
  const now = Math.floor(Date.now() / 1000);
  if (store === 'files') {
    const shadow = new Map<string, string>([['root@pam!admin', adminHash]]);
    for (let u = 0; u < users; u++) {
      lines.push(`user:u${u}@pve:1:0::::::`);
      for (let t = 0; t < PER_USER; t++) {
        lines.push(`token:u${u}@pve!t${t}:1:0:1::`);
        shadow.set(`u${u}@pve!t${t}`, hashes[(u * PER_USER + t) % hashes.length] as string);
      }
    }
    writeFileSync(path.join(configDir, 'token.shadow'), serializeShadow(shadow), { mode: 0o640 });
    writeFileSync(path.join(configDir, 'user.cfg'), `${lines.join('\n')}\n`, { mode: 0o640 });
    return;
  }
  lines.splice(1, 1); // the admin token is a row too
  for (let u = 0; u < users; u++) lines.push(`user:u${u}@pve:1:0::::::`);
  writeFileSync(path.join(configDir, 'user.cfg'), `${lines.join('\n')}\n`, { mode: 0o640 });
  const writer = new TokenDatabaseWriter(path.join(configDir, 'access.db'));
  try {
    const row = (id: string, userid: string, hash: string, privsep: boolean): TokenRow => ({
      id,
      userid,
      hash,
      enable: true,
      expire: 0,
      privsep,
      comment: '',
      created: now,
    });
    writer.put([row('root@pam!admin', 'root@pam', adminHash, false)]);
    const batch: TokenRow[] = [];
    for (let u = 0; u < users; u++) {
      for (let t = 0; t < PER_USER; t++) {
        const hash = hashes[(u * PER_USER + t) % hashes.length] as string;
        batch.push(row(`u${u}@pve!t${t}`, `u${u}@pve`, hash, true));
      }
      if (batch.length >= 100_000) writer.put(batch.splice(0));
    }
    if (batch.length > 0) writer.put(batch);
  } finally {
    writer.close();
  }
}

async function measure(n: number, store: Store, hashes: string[], hashMs: number): Promise<Row> {
  const dir = tempDir('token-shadow-daemon-scale-');
  try {
    await build(path.join(dir, 'etc'), n, store, hashes);
    const t0 = performance.now();
    const deployment = await startDeployment(dir, {
      logs: 'file',
      env: { UV_THREADPOOL_SIZE: '4' },
      track: { child: track, pid: trackPid, forget: untrackPid },
    });
    try {
      const api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1'], {
        plainHttp: true,
      });
      for (;;) {
        const { status } = await request(api, 'GET', '/version', null);
        if (status === 200) break;
        if (status !== 503) throw new Error(`the API answered ${status}`);
      }
      const readyMs = performance.now() - t0;
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
      const create: number[] = [];
      for (let i = 0; i < revokes; i++) {
        const route = `/access/users/u${i % (n / PER_USER)}@pve/token/new${i}`;
        create.push(await ok(request(api, 'POST', route, { privsep: '1' })));
      }
      const bulkUsers = Math.max(1, Math.min(10_000, n / 10) / PER_USER);
      const first = n / PER_USER - bulkUsers;
      const users = Array.from({ length: bulkUsers }, (_, i) => `u${first + i}@pve`).join(',');
      // Tokens of the bulk's users, each verified on both workers first (cached there).
      const checks = Array.from({ length: 20 }, (_, i) => {
        const u = first + (i % bulkUsers);
        const t = 50 + Math.floor(i / bulkUsers);
        const k = (u * PER_USER + t) % hashes.length;
        return `PVEAPIToken=u${u}@pve!t${t}=hash-${k}`;
      });
      const statusesOf = async (header: string) => {
        const out: number[] = [];
        for (let i = 0; i < 4; i++)
          out.push((await request(api, 'GET', '/version', null, undefined, header)).status);
        return out;
      };
      for (const header of checks) {
        const before = await statusesOf(header);
        if (before.some((s) => s !== 200)) throw new Error(`before the bulk: ${before}`);
      }
      const bulk = await request(api, 'POST', '/access/tokens/revoke', { users });
      if (bulk.status !== 200) throw new Error(`bulk: ${bulk.status} ${bulk.body.slice(0, 300)}`);
      const bulkTokens = (JSON.parse(bulk.body) as { data: { revoked: string[] } }).data.revoked
        .length;
      let acceptedAfter = 0;
      for (const header of checks) {
        if ((await statusesOf(header)).some((s) => s === 200)) acceptedAfter++;
      }
      const managerPid = deployment.manager.pid as number;
      const workerMiB = Math.max(...api.workerPids.map((pid) => procMemory(pid).rssMiB));
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
        managerMiB: procMemory(managerPid).rssMiB,
        workerMiB,
        cachedGetMs: percentile(gets, 50),
        checked: checks.length,
        acceptedAfter,
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
      'RSS manager / worker MiB',
      'cached GET ms',
      'accepted after bulk',
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
      `${fmt(r.managerMiB)} / ${fmt(r.workerMiB)}`,
      fmt(r.cachedGetMs),
      `${r.acceptedAfter} of ${r.checked}`,
    ]),
  );
}

await main();
