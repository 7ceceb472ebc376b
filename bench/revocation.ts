/**
 * Revocation across processes: V verifier processes, each with its own
 * TokenShadow on the same token.shadow and generation page, verify one token
 * in a tight loop (as the API does: verifyCached, else await verifySecret),
 * while this process rotates or deletes it with its own TokenShadow.
 *
 * The clean measure: this process records the instant T its rotate/delete
 * call returned; each verifier records the instant every verify of the old
 * secret *started*. Any acceptance that started after T is a violation
 * (target: 0). Per verifier we also report when its first refusal started
 * and ended, relative to T; the last of those ends is the time until every
 * process refuses the old secret.
 *
 * Clock: process.hrtime is CLOCK_MONOTONIC on Linux, one clock for the whole
 * machine, so instants compare across processes (the benchmark checks this
 * at start: a timestamp sent to a child must be in the child's past, and the
 * other way round). Timestamps are ns since a base instant this process hands
 * to the children.
 *
 * Acceptance instants are kept in a ring buffer of the last 2^20 per verifier;
 * T reaches the verifiers within a millisecond or so, long before the ring
 * could wrap past it (it would be reported).
 *
 * Hashes use the library's default argon2id parameters (19 MiB, t=2), so a
 * refusal costs what it costs in production: one argon2 verify after the
 * generation changed. Deleted ids are refused after a dummy verify.
 *
 *   npx tsc -p . && node dist/bench/revocation.js [--full]
 */
import path from 'node:path';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { GenerationPage, HashPool, TokenShadow } from '../src/index.js';
import {
  type Channel,
  removeTempDir,
  say,
  sleep,
  spawnChannel,
  stdinLines,
  tempDir,
} from './lib/children.js';
import { fmt, machineLine, median, stamp, writeResults } from './lib/stats.js';
import { type BenchOptions, type BenchResult, runWhenMain, type Target } from './lib/suite.js';
import { printTable } from './lib/table.js';

const VERIFIERS = 4;
const TOKEN = 'rev@pve!loop';
const RING = 1 << 20;
/** A verifier ends its round this long after it has both seen T and refused. */
const LINGER_MS = 30;
/** A round that has not ended after this is reported as never refused. */
const ROUND_LIMIT_MS = 10_000;

interface RoundReport {
  verifies: number;
  accepts: number;
  refusals: number;
  seconds: number;
  /** Acceptances that started after T (violations). */
  acceptsAfterT: number;
  /** The ring buffer had already dropped acceptances after T: acceptsAfterT is a lower bound. */
  overflow: boolean;
  /** Relative to T, ms; null when never refused. */
  firstRefusalStartMs: number | null;
  firstRefusalEndMs: number | null;
  lastAcceptStartMs: number | null;
}

// --- verifier child ------------------------------------------------------------

async function verifier(shadowPath: string, pagePath: string, base: bigint): Promise<void> {
  const now = () => Number(process.hrtime.bigint() - base);
  const page = GenerationPage.open(pagePath, { create: false });
  const pool = new HashPool({ threads: 1, maxQueue: 16 });
  const shadow = new TokenShadow({ path: shadowPath, page, pool });
  await shadow.warmUp();
  const next = stdinLines();
  const ring = new Float64Array(RING);
  say('ready');
  for (;;) {
    const command = (await next()) as { op: string; t?: number; secret?: string } | 'eof';
    if (command === 'eof' || command.op === 'exit') break;
    if (command.op === 'clock') {
      say({ delayNs: now() - (command.t as number), t: now() });
      continue;
    }
    if (command.op !== 'round') throw new Error(`unknown op ${command.op}`);
    const secret = command.secret as string;
    let tNs: number | null = null;
    // T arrives while we loop: poll stdin without blocking the loop.
    const waitT = next().then((m) => {
      tNs = (m as { t: number }).t;
    });
    let head = 0;
    let accepts = 0;
    let refusals = 0;
    let verifies = 0;
    let warm = false;
    let firstRefusalStart: number | null = null;
    let firstRefusalEnd: number | null = null;
    let lastAccept: number | null = null;
    let doneAt: number | null = null;
    const started = now();
    for (;;) {
      for (let k = 0; k < 256; k++) {
        const t = now();
        const ok = shadow.verifyCached(TOKEN, secret) ?? (await shadow.verifySecret(TOKEN, secret));
        verifies++;
        if (ok) {
          accepts++;
          ring[head++ & (RING - 1)] = t;
          lastAccept = t;
          if (!warm && shadow.verifyCached(TOKEN, secret)) {
            warm = true;
            say({ event: 'warm' });
          }
        } else {
          refusals++;
          if (firstRefusalStart === null) {
            firstRefusalStart = t;
            firstRefusalEnd = now();
          }
          break; // every refusal hashes: let stdin in
        }
      }
      await yieldNow();
      const at = now();
      if (tNs !== null && firstRefusalEnd !== null) doneAt ??= at;
      if (doneAt !== null && at - doneAt > LINGER_MS * 1e6) break;
      if (at - started > ROUND_LIMIT_MS * 1e6) break;
    }
    if (tNs === null) await waitT;
    const t = tNs as unknown as number;
    let after = 0;
    const kept = Math.min(head, RING);
    for (let i = 0; i < kept; i++) if ((ring[(head - 1 - i) & (RING - 1)] as number) > t) after++;
    const oldest = head > RING ? (ring[head & (RING - 1)] as number) : Number.NEGATIVE_INFINITY;
    const rel = (x: number | null) => (x === null ? null : (x - t) / 1e6);
    const report: RoundReport = {
      verifies,
      accepts,
      refusals,
      seconds: (now() - started) / 1e9,
      acceptsAfterT: after,
      overflow: oldest > t,
      firstRefusalStartMs: rel(firstRefusalStart),
      firstRefusalEndMs: rel(firstRefusalEnd),
      lastAcceptStartMs: rel(lastAccept),
    };
    say(report);
  }
  await pool.close();
  page.close();
  process.exit(0);
}

