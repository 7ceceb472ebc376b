/**
 * One API worker: a fastify server (HTTPS, or plain HTTP on loopback when
 * asked) with the routes, its own deployment view and a connection to the
 * manager. Closing drains without dropping a request (see drain()).
 */
import { X509Certificate } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import { setPriority } from 'node:os';
import formbody from '@fastify/formbody';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import { Authenticator } from '../http/authenticate.js';
import { ClientAddresses, SourcePenalties } from '../http/source-penalties.js';
import { openDeployment } from '../service/deployment.js';
import type { Settings } from '../service/settings.js';
import { registerConsole } from './console.js';
import { shareWithHost } from './host-penalties.js';
import type { Logger } from './logger.js';
import { registerWorkerMetrics } from './metrics.js';
import { policyEventReporter } from './policy-events.js';
import { registerRoutes } from './routes/index.js';
import { RpcClient } from './rpc.js';
import { startWorkerUsage } from './usage.js';

export interface WorkerOptions {
  publicVersion?: boolean;
  /** The web console at `/` (src/daemon/console.ts); on unless false. */
  console?: boolean;
  metrics?: boolean;
  /** The certificate the primary checked; a worker that reads another one refuses to start. */
  certificateFingerprint?: string;
}

/**
 * How long an idle keep-alive connection stays open. Node's default; clients
 * learn it from the Keep-Alive header and stop reusing a connection before
 * it runs out, so a draining worker can wait for idle connections to end by
 * themselves instead of closing them under a request that is on its way.
 */
export const KEEP_ALIVE_TIMEOUT_MS = 5000;
/** Longest a drain waits for connections before closing what is left. */
export const DRAIN_TIMEOUT_MS = 20_000;

export interface RunningWorker {
  app: FastifyInstance;
  port: number;
  close(): Promise<void>;
}

export async function startWorker(
  settings: Settings,
  log: Logger,
  options: WorkerOptions = {},
): Promise<RunningWorker> {
  const deployment = openDeployment(settings, 'worker', { warn: (m) => log.warn(m) });
  await deployment.secrets.warmUp();
  // After the warm-up hash: by now libuv's pool and the hashing threads exist.
  if (settings.hashNice > 0) lowerBackgroundThreads(settings.hashNice, log);
  const rpc = new RpcClient(settings.socketPath, { deadlineMs: settings.rpcDeadlineMs });
  const usage = startWorkerUsage(deployment, rpc, log);
  // Where a request comes from, for allowed-ips and last use: as the penalties decide it.
  const clients = new ClientAddresses(settings.penalties.trustedProxies);
  const auth = new Authenticator({
    users: deployment.users,
    shadow: deployment.secrets,
    usage: usage.notes,
    clientAddress: (request) => {
      const socket = (request as { socket?: { remoteAddress?: string } } | undefined)?.socket;
      if (socket === undefined) return undefined;
      return clients.of(
        socket.remoteAddress,
        (request as IncomingMessage).headers['x-forwarded-for'],
      );
    },
    onPolicyEvent: policyEventReporter(log, rpc),
  });
  const https = settings.plainHttp
    ? null
    : { cert: await readFile(settings.certPath), key: await readFile(settings.keyPath) };
  if (https && options.certificateFingerprint !== undefined) {
    const read = new X509Certificate(https.cert).fingerprint256;
    if (read !== options.certificateFingerprint) {
      throw new Error(`${settings.certPath} changed while the workers were restarting`);
    }
  }
  const app = Fastify({
    loggerInstance: log,
    // No line per request: the metrics count them, and logging would cost more than a cached verify.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    ...(https ? { https } : {}),
  }) as unknown as FastifyInstance;
  await app.register(formbody);
  const penalties =
    settings.penalties.budget > 0
      ? new SourcePenalties({
          budget: settings.penalties.budget,
          decayPerSecond: settings.penalties.decayPerSecond,
          holdMs: settings.penalties.holdMs,
          trustedProxies: settings.penalties.trustedProxies,
          ipv4Prefix: settings.penalties.ipv4Prefix,
          ipv6Prefix: settings.penalties.ipv6Prefix,
        })
      : null;
  // Before listening: budgets are per host, and a new worker starts with what the host knows.
  const unshare = penalties ? await shareWithHost(penalties) : () => undefined;
  const observe =
    options.metrics === false
      ? undefined
      : registerWorkerMetrics(deployment, penalties, usage.notes);
  registerRoutes(app, {
    auth,
    penalties,
    users: deployment.users,
    rpc,
    lastUsed: usage.lookup,
    ...(options.publicVersion ? { publicVersion: true } : {}),
    ...(observe ? { onAuthenticated: observe } : {}),
  });
  if (options.console !== false) await registerConsole(app);
  await app.listen({ host: settings.host, port: settings.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : settings.port;
  const connections = trackConnections(app.server);
  let closing: Promise<void> | null = null;
  return {
    app,
    port,
    close() {
      closing ??= (async () => {
        unshare();
        penalties?.releaseHeld();
        await drain(app.server, connections);
        await app.close();
        await usage.reporter.close(); // the last batch, after the last request
        rpc.close();
        await deployment.close();
      })();
      return closing;
    },
  };
}

/**
 * Gives every thread of this process but the main one the nice value `nice`:
 * libuv's pool (where node-argon2 computes, and where file reads run), the
 * hashing pool's threads and V8's helpers. Under a hashing flood the kernel
 * then runs argon2 on what serving leaves of the cores, instead of sharing
 * them equally (Linux: nice is per thread, and setpriority takes a thread id).
 * Threads started later inherit the main thread's priority.
 */
function lowerBackgroundThreads(nice: number, log: Logger): void {
  let lowered = 0;
  try {
    for (const name of readdirSync('/proc/self/task')) {
      const tid = Number(name);
      if (!Number.isInteger(tid) || tid === process.pid) continue;
      try {
        setPriority(tid, nice);
        lowered++;
      } catch {
        // a thread that just exited, or not permitted: it keeps its priority
      }
    }
  } catch {
    log.warn("cannot list this process's threads (/proc): hashing keeps the priority of serving");
    return;
  }
  log.debug({ threads: lowered, nice }, 'lowered the priority of the background threads');
}

/** The open sockets of `server`, kept up to date. */
function trackConnections(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return sockets;
}

/**
 * Stops taking connections and lets the open ones end by themselves: every
 * response from now on says `Connection: close`, and idle keep-alive
 * connections time out as their clients were told. http.Server.close() would
 * close idle connections at once, racing a request a client is just sending
 * on one; net.Server.close() only stops listening (in a cluster worker: tells
 * the primary to hand this worker no more connections). Resolves when no
 * connection is left, or after DRAIN_TIMEOUT_MS.
 */
function drain(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  server.prependListener('request', (_req, res: { setHeader(n: string, v: string): void }) =>
    res.setHeader('connection', 'close'),
  );
  net.Server.prototype.close.call(server);
  return new Promise((resolve) => {
    const timer = setTimeout(finish, DRAIN_TIMEOUT_MS);
    timer.unref();
    function finish() {
      clearTimeout(timer);
      resolve();
    }
    const check = () => {
      if (sockets.size === 0) finish();
    };
    for (const socket of sockets) socket.once('close', () => setImmediate(check));
    check();
  });
}
