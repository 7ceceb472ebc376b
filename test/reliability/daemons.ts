/**
 * The real daemons for the secrets test, like test/helpers/daemons.ts but with
 * everything a leak could hide in kept: every stdout and stderr line of both
 * daemons, a metrics port, and --heapsnapshot-signal so that a heap snapshot
 * of any process (primary, worker, manager) can be asked for with SIGUSR2.
 * Each daemon runs in its own working directory, where its snapshots land.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, watch } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { RpcClient } from '../../src/daemon/rpc.js';

const daemonDir = fileURLToPath(new URL('../../src/daemon/', import.meta.url));

export interface Logged {
  /** Every line either daemon wrote, stdout and stderr, in arrival order. */
  lines: string[];
  waitFor(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

function collect(child: ChildProcess, name: string, into: string[]): Logged {
  const waiters: Array<{
    match: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }> = [];
  const parsed: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
    into.push(`${name}: ${text}`);
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text);
    } catch {
      return;
    }
    parsed.push(line);
    for (const w of [...waiters]) {
      if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (text) => {
    into.push(`${name} (stderr): ${text}`);
  });
  return {
    lines: into,
    waitFor(match) {
      const seen = parsed.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ match, resolve });
        child.once('exit', (code) => reject(new Error(`${name} exited (${code})`)));
      });
    },
  };
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  server.close();
  await once(server, 'close');
  return port;
}

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
  const etc = path.join(dir, 'etc');
  const run = path.join(dir, 'run');
  const managerDir = path.join(dir, 'cwd-manager');
  const apiDir = path.join(dir, 'cwd-api');
  mkdirSync(managerDir);
  mkdirSync(apiDir);
  const common = ['--config-dir', etc, '--runtime-dir', run];
  const env = {
    ...process.env,
    LOG_LEVEL: 'trace',
    NODE_OPTIONS: '--heapsnapshot-signal=SIGUSR2',
    UV_THREADPOOL_SIZE: '4',
  };
  const lines: string[] = [];
  const manager = spawn(process.execPath, [path.join(daemonDir, 'manager.js'), ...common], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
    cwd: managerDir,
  });
  const managerLog = collect(manager, 'manager', lines);
  await managerLog.waitFor((l) => l.msg === 'manager ready');
  const metricsPort = await freePort();
  const api = spawn(
    process.execPath,
    [
      path.join(daemonDir, 'api.js'),
      ...common,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--metrics-port',
      String(metricsPort),
      '--workers',
      '1',
      '--hash-threads',
      '1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: apiDir },
  );
  const apiLog = collect(api, 'api', lines);
  const ready = await apiLog.waitFor((l) => l.msg === 'api ready');
  const worker = await apiLog.waitFor((l) => l.msg === 'worker listening');
  const rpc = new RpcClient(path.join(run, 'manager.sock'));
  const exited = (child: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  return {
    url: String(ready.url),
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    ca: readFileSync(path.join(etc, 'api-ssl.pem')),
    manager,
    api,
    workerPids: [Number(worker.worker)],
    managerDir,
    apiDir,
    lines,
    async asRoot(op, params) {
      return (await rpc.call(op, 'root@pam', params)) as unknown as Record<string, unknown>;
    },
    async stop() {
      rpc.close();
      for (const child of [api, manager]) {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        await exited(child);
      }
    },
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
export function request(
  d: SnapshotDaemons,
  method: string,
  route: string,
  auth?: string,
  form?: Record<string, string>,
  agent?: https.Agent,
): Promise<Reply> {
  const body = form ? new URLSearchParams(form).toString() : undefined;
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(`${d.url}${route}`),
      {
        method,
        ca: d.ca,
        agent: agent ?? false,
        headers: {
          ...(auth ? { authorization: auth } : {}),
          ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        },
      },
      (res) => {
        let raw = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          raw += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, raw }));
      },
    );
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

/** GET over plain HTTP (the metrics endpoint). */
export async function fetchText(url: string): Promise<string> {
  const res = await fetch(url);
  return res.text();
}
