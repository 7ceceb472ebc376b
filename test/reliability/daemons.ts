/**
 * The real daemons for the secrets test, on the one harness
 * (harness/daemons.ts) with everything a leak could hide in kept: every
 * stdout and stderr line of both daemons, a metrics port, and
 * --heapsnapshot-signal so that a heap snapshot of any process (primary,
 * worker, manager) can be asked for with SIGUSR2. Each daemon runs in its own
 * working directory, where its snapshots land.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, watch } from 'node:fs';
import type https from 'node:https';
import path from 'node:path';
import { call, startDeployment } from '../../harness/daemons.js';

export interface SnapshotDaemons {
  url: string;
  metricsUrl: string;
  ca: Buffer;
  manager: ChildProcess;
  api: ChildProcess;
  workerPids: number[];
  managerDir: string;
  apiDir: string;
  /** Every log line of both daemons so far. */
  lines: string[];
  asRoot(op: string, params: Record<string, unknown>): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startSnapshotDaemons(dir: string): Promise<SnapshotDaemons> {
  const lines: string[] = [];
  const deployment = await startDeployment(dir, {
    transcript: lines,
    ownDirectories: true,
    env: {
      LOG_LEVEL: 'trace',
      NODE_OPTIONS: '--heapsnapshot-signal=SIGUSR2',
      UV_THREADPOOL_SIZE: '4',
    },
  });
  const api = await deployment.startApi('api', ['--workers', '1', '--hash-threads', '1'], {
    metrics: true,
  });
  return {
    url: api.url,
    metricsUrl: `http://127.0.0.1:${api.metricsPort}/metrics`,
    ca: api.ca,
    manager: deployment.manager,
    api: api.child,
    workerPids: api.workerPids,
    managerDir: deployment.managerCwd as string,
    apiDir: api.cwd as string,
    lines,
    asRoot: async (op, params) =>
      (await deployment.asRoot(op, params)) as unknown as Record<string, unknown>,
    stop: () => deployment.stop(),
  };
}

/**
 * Asks process `pid` for a heap snapshot (SIGUSR2 with --heapsnapshot-signal)
 * and resolves with its path once it is complete: the file is written
 * synchronously on the process's JS thread, so a reply to `ping`, sent after the
 * file appeared, can only come after the last byte was written.
 */
export async function heapSnapshot(
  pid: number,
  cwd: string,
  ping: () => Promise<unknown>,
): Promise<string> {
  const mine = (name: string) => name.endsWith('.heapsnapshot') && name.includes(`.${pid}.`);
  const before = new Set(readdirSync(cwd).filter(mine));
  const watcher = watch(cwd);
  try {
    const appeared = new Promise<string>((resolve) => {
      const look = () => {
        const fresh = readdirSync(cwd).find((name) => mine(name) && !before.has(name));
        if (fresh) resolve(path.join(cwd, fresh));
      };
      watcher.on('change', look);
      look();
    });
    process.kill(pid, 'SIGUSR2');
    const file = await appeared;
    await ping();
    return file;
  } finally {
    watcher.close();
  }
}

export interface Reply {
  status: number;
  raw: string;
}

/** One HTTPS request, on a new connection closed after the answer unless an agent is given. */
export async function request(
  d: SnapshotDaemons,
  method: string,
  route: string,
  auth?: string,
  form?: Record<string, string>,
  agent?: https.Agent,
): Promise<Reply> {
  const reply = await call(d, method, route, {
    ...(auth ? { auth } : {}),
    ...(form ? { form } : {}),
    ...(agent ? { agent } : {}),
  });
  return { status: reply.status, raw: reply.raw };
}

/** GET over plain HTTP (the metrics endpoint). */
export async function fetchText(url: string): Promise<string> {
  const res = await fetch(url);
  return res.text();
}
