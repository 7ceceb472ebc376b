/**
 * The one harness for real daemons, used by the tests and the benchmarks: a
 * manager on a temporary directory (etc/ and run/ below it) and any number of
 * API clusters against it, as child processes, each waited for through its
 * JSON log lines. Logs are either read from pipes as they come (tests: every
 * line is kept, stderr too, for assertions) or written to files and read only
 * when waited on (benchmarks: no CPU spent on logs while a load runs).
 *
 * Also a small HTTPS client that trusts the deployment's self-signed
 * certificate and opens a new connection per request (so the cluster spreads
 * them over its workers).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { RpcClient, type RpcResponse } from '../src/daemon/rpc.js';
import { rootCredential } from '../src/service/bootstrap.js';
import { freePorts } from './ports.js';

const daemonDir = fileURLToPath(new URL('../src/daemon/', import.meta.url));

export type LogLine = Record<string, unknown>;

export interface LogWatcher {
  /** Resolves with the first line (parsed) matching, from now on or already seen. */
  waitFor(match: (line: LogLine) => boolean): Promise<LogLine>;
  /** The JSON lines seen so far (with file logs: read when asked). */
  readonly lines: LogLine[];
}

/** Where the benchmarks keep count of their children, so that none outlives them. */
export interface ChildTracker {
  child(child: ChildProcess): void;
  pid(pid: number): void;
  forget(pid: number): void;
}

export interface HarnessOptions {
  /** 'pipe' (default): read as they come; 'file': to <dir>/log/, read when waited on. */
  logs?: 'pipe' | 'file';
  /** Added to the daemons' environment. */
  env?: Record<string, string>;
  /** Every text line of every daemon, stdout and stderr, `name: text`, in arrival order (pipe logs). */
  transcript?: string[];
  /** A working directory per daemon (`cwd-<name>` below the directory), e.g. for heap snapshots. */
  ownDirectories?: boolean;
  track?: ChildTracker;
  /** A command the daemons run under, e.g. `ip netns exec <ns>` (it must exec, keeping the pid). */
  prefix?: string[];
  /** A command for one daemon only (`manager`, or an API's name), after `prefix`: setpriv as its unit restricts it. */
  prefixOf?: (name: string) => string[];
  /** Run the daemons from this package root (a copy every user can read) instead of the checkout. */
  packageRoot?: string;
  /** Added to the manager's command line. */
  managerArgs?: string[];
}

/** Resolves when `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child is gone. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited(child);
  clearTimeout(timer);
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function parse(text: string): LogLine | null {
  try {
    const line = JSON.parse(text) as unknown;
    return typeof line === 'object' && line !== null ? (line as LogLine) : null;
  } catch {
    return null;
  }
}

/** Reads the child's pipes line by line; waiters are told as soon as their line arrives. */
export function pipeLog(
  child: ChildProcess,
  name: string,
  transcript: string[] | undefined,
): LogWatcher {
  const lines: LogLine[] = [];
  const waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
    transcript?.push(`${name}: ${text}`);
    const line = parse(text);
    if (line === null) return;
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (waiter.match(line)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  });
  if (transcript === undefined) child.stderr?.pipe(process.stderr);
  else if (child.stderr) {
    createInterface({ input: child.stderr }).on('line', (text) => {
      transcript.push(`${name} (stderr): ${text}`);
    });
  }
  return {
    lines,
    waitFor(match) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ match, resolve });
        child.once('exit', (code) => reject(new Error(`${name} exited (${code})`)));
      });
    },
  };
}

/** A log file read only when asked: polled while waited on, every 25 ms. */
function fileLog(child: ChildProcess, file: string, timeoutMs = 30_000): LogWatcher {
  const read = (): LogLine[] => {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return [];
    }
    return text.split('\n').flatMap((t): LogLine[] => {
      const line = parse(t);
      return line === null ? [] : [line];
    });
  };
  const tail = () => {
    try {
      return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  };
  return {
    get lines() {
      return read();
    },
    async waitFor(match) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = read().find(match);
        if (line) return line;
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`daemon exited before the line waited for:\n${tail()}`);
        }
        if (Date.now() > deadline)
          throw new Error(`no such line within ${timeoutMs} ms:\n${tail()}`);
        await delay(25);
      }
    },
  };
}

