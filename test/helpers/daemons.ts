/**
 * Real daemons on a temporary directory: the manager and the API cluster as
 * child processes, waited for through their JSON log lines, plus a small
 * HTTPS client that trusts the deployment's self-signed certificate and opens
 * a new connection per request (so the cluster spreads them over workers).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { RpcClient } from '../../src/daemon/rpc.js';

const daemonDir = fileURLToPath(new URL('../../src/daemon/', import.meta.url));

export interface LogWatcher {
  /** Resolves with the first line (parsed) matching, from now on or already seen. */
  waitFor(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  lines: Array<Record<string, unknown>>;
}

function watch(child: ChildProcess): LogWatcher {
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{
    match: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text);
    } catch {
      return;
    }
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  return {
    lines,
    waitFor(match) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ match, resolve });
        child.once('exit', (code) => reject(new Error(`daemon exited (${code})`)));
      });
    },
  };
}

export interface Daemons {
  dir: string;
  url: string;
  ca: Buffer;
  manager: ChildProcess;
  api: ChildProcess;
  apiLog: LogWatcher;
  managerLog: LogWatcher;
  /** A mutation as root@pam over the manager's socket (bootstrapping tokens). */
  asRoot(op: string, params: Record<string, unknown>): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startDaemons(dir: string, apiArgs: string[] = []): Promise<Daemons> {
  const common = ['--config-dir', path.join(dir, 'etc'), '--runtime-dir', path.join(dir, 'run')];
  const env = { ...process.env, LOG_LEVEL: 'info' };
  const manager = spawn(process.execPath, [path.join(daemonDir, 'manager.js'), ...common], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
  });
  const managerLog = watch(manager);
  await managerLog.waitFor((l) => l.msg === 'manager ready');
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
      '0',
      '--workers',
      '2',
      '--hash-threads',
      '1',
      ...apiArgs,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env },
  );
  const apiLog = watch(api);
  const ready = await apiLog.waitFor((l) => l.msg === 'api ready');
  const rpc = new RpcClient(path.join(dir, 'run', 'manager.sock'));
  const exited = (child: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
  return {
    dir,
    url: String(ready.url),
    ca: readFileSync(path.join(dir, 'etc', 'api-ssl.pem')),
    manager,
    api,
    apiLog,
    managerLog,
    async asRoot(op, params) {
      return (await rpc.call(op, 'root@pam', params)) as unknown as Record<string, unknown>;
    },
    async stop() {
      rpc.close();
      api.kill('SIGTERM');
      await exited(api);
      manager.kill('SIGTERM');
      await exited(manager);
    },
  };
}

export interface Reply {
  status: number;
  body: { data?: unknown; errors?: Record<string, string>; message?: string };
  raw: string;
}

/** One HTTPS request on a new connection. `form` is sent form-urlencoded, as PVE clients do. */
export function call(
  d: Daemons,
  method: string,
  route: string,
  options: { auth?: string; form?: Record<string, string | number> } = {},
): Promise<Reply> {
  const body = options.form
    ? new URLSearchParams(Object.entries(options.form).map(([k, v]) => [k, String(v)])).toString()
    : undefined;
  const url = new URL(`${d.url}${route}`);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: d.ca,
        agent: false,
        headers: {
          ...(options.auth ? { authorization: options.auth } : {}),
          ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        },
      },
      (res) => {
        let raw = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          raw += d;
        });
        res.on('end', () => {
          let parsed: Reply['body'] = {};
          try {
            parsed = JSON.parse(raw);
          } catch {
            // leave empty: the test asserts on raw
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, raw });
        });
      },
    );
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

export function pveHeader(tokenid: string, secret: string): string {
  return `PVEAPIToken=${tokenid}=${secret}`;
}
