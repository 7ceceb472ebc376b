/**
 * Mutation storm on the real daemons: 10,000 tokens cached in both API
 * workers while the manager rotates one token every second. The cache is
 * meant to revalidate entry by entry, so a rotation must cost a hash verify
 * only for the rotated token (once per worker that sees it again), never for
 * the 10,000 others; and the other tokens' latency should hardly move.
 *
 * - token.shadow and user.cfg are written before the daemons start: 10,000
 *   tokens plus one victim per rotation, all with distinct secrets and
 *   FAST_ARGON2 hashes (bench/lib/tokens.ts; making 10,000 default hashes
 *   would take minutes). Rotations go through the manager (token.rotate) and
 *   so get a default argon2id hash.
 * - Both workers are warmed over two keep-alive connections, one pinned to
 *   each worker (found by probing: a token verified over connection A is a
 *   cache miss over B only if B is served by the other worker).
 * - During the storm an autocannon child requests the 10,000 other tokens
 *   (cycling, at a fixed overall rate, so latency is not queueing); after
 *   each rotation the benchmark uses the victim's new secret once on each
 *   worker. Hash verifies, cache invalidations and misses are the workers'
 *   own counters (Prometheus, summed over workers), read before each rotation.
 * - The same load without rotations is the baseline for the latency.
 *
 *   npx tsc -p . && node dist/bench/storm.js [--full]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'undici';
import { removeTempDir, sleep, tempDir } from './lib/children.js';
import { type Api, readCounters, startDeployment } from './lib/daemons.js';
import { type LoadResult, prepareLoad, runLoad } from './lib/load.js';
import { fmt, machineLine, median, stamp, writeResults } from './lib/stats.js';
import { type BenchOptions, type BenchResult, runWhenMain, type Target } from './lib/suite.js';
import { printTable } from './lib/table.js';
import { makeTokens, pastRacyWindow, writeShadowFile, writeUserCfg } from './lib/tokens.js';

const USER = 'storm@pve';
const TOKENS = 10_000;
const WORKERS = 2;
const LOAD_CONNECTIONS = 10;
const LOAD_RATE = 2000;

const counters = (api: Api) =>
  readCounters(api, ['hashVerifies', 'busy', 'invalidations', 'misses', 'entries']);

/** GET /version with each header over one connection, `concurrency` at a time; the statuses. */
async function sendAll(client: Client, base: string, headers: string[], concurrency = 8) {
  const statuses = new Map<number, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < headers.length) {
        const authorization = headers[next++] as string;
        const reply = await client.request({
          path: `${base}/version`,
          method: 'GET',
          headers: { authorization },
        });
        await reply.body.dump();
        statuses.set(reply.statusCode, (statuses.get(reply.statusCode) ?? 0) + 1);
      }
    }),
  );
  return statuses;
}

/** Two keep-alive connections served by different workers. */
async function pinnedClients(api: Api, header: string): Promise<[Client, Client]> {
  const url = new URL(api.url);
  const base = url.pathname;
  const a = new Client(url.origin, { pipelining: 8 });
  await sendAll(a, base, [header], 1);
  for (let attempt = 0; attempt < 20; attempt++) {
    const b = new Client(url.origin, { pipelining: 8 });
    const before = (await counters(api)).hashVerifies;
    await sendAll(b, base, [header], 1);
    if ((await counters(api)).hashVerifies > before) return [a, b];
    await b.close();
  }
  await a.close();
  throw new Error('could not reach both workers with keep-alive connections');
}