export interface Api {
  name: string;
  /** https://127.0.0.1:<port>/api2/json (http:// with --plain-http). */
  url: string;
  /** The deployment's certificate, to trust. */
  ca: Buffer;
  child: ChildProcess;
  log: LogWatcher;
  metricsPort: number | null;
  primaryPid: number;
  workerPids: number[];
  /** The working directory (with ownDirectories), where heap snapshots land. */
  cwd: string | undefined;
  /** Prometheus text of the primary's aggregated metrics (needs metricsPort). */
  metrics(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

export interface StartApiOptions {
  /** A free loopback port for the metrics endpoint (else none). */
  metrics?: boolean;
  /** HTTPS (default) or plain HTTP on loopback. */
  plainHttp?: boolean;
  /** The address to listen on; null gives no --host, for the daemon's own default. */
  host?: string | null;
}

export interface Deployment {
  dir: string;
  configDir: string;
  runtimeDir: string;
  manager: ChildProcess;
  managerLog: LogWatcher;
  managerCwd: string | undefined;
  /** A mutation as root@pam (a token made on first use) over the manager's socket, its answer as is. */
  asRoot(op: string, params: Record<string, unknown>): Promise<RpcResponse>;
  /** An API cluster on 127.0.0.1 and any free port, with `args` besides. */
  startApi(name: string, args: string[], options?: StartApiOptions): Promise<Api>;
  stop(): Promise<void>;
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

/** Starts the manager on `dir`, as `npm start` would; APIs are started on it with startApi. */
export async function startDeployment(
  dir: string,
  options: HarnessOptions = {},
): Promise<Deployment> {
  const configDir = path.join(dir, 'etc');
  const runtimeDir = path.join(dir, 'run');
  const logDir = path.join(dir, 'log');
  const common = ['--config-dir', configDir, '--runtime-dir', runtimeDir];
  // MALLOC_MMAP_THRESHOLD_ as `npm start` and the units set it (src/daemon/start.ts).
  const env = {
    MALLOC_MMAP_THRESHOLD_: '131072',
    ...process.env,
    LOG_LEVEL: 'info',
    ...options.env,
  };
  let started = 0;

  const spawnDaemon = (script: string, name: string, args: string[]) => {
    const cwd = options.ownDirectories ? path.join(dir, `cwd-${name}`) : undefined;
    if (cwd) mkdirSync(cwd, { recursive: true });
    const spawnOptions = { env, ...(cwd ? { cwd } : {}) };
    const prefix = [...(options.prefix ?? []), ...(options.prefixOf?.(name) ?? [])];
    const command = prefix[0] ?? process.execPath;
    const scripts = options.packageRoot
      ? path.join(options.packageRoot, 'dist', 'src', 'daemon')
      : daemonDir;
    const argv = [
      ...(prefix.length > 0 ? [...prefix.slice(1), process.execPath] : []),
      path.join(scripts, script),
      ...args,
    ];
    let child: ChildProcess;
    let log: LogWatcher;
    if (options.logs === 'file') {
      mkdirSync(logDir, { recursive: true });
      // A new file per start: a restarted API must not find its predecessor's 'api ready' (nor
      // one of an earlier deployment on the same directory: the numbering starts again there).
      const file = path.join(logDir, `${name}-${++started}.log`);
      const fd = openSync(file, 'w');
      try {
        child = spawn(command, argv, { ...spawnOptions, stdio: ['ignore', fd, fd] });
      } finally {
        closeSync(fd);
      }
      log = fileLog(child, file);
    } else {
      child = spawn(command, argv, { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] });
      log = pipeLog(child, name, options.transcript);
    }
    options.track?.child(child);
    return { child, log, cwd };
  };

  const manager = spawnDaemon('manager.js', 'manager', [...common, ...(options.managerArgs ?? [])]);
  const apis: Api[] = [];
  let rpc: RpcClient | null = null;
  const stop = async () => {
    rpc?.close();
    for (const api of apis.splice(0)) await api.stop();
    await stopChild(manager.child);
  };
  try {
    await manager.log.waitFor((l) => l.msg === 'manager ready');
  } catch (error) {
    await stop();
    throw error;
  }
  rpc = new RpcClient(path.join(runtimeDir, 'manager.sock'));
  // The manager takes no identity on trust: a root token, made as tokenctl makes one.
  const rootHeader = rootCredential(configDir, runtimeDir);
  const client = rpc;

  const startApi = async (name: string, args: string[], apiOptions: StartApiOptions = {}) => {
    // A port of its own: the metrics option's 0 means "off".
    const metricsPort = apiOptions.metrics ? ((await freePorts(1))[0] as number) : 0;
    const api = spawnDaemon('api.js', name, [
      ...common,
      ...(apiOptions.plainHttp ? ['--plain-http'] : []),
      ...(apiOptions.host === null ? [] : ['--host', apiOptions.host ?? '127.0.0.1']),
      '--port',
      '0',
      '--metrics-port',
      String(metricsPort),
      ...args,
    ]);
    const workers = () =>
      api.log.lines.filter((l) => l.msg === 'worker listening').map((l) => Number(l.worker));
    const stopApi = async () => {
      const pids = workers();
      await stopChild(api.child);
      // The workers follow the primary; make sure, by their ids.
      for (const pid of pids) {
        for (let i = 0; i < 100 && alive(pid); i++) await delay(20);
        if (alive(pid)) process.kill(pid, 'SIGKILL');
        options.track?.forget(pid);
      }
    };
    let ready: LogLine;
    try {
      ready = await api.log.waitFor((l) => l.msg === 'api ready');
    } catch (error) {
      await stopApi();
      throw error;
    }
    const workerPids = workers();
    for (const pid of workerPids) options.track?.pid(pid);
    const handle: Api = {
      name,
      url: String(ready.url),
      ca: readFileSync(path.join(configDir, 'api-ssl.pem')),
      child: api.child,
      log: api.log,
      metricsPort: metricsPort || null,
      primaryPid: api.child.pid ?? -1,
      workerPids,
      cwd: api.cwd,
      async metrics() {
        if (!metricsPort) throw new Error(`${name} has no metrics port`);
        const reply = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
        if (reply.status !== 200) throw new Error(`metrics: HTTP ${reply.status}`);
        return parseMetrics(await reply.text());
      },
      async stop() {
        const index = apis.indexOf(handle);
        if (index >= 0) apis.splice(index, 1);
        await stopApi();
      },
    };
    apis.push(handle);
    return handle;
  };

  return {
    dir,
    configDir,
    runtimeDir,
    manager: manager.child,
    managerLog: manager.log,
    managerCwd: manager.cwd,
    asRoot: async (op, params) => {
      // The manager authenticates the harness's token itself; a host whose fence has passed
      // (multi-host mode, for the moment its lease is being renewed) refuses every credential:
      // wait for it to trust its copy again, as a client retrying a 503 would.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const reply = await client.call(op, await rootHeader(), params);
        if (reply.ok || reply.status !== 503 || !/fenced/.test(reply.message)) return reply;
        if (Date.now() > deadline) return reply;
        await delay(50);
      }
    },
    startApi,
    stop,
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

/** The tests' usual pair: a manager and an HTTPS API of two workers with one hash thread each. */
export async function startDaemons(
  dir: string,
  apiArgs: string[] = [],
  options: HarnessOptions = {},
): Promise<Daemons> {
  const deployment = await startDeployment(dir, options);
  const api = await deployment
    .startApi('api', ['--workers', '2', '--hash-threads', '1', ...apiArgs])
    .catch(async (error) => {
      await deployment.stop();
      throw error;
    });
  return {
    dir,
    url: api.url,
    ca: api.ca,
    manager: deployment.manager,
    api: api.child,
    apiLog: api.log,
    managerLog: deployment.managerLog,
    asRoot: async (op, params) =>
      (await deployment.asRoot(op, params)) as unknown as Record<string, unknown>,
    stop: () => deployment.stop(),
  };
}

export interface Reply {
  status: number;
  body: { data?: unknown; errors?: Record<string, string>; message?: string };
  raw: string;
}

export interface CallOptions {
  auth?: string;
  /** Sent form-urlencoded, as PVE clients do. */
  form?: Record<string, string | number>;
  /** Sent as a JSON body instead (PVE takes both). */
  json?: unknown;
  /** Keep-alive connections instead of a new one per request. */
  agent?: https.Agent;
  /** The loopback address to connect from (any of 127.0.0.0/8), for source checks. */
  localAddress?: string;
}

/**
 * One HTTPS request (plain HTTP for an http:// URL, an API started with
 * --plain-http), on a new connection closed after the answer unless an agent is given.
 */
export function call(
  d: { url: string; ca: Buffer },
  method: string,
  route: string,
  options: CallOptions = {},
): Promise<Reply> {
  const body = options.form
    ? new URLSearchParams(Object.entries(options.form).map(([k, v]) => [k, String(v)])).toString()
    : options.json === undefined
      ? undefined
      : JSON.stringify(options.json);
  const contentType = options.form ? 'application/x-www-form-urlencoded' : 'application/json';
  return new Promise((resolve, reject) => {
    const url = new URL(`${d.url}${route}`);
    const req = (url.protocol === 'http:' ? http : https).request(
      url,
      {
        method,
        ca: d.ca,
        agent: options.agent ?? false,
        ...(options.localAddress ? { localAddress: options.localAddress } : {}),
        headers: {
          ...(options.auth ? { authorization: options.auth } : {}),
          ...(body ? { 'content-type': contentType } : {}),
        },
      },
      (res) => {
        let raw = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          raw += chunk;
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
