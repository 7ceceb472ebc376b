/**
 * Cost of the generation page's two operations, GenerationPage.load(slot)
 * (acquire load) and increment(slot) (fetch_add acq_rel), called from
 * JavaScript through the addon:
 *
 * - one process alone;
 * - two processes on the same slot (true sharing: the cache line moves
 *   between the cores on every operation);
 * - two processes on different slots of one 64-byte cache line (false
 *   sharing), and on slots in different cache lines (no sharing).
 *
 *   npx tsc -p . && node dist/bench/generation.js
 *
 * The second process runs this same file as `child <op> <file> <slot> <ops>
 * <rounds>`: it prints "ready", then for each round waits for a "go" line on
 * stdin, runs its loop and prints its ns/op as JSON. The parent runs its own
 * loop right after writing "go", so the loops overlap for all but a few
 * microseconds of a round; nothing sleeps. Prints a table and writes
 * bench/results/generation.json. Part of the suite (bench/run.ts) through
 * `run(options)`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { GenerationPage } from '../src/generations/page.js';
import { type BenchOptions, type BenchResult, runWhenMain } from './lib/suite.js';
import { printTable } from './lib/table.js';

type Op = 'load' | 'increment';

/** Operations per timed round; one round of load takes some tens of ms. */
const OPS = 1_000_000;
/** Timed rounds per scenario (odd, so the median is one of them). */
const ROUNDS = 7;
/** Untimed rounds first, so the loops run optimised code when timed. */
const WARMUP = 1;

// Slot i is the u64 at byte 8 + 8 * i; slots 0-6 share the first cache line.
const SLOT = 3;
const SLOT_SAME_LINE = 4;
const SLOT_OTHER_LINE = 3 + 64 / 8;

let sink = 0;