export async function run(options: BenchOptions): Promise<BenchResult> {
  const rotations = options.full ? 30 : 10;
  const baselineSeconds = options.full ? 15 : 4;
  const dir = tempDir('bench-storm-');
  const clients: Client[] = [];
  let deployment: Awaited<ReturnType<typeof startDeployment>> | null = null;
  try {
    const names = Array.from({ length: TOKENS }, (_, i) => `t${String(i).padStart(5, '0')}`);
    const victims = Array.from({ length: rotations }, (_, i) => `v${String(i).padStart(3, '0')}`);
    const made = performance.now();
    const tokens = await makeTokens([...names, ...victims].map((n) => `${USER}!${n}`));
    const hashSeconds = (performance.now() - made) / 1000;
    const etc = path.join(dir, 'etc');
    mkdirSync(etc, { mode: 0o750 });
    writeShadowFile(path.join(etc, 'token.shadow'), tokens);
    writeUserCfg(path.join(etc, 'user.cfg'), USER, [...names, ...victims]);
    const written = Date.now();
    const others = tokens.slice(0, TOKENS);
    const victimTokens = tokens.slice(TOKENS);
    const tokensFile = path.join(dir, 'others.json');
    writeFileSync(tokensFile, JSON.stringify(others.map((t) => [t.id, t.secret])));

    deployment = await startDeployment(dir);
    const api = await deployment.startApi('storm', ['--workers', String(WORKERS)], {
      metrics: true,
    });
    // Read the file only once it is older than the racy window, as in steady state.
    await pastRacyWindow(written);

    const header = (t: { id: string; secret: string }) => `PVEAPIToken=${t.id}=${t.secret}`;
    const [a, b] = await pinnedClients(api, header(tokens[0] as { id: string; secret: string }));
    clients.push(a, b);
    const base = new URL(api.url).pathname;
    const warmStart = performance.now();
    const all = tokens.map(header);
    const warmStatuses = await Promise.all([sendAll(a, base, all), sendAll(b, base, all)]);
    const warmSeconds = (performance.now() - warmStart) / 1000;
    for (const s of warmStatuses) {
      if (s.size !== 1 || !s.has(200)) throw new Error(`warm-up: ${JSON.stringify([...s])}`);
    }
    const warmed = await counters(api);
    if (warmed.entries < WORKERS * tokens.length) {
      throw new Error(`only ${warmed.entries} entries cached, want ${WORKERS * tokens.length}`);
    }

    const load = (seconds: number) => ({
      url: `${api.url}/version`,
      connections: LOAD_CONNECTIONS,
      overallRate: LOAD_RATE,
      duration: seconds,
      mode: 'tokens' as const,
      tokensFile,
    });
    const baselineBefore = await counters(api);
    const baseline = await runLoad(load(baselineSeconds));
    const baselineAfter = await counters(api);

    // The storm: the load runs throughout; one rotation per second.
    const stormLoad = await prepareLoad(load(rotations + 1.5));
    const perRotation: Array<{
      hashVerifies: number;
      invalidations: number;
      misses: number;
      victimStatuses: number[];
      rotateMs: number;
    }> = [];
    let storm: LoadResult;
    try {
      const running = stormLoad.go();
      running.catch(() => undefined); // awaited below; no unhandled rejection if a rotation fails
      await sleep(500);
      for (let r = 0; r < rotations; r++) {
        const started = performance.now();
        const before = await counters(api);
        const victim = victimTokens[r] as { id: string };
        const reply = await deployment.asRoot('token.rotate', {
          userid: USER,
          tokenName: victim.id.split('!')[1],
        });
        const rotateMs = performance.now() - started;
        const secret = (reply.data as { value: string }).value;
        const statuses = await Promise.all(
          [a, b].map(async (c) => {
            const s = await sendAll(c, base, [header({ id: victim.id, secret })], 1);
            return [...s.keys()][0] as number;
          }),
        );
        await sleep(Math.max(0, started + 1000 - performance.now() - 5));
        const after = await counters(api);
        perRotation.push({
          hashVerifies: after.hashVerifies - after.busy - (before.hashVerifies - before.busy),
          invalidations: after.invalidations - before.invalidations,
          misses: after.misses - before.misses,
          victimStatuses: statuses,
          rotateMs,
        });
      }
      storm = await running;
    } finally {
      await stormLoad.close();
    }

    const hv = perRotation.map((r) => r.hashVerifies);
    const inv = perRotation.map((r) => r.invalidations);
    const expected = WORKERS; // the victim's new secret, once per worker
    const stormTable = printTable(
      `Mutation storm: ${TOKENS.toLocaleString('en-US')} tokens cached in each of ${WORKERS} API ` +
        `workers, one token rotated per second through the manager (${rotations} rotations); ` +
        `counters summed over workers (${machineLine()})`,
      ['per rotation', 'median', 'min', 'max', 'total', 'expected'],
      [
        [
          'hash verifies (all workers)',
          median(hv),
          Math.min(...hv),
          Math.max(...hv),
          sum(hv),
          `${expected} per rotation`,
        ],
        [
          'cache entries dropped',
          median(inv),
          Math.min(...inv),
          Math.max(...inv),
          sum(inv),
          `${expected} per rotation`,
        ],
        [
          'rotate call ms (manager: argon2 + write + bump)',
          fmt(median(perRotation.map((r) => r.rotateMs))),
          fmt(Math.min(...perRotation.map((r) => r.rotateMs))),
          fmt(Math.max(...perRotation.map((r) => r.rotateMs))),
          '-',
          '-',
        ],
      ],
    );
    const latencyTable = printTable(
      `The other tokens during the storm: autocannon, ${LOAD_CONNECTIONS} connections at ` +
        `${LOAD_RATE} req/s overall, cycling through all ${TOKENS.toLocaleString('en-US')} tokens`,
      ['run', 'seconds', 'req/s', 'non-2xx', 'p50 ms', 'p99 ms', 'max ms', 'hash verifies'],
      [
        [
          'baseline (no rotations)',
          baseline.seconds,
          baseline.rps.toFixed(0),
          baseline.responses - (baseline.byStatus['200']?.count ?? 0) + baseline.errors,
          fmt(baseline.latency.p50),
          fmt(baseline.latency.p99),
          fmt(baseline.latency.max),
          baselineAfter.hashVerifies - baselineBefore.hashVerifies,
        ],
        [
          `storm (${rotations} rotations)`,
          storm.seconds,
          storm.rps.toFixed(0),
          storm.responses - (storm.byStatus['200']?.count ?? 0) + storm.errors,
          fmt(storm.latency.p50),
          fmt(storm.latency.p99),
          fmt(storm.latency.max),
          sum(hv),
        ],
      ],
    );
    const note =
      `Setup: ${tokens.length.toLocaleString('en-US')} distinct hashes in ${hashSeconds.toFixed(1)} s; ` +
      `warming both workers over pinned connections (a hash verify each) took ${warmSeconds.toFixed(1)} s; ` +
      `cache entries after warm-up: ${warmed.entries} (summed over workers). ` +
      `Victim requests after their rotation: ${perRotation.filter((r) => r.victimStatuses.every((s) => s === 200)).length}/${rotations} rounds all 200.`;
    process.stdout.write(`${note}\n\n`);

    const data = {
      ...stamp(options),
      tokens: TOKENS,
      workers: WORKERS,
      rotations,
      load: { connections: LOAD_CONNECTIONS, rate: LOAD_RATE },
      hashSeconds,
      warmSeconds,
      perRotation,
      baseline,
      storm,
    };
    writeResults('storm', data, options.outDir);
    const otherVerifies = sum(hv) - expected * rotations;
    const targets: Target[] = [
      {
        benchmark: 'storm',
        target: "hash verifies per rotation: only the rotated token's (1 per worker)",
        measured:
          `${sum(hv)} in ${rotations} rotations (median ${median(hv)}, max ${Math.max(...hv)}; ` +
          `expected ${expected} each); ${sum(inv)} entries dropped`,
        met: hv.every((x) => x === expected) && otherVerifies === 0,
      },
      {
        benchmark: 'storm',
        target: 'p99 latency of the other tokens during the storm (reported)',
        measured:
          `${fmt(storm.latency.p99)} ms during the storm vs ${fmt(baseline.latency.p99)} ms ` +
          `without (p50 ${fmt(storm.latency.p50)} vs ${fmt(baseline.latency.p50)} ms)`,
        met: null,
      },
    ];
    return { name: 'storm', markdown: [stormTable, latencyTable, note], targets, data };
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    await deployment?.stop();
    removeTempDir(dir);
  }
}

function sum(values: number[]): number {
  return values.reduce((n, x) => n + x, 0);
}

await runWhenMain(import.meta.url, run);
