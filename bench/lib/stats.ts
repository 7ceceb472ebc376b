/** Small helpers shared by the benchmarks: medians, percentiles, machine line, JSON output. */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The middle value; the mean of the two middle ones for an even count. */
export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
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

export interface Summary {
  count: number;
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

/** Count, median, p99, mean and maximum of `values` (NaN when empty). */
export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  const at = (p: number) =>
    n === 0
      ? Number.NaN
      : (sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))] ?? 0);
  let sum = 0;
  for (const v of sorted) sum += v;
  return { count: n, p50: at(50), p99: at(99), mean: n ? sum / n : Number.NaN, max: at(100) };
}

/** A fixed number of significant-looking decimals for tables: 1234 -> '1234', 1.234 -> '1.23'. */
export function fmt(value: number, digits = 3): string {
  if (!Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs >= 100 || Number.isInteger(value)) return value.toFixed(0);
  const decimals = Math.max(0, digits - Math.max(1, Math.floor(Math.log10(abs || 1)) + 1));
  return value.toFixed(decimals);
}

export function machineLine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  return `${os.availableParallelism()} cores, ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, ${os.type()} ${os.release()}`;
}

/** bench/results in the source tree (not dist/): full runs and standalone runs write here. */
export const resultsDir = fileURLToPath(new URL('../../../bench/results/', import.meta.url));

/** Writes <dir>/<name>.json, by default bench/results/<name>.json. */
export function writeResults(name: string, data: unknown, dir = resultsDir): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** What every result file starts with: where, when and how long the run was. */
export function stamp(options: { full: boolean }) {
  return {
    machine: machineLine(),
    date: new Date().toISOString(),
    mode: options.full ? 'full' : 'quick',
  };
}