/** Runs `ops` operations and returns nanoseconds per operation. */
function timeLoop(page: GenerationPage, op: Op, slot: number, ops: number): number {
  let acc = 0;
  const start = process.hrtime.bigint();
  if (op === 'load') {
    for (let i = 0; i < ops; i++) acc += page.load(slot);
  } else {
    for (let i = 0; i < ops; i++) acc += page.increment(slot);
  }
  const elapsed = process.hrtime.bigint() - start;
  sink += acc;
  return Number(elapsed) / ops;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Resolves with stdout lines of a child, one per call. */
function lineReader(input: NodeJS.ReadableStream): () => Promise<string> {
  const rl: Interface = createInterface({ input });
  const lines: string[] = [];
  const waiters: Array<{ resolve: (line: string) => void; reject: (e: Error) => void }> = [];
  rl.on('line', (line) => {
    const waiter = waiters.shift();
    if (waiter) waiter.resolve(line);
    else lines.push(line);
  });
  rl.on('close', () => {
    for (const waiter of waiters.splice(0)) waiter.reject(new Error('stream closed'));
  });
  return () => {
    const line = lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
  };
}

async function child(args: string[]): Promise<void> {
  const [op, file, slotArg, opsArg, roundsArg] = args;
  const page = GenerationPage.open(file as string, { create: false });
  const next = lineReader(process.stdin);
  process.stdout.write('ready\n');
  for (let round = 0; round < Number(roundsArg); round++) {
    const line = await next();
    if (line !== 'go') throw new Error(`child: expected go, got ${line}`);
    const ns = timeLoop(page, op as Op, Number(slotArg), Number(opsArg));
    process.stdout.write(`${JSON.stringify({ ns })}\n`);
  }
  page.close();
  process.exit(0);
}

interface Scenario {
  name: string;
  op: Op;
  slot: number;
  /** The second process, if any: its operation and slot. */
  peer?: { op: Op; slot: number };
}

/** This process doing `op` on SLOT while a second one increments `peerSlot`. */
function withPeer(name: string, op: Op, peerSlot: number): Scenario {
  return {
    name: `2 processes, ${name}`,
    op,
    slot: SLOT,
    peer: { op: 'increment', slot: peerSlot },
  };
}

interface Result {
  scenario: string;
  op: Op;
  slots: string;
  nsPerOp: number[];
  peerNsPerOp: number[] | null;
}

async function runScenario(file: string, s: Scenario): Promise<Result> {
  const page = GenerationPage.open(file);
  const rounds = WARMUP + ROUNDS;
  const own: number[] = [];
  const peer: number[] = [];
  let proc: ChildProcess | undefined;
  let next: (() => Promise<string>) | undefined;
  if (s.peer) {
    proc = spawn(
      process.execPath,
      [
        fileURLToPath(import.meta.url),
        'child',
        s.peer.op,
        file,
        String(s.peer.slot),
        String(OPS),
        String(rounds),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    next = lineReader(proc.stdout as NodeJS.ReadableStream);
    const ready = await next();
    if (ready !== 'ready') throw new Error(`child said ${ready}`);
  }
  for (let round = 0; round < rounds; round++) {
    if (proc && next) {
      const stdin = proc.stdin as NodeJS.WritableStream;
      // Start once "go" has been handed to the kernel, not merely queued.
      await new Promise<void>((resolve, reject) =>
        stdin.write('go\n', (error) => (error ? reject(error) : resolve())),
      );
    }
    const ns = timeLoop(page, s.op, s.slot, OPS);
    const peerNs = next ? (JSON.parse(await next()) as { ns: number }).ns : 0;
    if (round >= WARMUP) {
      own.push(ns);
      peer.push(peerNs);
    }
  }
  if (proc) {
    proc.stdin?.end();
    const [code] = await once(proc, 'exit');
    if (code !== 0) throw new Error(`child exited with ${code}`);
  }
  page.close();
  const slots = s.peer ? `${s.slot} + ${s.peer.slot}` : String(s.slot);
  return { scenario: s.name, op: s.op, slots, nsPerOp: own, peerNsPerOp: s.peer ? peer : null };
}

function cpuModel(): string {
  return os.cpus()[0]?.model.trim() ?? 'unknown';
}

export async function run(options: BenchOptions): Promise<BenchResult> {
  const started = Date.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'token-shadow-bench-'));
  const file = path.join(dir, 'config-versions');
  const scenarios: Scenario[] = [
    { name: '1 process', op: 'load', slot: SLOT },
    { name: '1 process', op: 'increment', slot: SLOT },
    withPeer('same slot', 'increment', SLOT),
    withPeer('same slot (peer increments)', 'load', SLOT),
    withPeer('same cache line (false sharing)', 'increment', SLOT_SAME_LINE),
    withPeer('different cache lines', 'increment', SLOT_OTHER_LINE),
  ];
  const results: Result[] = [];
  let expected = 0;
  try {
    GenerationPage.open(file).close();
    for (const s of scenarios) {
      results.push(await runScenario(file, s));
      const bumps = (s.op === 'increment' ? 1 : 0) + (s.peer?.slot === SLOT ? 1 : 0);
      expected += bumps * OPS * (WARMUP + ROUNDS);
    }
    // Every increment of both processes must have landed exactly once.
    const page = GenerationPage.open(file);
    const actual = page.load(SLOT);
    page.close();
    if (actual !== expected) throw new Error(`slot ${SLOT} is ${actual}, expected ${expected}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const headers = [
    'scenario',
    'op',
    'slots',
    'median ns/op',
    'min ns/op',
    'max ns/op',
    'peer median ns/op',
    'total Mops/s',
  ];
  const rows = results.map((r) => {
    const own = median(r.nsPerOp);
    const peer = r.peerNsPerOp ? median(r.peerNsPerOp) : null;
    const total = 1e3 / own + (peer ? 1e3 / peer : 0);
    return [
      r.scenario,
      r.op,
      r.slots,
      own,
      Math.min(...r.nsPerOp),
      Math.max(...r.nsPerOp),
      peer === null ? '-' : peer.toFixed(1),
      total.toFixed(2),
    ];
  });
  const machine = {
    nproc: os.availableParallelism(),
    cpu: cpuModel(),
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
  };
  const title =
    `GenerationPage, ${OPS.toLocaleString('en-US')} ops per round, median of ${ROUNDS} rounds ` +
    `(nproc ${machine.nproc}, ${machine.cpu}, node ${machine.node})`;
  const table = printTable(title, headers, rows);

  const outDir = options.outDir;
  mkdirSync(outDir, { recursive: true });
  const outFile = path.join(outDir, 'generation.json');
  const json = {
    benchmark: 'generation',
    date: new Date().toISOString(),
    machine,
    params: { opsPerRound: OPS, rounds: ROUNDS, warmupRounds: WARMUP },
    slots: { slot: SLOT, sameLine: SLOT_SAME_LINE, otherLine: SLOT_OTHER_LINE },
    results: results.map((r) => ({
      ...r,
      medianNsPerOp: median(r.nsPerOp),
      peerMedianNsPerOp: r.peerNsPerOp ? median(r.peerNsPerOp) : null,
    })),
    table,
    durationMs: Date.now() - started,
    sink,
  };
  writeFileSync(outFile, `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(`wrote ${path.relative(process.cwd(), outFile)} in ${json.durationMs} ms\n`);
  return { name: 'generation', markdown: [table], targets: [], data: json };
}

await runWhenMain(import.meta.url, run, { child });
