/** Small helpers shared by the benchmarks: medians, percentiles, machine line, JSON output. */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function median(values: number[]): number {
  return percentile(values, 50);
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

/** ns per call of `fn`, median over `rounds` rounds of `ops` calls after one warm-up round. */
export function nsPerOp(fn: (i: number) => unknown, ops: number, rounds = 7): number {
  const samples: number[] = [];
  for (let r = -1; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < ops; i++) fn(i);
    const ns = Number(process.hrtime.bigint() - start) / ops;
    if (r >= 0) samples.push(ns);
  }
  return median(samples);
}

export function machineLine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  return `${os.availableParallelism()} cores, ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, ${os.type()} ${os.release()}`;
}

const resultsDir = fileURLToPath(new URL('../../../bench/results/', import.meta.url));

/** Writes bench/results/<name>.json (the source tree, not dist/). */
export function writeResults(name: string, data: unknown): string {
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}
