/**
 * The real daemons on a temporary directory, for the HTTP benchmarks: one
 * manager and any number of API clusters against the same configuration, all
 * on loopback in plain-HTTP mode. Logs go to files in the directory (not to
 * pipes), so the benchmark process spends no CPU reading them while a load
 * runs; the 'api ready' and 'worker listening' lines are found by polling.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RpcClient } from '../../src/daemon/rpc.js';
import { alive, sleep, stopChild, track, trackPid, untrackPid } from './children.js';

const daemonDir = fileURLToPath(new URL('../../src/daemon/', import.meta.url));

export interface Api {
  name: string;
  /** http://127.0.0.1:<port>/api2/json */
  url: string;
  metricsPort: number | null;
  primaryPid: number;
  workerPids: number[];
  logPath: string;
  /** Prometheus text of the primary's aggregated metrics (needs metricsPort). */
  metrics(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

export interface Deployment {
  dir: string;
  configDir: string;
  runtimeDir: string;
  manager: ChildProcess;
  /** A mutation as root@pam over the manager's socket; throws unless it succeeded. */
  asRoot(op: string, params: Record<string, unknown>): Promise<Record<string, unknown>>;
  startApi(name: string, args: string[], options?: { metrics?: boolean }): Promise<Api>;
  stop(): Promise<void>;
}

type LogLine = Record<string, unknown>;

/** Log lines matching `match`, read from the file (only lines mentioning `hint` are parsed). */
function logLines(file: string, hint: string, match: (l: LogLine) => boolean): LogLine[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const found: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes(hint)) continue;
    try {
      const parsed = JSON.parse(line) as LogLine;
      if (match(parsed)) found.push(parsed);
    } catch {
      // not JSON
    }
  }
  return found;
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
}

/** Polls the log until a line with `msg` appears; fails when the child exits or after `timeoutMs`. */
async function waitForLog(
  child: ChildProcess,
  file: string,
  msg: string,
  timeoutMs = 30_000,
): Promise<LogLine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [line] = logLines(file, msg, (l) => l.msg === msg);
    if (line) return line;
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`daemon exited before '${msg}':\n${tail(file)}`);
    }
    if (Date.now() > deadline)
      throw new Error(`no '${msg}' within ${timeoutMs} ms:\n${tail(file)}`);
    await sleep(25);
  }
}

function spawnDaemon(script: string, args: string[], logPath: string): ChildProcess {
  const fd = openSync(logPath, 'a');
  try {
    return track(
      spawn(process.execPath, [path.join(daemonDir, script), ...args], {
        stdio: ['ignore', fd, fd],
        env: { ...process.env, LOG_LEVEL: 'info', UV_THREADPOOL_SIZE: '4' },
      }),
    );
  } finally {
    closeSync(fd);
  }
}

/** A free TCP port on loopback (for the metrics endpoint, whose 0 means "off"). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** GET over plain HTTP on loopback, body as text. */
export function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** Prometheus text format -> 'name{labels}' -> value (comments skipped). */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

/** Starts the manager on `dir` (etc/ and run/ below it), as `npm start` would. */
export async function startDeployment(dir: string): Promise<Deployment> {
  const configDir = path.join(dir, 'etc');
  const runtimeDir = path.join(dir, 'run');
  const logDir = path.join(dir, 'log');
  mkdirSync(logDir, { recursive: true });
  const common = ['--config-dir', configDir, '--runtime-dir', runtimeDir];
  const managerLog = path.join(logDir, 'manager.log');
  const manager = spawnDaemon('manager.js', common, managerLog);
  const apis: Api[] = [];
  let started = 0;
  let rpc: RpcClient | null = null;
  const stop = async () => {
    rpc?.close();
    for (const api of apis.splice(0)) await api.stop();
    await stopChild(manager);
  };
  try {
    await waitForLog(manager, managerLog, 'manager ready');
  } catch (error) {
    await stop();
    throw error;
  }
  rpc = new RpcClient(path.join(runtimeDir, 'manager.sock'));
  const client = rpc;

  return {
    dir,
    configDir,
    runtimeDir,
    manager,
    async asRoot(op, params) {
      const reply = await client.call(op, 'root@pam', params);
      if (!reply.ok) throw new Error(`${op} failed: ${reply.status} ${reply.message}`);
      return reply as unknown as Record<string, unknown>;
    },
    async startApi(name, args, options = {}) {
      const metricsPort = options.metrics ? await freePort() : 0;
      // A new file per start: a restarted API must not find its predecessor's 'api ready'.
      const logPath = path.join(logDir, `${name}-${++started}.log`);
      const child = spawnDaemon(
        'api.js',
        [
          ...common,
          '--plain-http',
          '--host',
          '127.0.0.1',
          '--port',
          '0',
          '--metrics-port',
          String(metricsPort),
          ...args,
        ],
        logPath,
      );
      const stopApi = async () => {
        const workers = logLines(logPath, 'worker listening', (l) => l.msg === 'worker listening');
        await stopChild(child);
        // The workers follow the primary; make sure, by their ids.
        for (const w of workers) {
          const pid = Number(w.worker);
          for (let i = 0; i < 100 && alive(pid); i++) await sleep(20);
          if (alive(pid)) process.kill(pid, 'SIGKILL');
          untrackPid(pid);
        }
      };
      let ready: LogLine;
      try {
        ready = await waitForLog(child, logPath, 'api ready');
      } catch (error) {
        await stopApi();
        throw error;
      }
      const workerPids = logLines(
        logPath,
        'worker listening',
        (l) => l.msg === 'worker listening',
      ).map((l) => Number(l.worker));
      for (const pid of workerPids) trackPid(pid);
      const api: Api = {
        name,
        url: String(ready.url),
        metricsPort: metricsPort || null,
        primaryPid: child.pid ?? -1,
        workerPids,
        logPath,
        async metrics() {
          if (!metricsPort) throw new Error(`${name} has no metrics port`);
          const reply = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`);
          if (reply.status !== 200) throw new Error(`metrics: HTTP ${reply.status}`);
          return parseMetrics(reply.body);
        },
        async stop() {
          const index = apis.indexOf(api);
          if (index >= 0) apis.splice(index, 1);
          await stopApi();
        },
      };
      apis.push(api);
      return api;
    },
    stop,
  };
}
