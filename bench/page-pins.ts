/**
 * What pinning costs (src/generations/stale.ts, issue 22): a writer reaches
 * the older pages readers still map through pins in the page's directory
 * instead of /proc, so
 *
 * - every open or remap of the page pins it (flock, linkat, two lstat):
 *   `GenerationPage.open` with and without `pin`;
 * - every mutation's `prepareWrite` lists the directory (readdir) and
 *   re-pins its own page; after a swap it also retires each older pin (open,
 *   five increments, unlink): with 0, 1 and 10 older pins.
 *
 * Nothing of this is on a reader's fast path (`load` is unchanged).
 *
 *   npx tsc -p . && node dist/bench/page-pins.js
 *
 * Prints a table and writes bench/results/page-pins.json.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GenerationPage } from '../src/generations/page.js';
import { type BenchOptions, type BenchResult, runWhenMain } from './lib/suite.js';
import { printTable } from './lib/table.js';

const ROUNDS = 7;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

/** Microseconds per call of `op`, median of ROUNDS rounds of `ops` calls (one untimed round first). */
function time(ops: number, op: (i: number) => void, before?: () => void): number[] {
  const rounds: number[] = [];
  for (let round = -1; round < ROUNDS; round++) {
    let total = 0n;
    for (let i = 0; i < ops; i++) {
      before?.();
      const start = process.hrtime.bigint();
      op(i);
      total += process.hrtime.bigint() - start;
    }
    if (round >= 0) rounds.push(Number(total) / ops / 1000);
  }
  return rounds;
}

export async function run(options: BenchOptions): Promise<BenchResult> {
  const started = Date.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'token-shadow-pins-'));
  const file = path.join(dir, 'shmem', 'config-versions');
  const ops = options.full ? 2000 : 500;
  const rows: Array<[string, number[]]> = [];
  try {
    GenerationPage.open(file, { mkdir: true }).close();
    rows.push([
      'open + close, not pinned',
      time(ops, () => GenerationPage.open(file, { pin: false }).close()),
    ]);
    rows.push(['open + close, pinned', time(ops, () => GenerationPage.open(file).close())]);
    const writer = GenerationPage.open(file);
    rows.push(['prepareWrite, no older pin', time(ops, () => writer.prepareWrite())]);
    for (const older of [1, 10]) {
      // Each round: `older` readers' pages left behind by as many swaps (cp -p && mv).
      const stale: GenerationPage[] = [];
      const swap = () => {
        for (const page of stale.splice(0)) page.close();
        for (let i = 0; i < older; i++) {
          stale.push(GenerationPage.open(file)); // a reader of the page at the path
          const fresh = `${file}.new`;
          GenerationPage.open(fresh, { pin: false }).close();
          renameSync(fresh, file);
        }
      };
      rows.push([
        `prepareWrite after swaps, ${older} older pin${older === 1 ? '' : 's'}`,
        time(Math.max(20, ops / 10), () => writer.prepareWrite(), swap),
      ]);
      for (const page of stale.splice(0)) page.close();
    }
    writer.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const headers = ['operation', 'median us', 'min us', 'max us'];
  const table = printTable(
    `Pinning the generation page, median of ${ROUNDS} rounds (nproc ${os.availableParallelism()}, node ${process.version})`,
    headers,
    rows.map(([name, us]) => [
      name,
      median(us).toFixed(1),
      Math.min(...us).toFixed(1),
      Math.max(...us).toFixed(1),
    ]),
  );
  mkdirSync(options.outDir, { recursive: true });
  const data = {
    benchmark: 'page-pins',
    date: new Date().toISOString(),
    params: { ops, rounds: ROUNDS },
    results: rows.map(([name, us]) => ({ name, us, medianUs: median(us) })),
    table,
    durationMs: Date.now() - started,
  };
  writeFileSync(path.join(options.outDir, 'page-pins.json'), `${JSON.stringify(data, null, 2)}\n`);
  return { name: 'page-pins', markdown: [table], targets: [], data };
}

await runWhenMain(import.meta.url, run);
