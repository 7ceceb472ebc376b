/**
 * Shared pieces of the reliability tests: the quick/long switch, a seeded
 * PRNG, child processes read line by line, and the statistics the timing test
 * reports. Nothing here sleeps to synchronise.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** `npm run test:reliability` sets RELIABILITY_LONG=1; `npm test` runs the quick versions. */
export const LONG = process.env.RELIABILITY_LONG === '1';

export function pick<T>(quick: T, long: T): T {
  return LONG ? long : quick;
}

/** Cheap argon2 parameters for children that only exercise files and locks. */
export const FAST_ARGON2 = { memoryCost: 512, timeCost: 1 };

/** mulberry32: a tiny deterministic PRNG, so a failing run can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomInt(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

export function newSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}

export interface LineChild {
  process: ChildProcess;
  pid: number;
  /** Resolves after exit AND after stdout/stderr were read to the end (every line delivered). */
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  send(value: unknown): void;
  /** Kills the child if still running (SIGKILL) and waits for `closed`. */
  kill(): Promise<void>;
}

/**
 * Spawns `node script ...args`, calling `onLine` for every stdout line in
 * order, including lines still in the pipe when the child was killed.
 */
export function spawnLines(
  script: string,
  args: string[],
  onLine: (line: string) => void,
  options: { env?: NodeJS.ProcessEnv; cwd?: string; nodeArgs?: string[] } = {},
): LineChild {
  const proc = spawn(process.execPath, [...(options.nodeArgs ?? []), script, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  let err = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (d: string) => {
    err += d;
  });
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', onLine);
  proc.stdin?.on('error', () => undefined);
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    process: proc,
    pid: proc.pid ?? -1,
    closed,
    stderr: () => err,
    send(value) {
      proc.stdin?.write(`${JSON.stringify(value)}\n`);
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await closed;
    },
  };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

export interface KsResult {
  /** sup |F_a(x) - F_b(x)| over the pooled sample. */
  d: number;
  /** 1.36 * sqrt((n + m) / (n * m)): D above it rejects "same distribution" at alpha = 0.05. */
  critical: number;
  /** Asymptotic p-value (Kolmogorov distribution, with Stephens' small-sample correction). */
  p: number;
}

/** The two-sample Kolmogorov-Smirnov statistic. */
export function kolmogorovSmirnov(a: readonly number[], b: readonly number[]): KsResult {
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  const n = x.length;
  const m = y.length;
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < n && j < m) {
    const value = Math.min(x[i] as number, y[j] as number);
    while (i < n && (x[i] as number) <= value) i++;
    while (j < m && (y[j] as number) <= value) j++;
    d = Math.max(d, Math.abs(i / n - j / m));
  }
  const ne = (n * m) / (n + m);
  const lambda = (Math.sqrt(ne) + 0.12 + 0.11 / Math.sqrt(ne)) * d;
  let p = 0;
  for (let k = 1; k <= 100; k++) p += 2 * (-1) ** (k - 1) * Math.exp(-2 * k * k * lambda * lambda);
  return { d, critical: 1.36 * Math.sqrt((n + m) / (n * m)), p: Math.min(1, Math.max(0, p)) };
}

/** Prints a block of figures so that node:test shows it, prefixed for grepping. */
export function report(title: string, lines: string[]): void {
  console.log([`[reliability] ${title}`, ...lines.map((l) => `  ${l}`)].join('\n'));
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