// --- parent -------------------------------------------------------------------------

interface Round {
  kind: 'rotate' | 'delete';
  mutationMs: number;
  reports: RoundReport[];
}

async function expect(channel: Channel, what: string): Promise<unknown> {
  const message = await channel.next();
  const ok =
    what === 'ready'
      ? message === 'ready'
      : (message as { event?: string })?.event === what || what === 'any';
  if (!ok) throw new Error(`verifier: expected ${what}, got ${JSON.stringify(message)}`);
  return message;
}

export async function run(options: BenchOptions): Promise<BenchResult> {
  const perKind = options.full ? 15 : 4;
  const dir = tempDir('bench-revocation-');
  const shadowPath = path.join(dir, 'token.shadow');
  const pagePath = path.join(dir, 'config-versions');
  const page = GenerationPage.open(pagePath);
  const pool = new HashPool({ threads: 1, maxQueue: 16 });
  const shadow = new TokenShadow({ path: shadowPath, page, pool });
  const base = process.hrtime.bigint();
  const now = () => Number(process.hrtime.bigint() - base);
  const script = fileURLToPath(import.meta.url);
  const channels: Channel[] = [];
  try {
    let secret = await shadow.generateAndSetSecret(TOKEN);
    for (let i = 0; i < VERIFIERS; i++) {
      channels.push(spawnChannel(script, ['verifier', shadowPath, pagePath, String(base)]));
    }
    for (const c of channels) await expect(c, 'ready');
    // One clock for all: what we send must be in the child's past, and the other way round.
    const clock: Array<{ toChildUs: number; toParentUs: number }> = [];
    for (const c of channels) {
      c.send({ op: 'clock', t: now() });
      const reply = (await c.next()) as { delayNs: number; t: number };
      clock.push({ toChildUs: reply.delayNs / 1e3, toParentUs: (now() - reply.t) / 1e3 });
    }
    if (clock.some((c) => c.toChildUs <= 0 || c.toParentUs <= 0)) {
      throw new Error(`clocks disagree across processes: ${JSON.stringify(clock)}`);
    }

    const rounds: Round[] = [];
    const kinds: Array<'rotate' | 'delete'> = [];
    for (let i = 0; i < perKind; i++) kinds.push('rotate', 'delete');
    for (const kind of kinds) {
      for (const c of channels) c.send({ op: 'round', secret });
      for (const c of channels) await expect(c, 'warm');
      await sleep(20); // every verifier is now looping on cache hits
      const t0 = now();
      if (kind === 'rotate') secret = await shadow.generateAndSetSecret(TOKEN);
      else await shadow.deleteSecret(TOKEN);
      const t = now();
      for (const c of channels) c.send({ t });
      const reports: RoundReport[] = [];
      for (const c of channels) reports.push((await c.next()) as RoundReport);
      rounds.push({ kind, mutationMs: (t - t0) / 1e6, reports });
      if (kind === 'delete') secret = await shadow.generateAndSetSecret(TOKEN);
    }
    for (const c of channels) c.send({ op: 'exit' });

    const rows = (['rotate', 'delete'] as const).map((kind) => {
      const list = rounds.filter((r) => r.kind === kind);
      const reports = list.flatMap((r) => r.reports);
      const violations = reports.reduce((n, r) => n + r.acceptsAfterT, 0);
      const ends = reports.map((r) => r.firstRefusalEndMs ?? Number.POSITIVE_INFINITY);
      const starts = reports.map((r) => r.firstRefusalStartMs ?? Number.POSITIVE_INFINITY);
      const everyone = list.map((r) =>
        Math.max(...r.reports.map((x) => x.firstRefusalEndMs ?? Number.POSITIVE_INFINITY)),
      );
      const rate = reports.map((r) => r.verifies / r.seconds);
      return {
        kind,
        rounds: list.length,
        violations,
        overflow: reports.some((r) => r.overflow),
        neverRefused: reports.filter((r) => r.firstRefusalEndMs === null).length,
        refusedBeforeT: starts.filter((x) => x < 0).length,
        firstRefusalStartMedianMs: median(starts),
        firstRefusalEndMedianMs: median(ends),
        everyoneMedianMs: median(everyone),
        everyoneMaxMs: Math.max(...everyone),
        lastAcceptMaxMs: Math.max(
          ...reports.map((r) => r.lastAcceptStartMs ?? Number.NEGATIVE_INFINITY),
        ),
        mutationMedianMs: median(list.map((r) => r.mutationMs)),
        verifiesPerSecond: median(rate),
      };
    });
    const table = printTable(
      `Revocation: ${VERIFIERS} verifier processes in a tight loop on one token, another process ` +
        `rotates or deletes it; T = the instant the mutation call returned; argon2id defaults; ` +
        `${perKind} rounds each (${machineLine()})`,
      [
        'mutation',
        'rounds',
        'verifies/s per process (round average)',
        'accepted after T',
        'last accept start, ms from T (max)',
        'refused before T returned',
        '1st refusal starts ms (median)',
        '1st refusal ends ms (median)',
        'all refuse by ms (median)',
        'all refuse by ms (max)',
        'mutation call ms',
      ],
      rows.map((r) => [
        r.kind,
        r.rounds * VERIFIERS,
        r.verifiesPerSecond.toFixed(0),
        `${r.violations}${r.overflow ? '+' : ''}`,
        fmt(r.lastAcceptMaxMs),
        `${r.refusedBeforeT}/${r.rounds * VERIFIERS}`,
        fmt(r.firstRefusalStartMedianMs),
        fmt(r.firstRefusalEndMedianMs),
        fmt(r.everyoneMedianMs),
        fmt(r.everyoneMaxMs),
        fmt(r.mutationMedianMs),
      ]),
    );
    const note =
      "'rounds' counts verifier-rounds (rounds x processes). A negative 'ms from T' happened " +
      'before the mutation call returned. Cross-process clock check (one-way IPC delay seen ' +
      `by the receiver, us): ${clock.map((c) => `${c.toChildUs.toFixed(0)}/${c.toParentUs.toFixed(0)}`).join(', ')}.`;
    process.stdout.write(`${note}\n\n`);
    const data = {
      ...stamp(options),
      verifiers: VERIFIERS,
      clock,
      summary: rows,
      rounds,
    };
    writeResults('revocation', data, options.outDir);
    const violations = rows.reduce((n, r) => n + r.violations, 0);
    const never = rows.reduce((n, r) => n + r.neverRefused, 0);
    const targets: Target[] = [
      {
        benchmark: 'revocation',
        target: 'acceptances of the old secret after the mutation returned: 0',
        measured:
          rows.map((r) => `${r.kind}: ${r.violations}${r.overflow ? '+' : ''}`).join(', ') +
          ` (${rows.reduce((n, r) => n + r.rounds, 0) * VERIFIERS} verifier-rounds)`,
        met: violations === 0 && never === 0 && !rows.some((r) => r.overflow),
      },
      {
        benchmark: 'revocation',
        target: 'time until every process refuses (reported, no target)',
        measured: rows
          .map(
            (r) =>
              `${r.kind}: median ${fmt(r.everyoneMedianMs)} ms, max ${fmt(r.everyoneMaxMs)} ms`,
          )
          .join('; '),
        met: null,
      },
    ];
    return { name: 'revocation', markdown: [table, note], targets, data };
  } finally {
    await Promise.all(channels.map((c) => c.close(2000)));
    await pool.close();
    page.close();
    removeTempDir(dir);
  }
}

await runWhenMain(import.meta.url, run, {
  verifier: ([shadowPath, pagePath, base]) =>
    verifier(shadowPath as string, pagePath as string, BigInt(base as string)),
});
