#!/usr/bin/env node
/**
 * The unprivileged API daemon: a node:cluster primary and N workers. The
 * primary creates the certificate if needed, starts and replaces workers,
 * serves the aggregated metrics on a loopback port, and on SIGTERM lets every
 * worker drain its in-flight requests before exiting.
 */
import cluster, { type Worker } from 'node:cluster';
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import client from 'prom-client';
import { isLoopback, type Settings } from '../service/settings.js';
import { daemonCommand, settingsFrom } from './cli-options.js';
import { createLogger } from './logger.js';
import { ensureCertificate } from './tls.js';
import { startWorker, type WorkerOptions } from './worker.js';

const SETTINGS_ENV = 'TOKEN_SHADOW_WORKER';

interface WorkerEnvelope {
  settings: Settings;
  options: WorkerOptions;
}

type FromWorker = { type: 'listening'; port: number };

function parseCommand(argv: string[]): WorkerEnvelope {
  const command = daemonCommand('token-shadow-api', 'the API daemon (node:cluster)')
    .option('--host <host>', 'address to listen on', '0.0.0.0')
    .option('--port <port>', 'port to listen on (0: any free port)', (v) => Number(v), 8006)
    .option('--workers <n>', 'worker processes (default: the core count)', (v) => Number(v))
    .option('--plain-http', 'plain HTTP instead of HTTPS (loopback only, for benchmarks)')
    .option(
      '--metrics-port <port>',
      'Prometheus metrics on loopback (0: off)',
      (v) => Number(v),
      9106,
    )
    .option('--public-version', 'answer GET /version without authentication (benchmark baseline)')
    .option('--no-cache', 'no generation page: every verify hashes (for comparison)')
    .option('--hash-threads <n>', 'hashing threads per worker', (v) => Number(v))
    .option('--hash-queue <n>', 'hash tasks that may wait per worker before 503', (v) => Number(v))
    .parse(argv);
  const flags = command.opts();
  const settings = settingsFrom(flags, {
    host: flags.host,
    port: flags.port,
    plainHttp: Boolean(flags.plainHttp),
    metricsPort: flags.metricsPort,
    caching: flags.cache !== false,
    ...(flags.workers ? { workers: flags.workers } : {}),
    ...(flags.hashThreads ? { hashThreads: flags.hashThreads } : {}),
    ...(flags.hashQueue ? { hashQueue: flags.hashQueue } : {}),
  });
  return { settings, options: { publicVersion: Boolean(flags.publicVersion) } };
}

async function runPrimary(argv: string[]): Promise<void> {
  const log = createLogger('api');
  const { settings, options } = parseCommand(argv);
  if (!settings.plainHttp) {
    const tls = await ensureCertificate(settings.certPath, settings.keyPath, settings.gid);
    if (tls.created) log.info({ cert: settings.certPath }, 'created a self-signed certificate');
  }
  const env = { [SETTINGS_ENV]: JSON.stringify({ settings, options } satisfies WorkerEnvelope) };
  let stopping = false;
  let announced = false;
  const listening = new Map<number, number>();
  const fork = (): Worker => {
    const worker = cluster.fork(env);
    worker.on('message', (message: FromWorker) => {
      if (message?.type !== 'listening') return;
      listening.set(worker.id, message.port);
      log.info({ worker: worker.process.pid, port: message.port }, 'worker listening');
      if (!announced && listening.size >= settings.workers) {
        announced = true;
        const scheme = settings.plainHttp ? 'http' : 'https';
        const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
        log.info(
          {
            url: `${scheme}://${host}:${message.port}/api2/json`,
            port: message.port,
            workers: settings.workers,
          },
          'api ready',
        );
      }
    });
    return worker;
  };
  cluster.on('exit', (worker, code, signal) => {
    listening.delete(worker.id);
    if (stopping) return;
    log.warn({ worker: worker.process.pid, code, signal }, 'worker died, starting a new one');
    fork();
  });
  for (let i = 0; i < settings.workers; i++) fork();

  const aggregator = new client.AggregatorRegistry();
  let metricsServer: http.Server | null = null;
  if (settings.metricsPort > 0) {
    if (!isLoopback(settings.metricsHost)) throw new Error('metrics are served on loopback only');
    metricsServer = http.createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      aggregator.clusterMetrics().then(
        (text) => res.writeHead(200, { 'content-type': aggregator.contentType }).end(text),
        (error) => {
          log.error({ err: String(error) }, 'metrics failed');
          res.writeHead(500).end();
        },
      );
    });
    metricsServer.listen(settings.metricsPort, settings.metricsHost);
  }

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: draining workers');
    metricsServer?.close();
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    let left = workers.length;
    if (left === 0) process.exit(0);
    for (const worker of workers) {
      worker.once('exit', () => {
        left--;
        if (left === 0) process.exit(0);
      });
      worker.send('shutdown');
    }
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

async function runWorker(): Promise<void> {
  const log = createLogger('api-worker');
  const { settings, options } = JSON.parse(process.env[SETTINGS_ENV] ?? '{}') as WorkerEnvelope;
  const worker = await startWorker(settings, log, options);
  process.send?.({ type: 'listening', port: worker.port } satisfies FromWorker);
  const stop = () => {
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('message', (message) => {
    if (message === 'shutdown') stop();
  });
  // The primary forwards signals by message; a signal sent to the whole group is handled the same way.
  process.on('SIGTERM', stop);
  process.on('SIGINT', () => undefined);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const run = cluster.isPrimary ? runPrimary(process.argv) : runWorker();
  run.catch((error) => {
    process.stderr.write(`token-shadow-api: ${error instanceof Error ? error.message : error}\n`);
    process.exit(1);
  });
}
