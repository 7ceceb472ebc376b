/**
 * Child processes of the benchmarks: every one is tracked, so that whatever
 * happens (an exception, Ctrl-C, the suite's watchdog) none outlives the
 * benchmark. Children that speak JSON lines on stdin/stdout get a small
 * channel: `next()` resolves with each line in order, `send()` writes one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

const live = new Set<ChildProcess>();
/** Processes we did not spawn ourselves but must end (cluster workers of a daemon we started). */
const extraPids = new Set<number>();

export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

export function trackPid(pid: number): void {
  extraPids.add(pid);
}

export function untrackPid(pid: number): void {
  extraPids.delete(pid);
}

/** Kills every tracked process still running, by its id. */
export function killTracked(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const child of live) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, signal);
      } catch {
        // already gone
      }
    }
  }
  for (const pid of extraPids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
  extraPids.clear();
}

const tempDirs = new Set<string>();

/** A new directory under the system's temp dir, removed by removeTempDir or at exit at the latest. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** Leaves `dir` in place at exit (a failed run's logs). */
export function keepTempDir(dir: string): void {
  tempDirs.delete(dir);
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

process.once('exit', () => {
  killTracked();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

// One copy of the child helpers for the tests and the benchmarks: the harness's.
export { alive, exited, stopChild } from '../../harness/daemons.js';

import { exited } from '../../harness/daemons.js';

export interface Channel {
  child: ChildProcess;
  /** The next stdout line parsed as JSON ('ready' and other plain words come back as strings). */
  next(): Promise<unknown>;
  send(message: unknown): void;
  stderr(): string;
  /** Ends stdin, waits up to `graceMs` for the exit, then kills. */
  close(graceMs?: number): Promise<void>;
}

/** Starts `node [execArgv] script ...args`, speaking JSON lines. */
export function spawnChannel(
  script: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; execArgv?: string[] } = {},
): Channel {
  const child = track(
    spawn(process.execPath, [...(options.execArgv ?? []), script, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env },
    }),
  );
  let err = '';
  child.stderr?.on('data', (d) => {
    err = (err + d).slice(-8192);
  });
  const lines: string[] = [];
  const waiters: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  const parse = (line: string): unknown => {
    try {
      return JSON.parse(line);
    } catch {
      return line;
    }
  };
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const waiter = waiters.shift();
    if (waiter) waiter.resolve(parse(line));
    else lines.push(line);
  });
  // A child that died makes writes fail with EPIPE: its exit is reported through next().
  child.stdin?.on('error', () => undefined);
  // 'close' (not 'exit'): stdout is drained by then, so no last line is lost.
  let closed = false;
  child.once('close', (code, signal) => {
    closed = true;
    for (const w of waiters.splice(0)) {
      w.reject(new Error(`child ${script} exited (${code ?? signal}): ${err.trim()}`));
    }
  });
  return {
    child,
    next() {
      const line = lines.shift();
      if (line !== undefined) return Promise.resolve(parse(line));
      if (closed) return Promise.reject(new Error(`child ${script} has exited: ${err.trim()}`));
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    send(message) {
      child.stdin?.write(`${typeof message === 'string' ? message : JSON.stringify(message)}\n`);
    },
    stderr: () => err,
    async close(graceMs = 5000) {
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited(child);
      clearTimeout(timer);
    },
  };
}

/** Reads JSON lines from this process's stdin (child side of a Channel); 'eof' at the end. */
export function stdinLines(): () => Promise<unknown> {
  const values: unknown[] = [];
  const waiters: Array<(v: unknown) => void> = [];
  let ended = false;
  const deliver = (value: unknown) => {
    const waiter = waiters.shift();
    if (waiter) waiter(value);
    else values.push(value);
  };
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    try {
      deliver(JSON.parse(line));
    } catch {
      deliver(line);
    }
  });
  rl.on('close', () => {
    ended = true;
    for (const waiter of waiters.splice(0)) waiter('eof');
  });
  return () => {
    if (values.length > 0) return Promise.resolve(values.shift());
    if (ended) return Promise.resolve('eof');
    return new Promise((resolve) => waiters.push(resolve));
  };
}

/** Writes one JSON line to stdout (child side of a Channel). */
export function say(message: unknown): void {
  process.stdout.write(`${typeof message === 'string' ? message : JSON.stringify(message)}\n`);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
