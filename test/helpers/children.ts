/**
 * Real child processes for multi-process tests. A child prints "ready" once set
 * up, waits for "go" on stdin, works, prints one JSON line and exits. Starting
 * them all on one "go" makes the race real without sleeping.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export function fixture(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}.js`, import.meta.url));
}

export interface Child {
  process: ChildProcess;
  /** Resolves with each stdout line, in order. */
  nextLine(): Promise<string>;
  stderr(): string;
}

export interface ChildOptions {
  /** A command the child runs under, e.g. setpriv's arguments. */
  prefix?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** The node binary (default: this process's). */
  node?: string;
}

export function startChild(script: string, args: string[], options: ChildOptions = {}): Child {
  const prefix = options.prefix ?? [];
  const node = options.node ?? process.execPath;
  const command = prefix.length > 0 ? (prefix[0] as string) : node;
  const argv = [...prefix.slice(1), ...(prefix.length > 0 ? [node] : []), script, ...args];
  const proc = spawn(command, argv, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  const lines: string[] = [];
  const waiters: Array<(line: string) => void> = [];
  let err = '';
  proc.stderr?.on('data', (d) => {
    err += d;
  });
  const rl = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
  rl.on('line', (line) => {
    const waiter = waiters.shift();
    if (waiter) waiter(line);
    else lines.push(line);
  });
  // 'close', not 'exit': 'exit' can come before the last stdout line has been read.
  const exited = once(proc, 'close');
  return {
    process: proc,
    nextLine() {
      const line = lines.shift();
      if (line !== undefined) return Promise.resolve(line);
      return new Promise<string>((resolve, reject) => {
        waiters.push(resolve);
        exited.then(([code]) => reject(new Error(`child exited (${code}) before a line: ${err}`)));
      });
    },
    stderr: () => err,
  };
}

/** Starts `count` children, waits until all are ready, then says go to all. */
export async function raceChildren(
  count: number,
  script: string,
  args: (i: number) => string[],
): Promise<unknown[]> {
  const children = Array.from({ length: count }, (_, i) => startChild(script, args(i)));
  for (const child of children) {
    const line = await child.nextLine();
    if (line !== 'ready') throw new Error(`unexpected line ${line}: ${child.stderr()}`);
  }
  for (const child of children) child.process.stdin?.write('go\n');
  const results: unknown[] = [];
  for (const child of children) {
    results.push(JSON.parse(await child.nextLine()));
    child.process.stdin?.end();
  }
  return results;
}

/** Runs a child to completion and returns its exit code and output. */
export async function runChild(
  script: string,
  args: string[],
  options: ChildOptions = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = startChild(script, args, options);
  child.process.stdin?.end();
  let stdout = '';
  child.process.stdout?.on('data', (d) => {
    stdout += d;
  });
  const [code] = await once(child.process, 'close');
  return { code: code as number | null, stdout, stderr: child.stderr() };
}
