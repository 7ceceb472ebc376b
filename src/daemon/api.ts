#!/usr/bin/env node
/**
 * The unprivileged API daemon: a node:cluster primary and N workers. The
 * primary checks the certificate (creating a self-signed one if needed),
 * starts and replaces workers, serves the aggregated metrics and the health
 * endpoints on a loopback port, tells systemd when it is ready, reloads the
 * certificate and settings on SIGHUP with a rolling restart of the workers,
 * and on SIGTERM lets every worker drain its connections before exiting.
 */
import cluster from 'node:cluster';
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import type { Settings, SettingsInput } from '../service/settings.js';
import { daemonCommand, fileInput, settingsFilePath, settingsFrom } from './cli-options.js';
import { answerMetricsRequests, clusterMetrics, METRICS_CONTENT_TYPE } from './cluster-metrics.js';
import {
  configCheck,
  fenceCheck,
  managerCheck,
  pageCheck,
  Readiness,
  type ReadinessCheck,
  serveHealth,
} from './health.js';
import { HostPenalties } from './host-penalties.js';
import { authority, defaultListenHost } from './listen.js';
import { createLogger, type Logger } from './logger.js';
import { createPrimaryMetrics } from './metrics.js';
import { type ReloadableSettings, readSettingsFile } from './settings-file.js';
import { notifySystemd } from './systemd.js';
import {
  ensureCertificate,
  expiryWarning,
  type LoadedCertificate,
  loadCertificate,
} from './tls.js';
import { startWorker, type WorkerOptions } from './worker.js';
import { type FromWorker, SHUTDOWN, WorkerPool } from './worker-pool.js';

const SETTINGS_ENV = 'TOKEN_SHADOW_WORKER';
/** How often the primary looks at the certificate's expiry between reloads. */
const CERTIFICATE_CHECK_MS = 12 * 3600_000;

interface WorkerEnvelope {
  settings: Settings;
  options: WorkerOptions;
  logLevel: string;
}

function buildCommand(): Command {
  return daemonCommand('token-shadow-api', 'the API daemon (node:cluster)')
    .option('--host <host>', 'address to listen on (default: :: dual-stack, else 0.0.0.0)')
    .option('--port <port>', 'port to listen on (0: any free port)', (v) => Number(v), 8006)
    .option('--workers <n>', 'worker processes (default: the core count)', (v) => Number(v))
    .option('--plain-http', 'plain HTTP instead of HTTPS (loopback only, for benchmarks)')
    .option(
      '--metrics-port <port>',
      'metrics and health endpoints (0: off)',
      (v) => Number(v),
      9106,
    )
    .option('--metrics-host <host>', 'address of the metrics and health listener', '127.0.0.1')
    .option('--public-version', 'answer GET /version without authentication (benchmark baseline)')
    .option('--no-console', 'no web console at / (the API is unchanged)')
    .option('--no-cache', 'no generation page: every verify hashes (for comparison)')
    .option('--hash-threads <n>', 'hashing threads per worker', (v) => Number(v))
    .option('--hash-queue <n>', 'hash tasks that may wait per worker before 503', (v) => Number(v))
    .option(
      '--hash-nice <n>',
      'nice value of the hashing threads (0-19; 0: same priority as serving)',
      (v) => Number(v),
    )
    .option(
      '--penalty-budget <n>',
      'authentication failures a source may have before it is refused (0: no penalties)',
      (v) => Number(v),
    )
    .option('--penalty-decay <n>', 'failures forgiven per second and source', (v) => Number(v))
    .option('--penalty-hold <ms>', "how long a refused source's connection is held", (v) =>
      Number(v),
    )
    .option(
      '--penalty-ipv4-prefix <bits>',
      'IPv4 addresses sharing this many leading bits are one source (default 32)',
      (v) => Number(v),
    )
    .option(
      '--penalty-ipv6-prefix <bits>',
      'IPv6 addresses sharing this many leading bits are one source (default 64)',
      (v) => Number(v),
    )
    .option(
      '--trusted-proxy <address>',
      'a proxy (address or CIDR) whose X-Forwarded-For names the source; repeatable',
      (v: string, list: string[]) => [...list, v],
      [] as string[],
    )
    .option('--rpc-deadline <ms>', "how long to wait for the manager's answer before 503", (v) =>
      Number(v),
    );
}

/** The command line, read once; `settings(file)` merges a settings file under it. */
function parseCommand(argv: string[]) {
  const command = buildCommand().parse(argv);
  const flags = command.opts();
  // Options without a default are undefined unless given, so the command line wins.
  const settings = (host: string, file: ReloadableSettings): Settings => {
    const input: SettingsInput = {
      ...fileInput(file),
      host,
      port: flags.port,
      plainHttp: Boolean(flags.plainHttp),
      metricsHost: flags.metricsHost,
      metricsPort: flags.metricsPort,
      caching: flags.cache !== false,
      ...(flags.hashNice !== undefined ? { hashNice: flags.hashNice } : {}),
      penalties: {
        ...(flags.penaltyBudget !== undefined ? { budget: flags.penaltyBudget } : {}),
        ...(flags.penaltyDecay !== undefined ? { decayPerSecond: flags.penaltyDecay } : {}),
        ...(flags.penaltyHold !== undefined ? { holdMs: flags.penaltyHold } : {}),
        ...(flags.penaltyIpv4Prefix !== undefined ? { ipv4Prefix: flags.penaltyIpv4Prefix } : {}),
        ...(flags.penaltyIpv6Prefix !== undefined ? { ipv6Prefix: flags.penaltyIpv6Prefix } : {}),
        trustedProxies: flags.trustedProxy,
      },
      ...(typeof flags.rpcDeadline === 'number' ? { rpcDeadlineMs: flags.rpcDeadline } : {}),
    };
    for (const name of ['workers', 'hashThreads', 'hashQueue', 'ttlMs'] as const) {
      const value = (name === 'ttlMs' ? flags.ttl : flags[name]) ?? file[name];
      // NaN too (`--workers abc`): resolveSettings refuses it rather than a default hiding it.
      if (typeof value === 'number') input[name] = value;
    }
    return settingsFrom(flags, input);
  };
  return {
    host: typeof flags.host === 'string' ? flags.host : undefined,
    settings,
    settingsFile: (configDir: string) => settingsFilePath(flags, configDir),
    options: {
      publicVersion: Boolean(flags.publicVersion),
      console: flags.console !== false,
    } satisfies WorkerOptions,
  };
}

/** What one generation of workers runs with: settings, the checked certificate, the log level. */
interface Generation {
  settings: Settings;
  certificate: LoadedCertificate | null;
  env: Record<string, string>;
  logLevel: string;
}

async function prepare(
  command: ReturnType<typeof parseCommand>,
  host: string,
): Promise<Generation> {
  const base = command.settings(host, {});
  const file = await readSettingsFile(command.settingsFile(base.configDir));
  const settings = command.settings(host, file);
  const logLevel = process.env.LOG_LEVEL ?? file.logLevel ?? 'info';
  const certificate = settings.plainHttp
    ? null
    : await loadCertificate(settings.certPath, settings.keyPath);
  const options: WorkerOptions = {
    ...command.options,
    ...(certificate ? { certificateFingerprint: certificate.fingerprint256 } : {}),
  };
  const envelope: WorkerEnvelope = { settings, options, logLevel };
  return { settings, certificate, logLevel, env: { [SETTINGS_ENV]: JSON.stringify(envelope) } };
}

function warnAboutExpiry(certificate: LoadedCertificate | null, certPath: string, log: Logger) {
  if (!certificate) return;
  const warning = expiryWarning(certificate.notAfter);
  if (warning) {
    log[warning.level](
      { cert: certPath, notAfter: certificate.notAfter, days: warning.days },
      warning.message,
    );
  }
}

async function runPrimary(argv: string[]): Promise<void> {
  const log = createLogger('api');
  const notifyFailed = (message: string) => log.warn(message);
  const command = parseCommand(argv);
  let host = command.host;
  if (host === undefined) {
    const chosen = await defaultListenHost();
    host = chosen.host;
    if (chosen.reason) log.info({ host, reason: chosen.reason }, 'listening on IPv4 only');
  }
  const first = command.settings(host, {});
  if (!first.plainHttp) {
    const tls = await ensureCertificate(first.certPath, first.keyPath, first.gid);
    if (tls.created) log.info({ cert: first.certPath }, 'created a self-signed certificate');
  }
  let current = await prepare(command, host);
  log.level = current.logLevel;
  const { settings } = current;
  const metrics = createPrimaryMetrics();
  const showCertificate = (g: Generation) => {
    if (g.certificate) metrics.certificateNotAfter.set(g.certificate.notAfter.getTime() / 1000);
    warnAboutExpiry(g.certificate, g.settings.certPath, log);
  };
  showCertificate(current);
  setInterval(
    () => warnAboutExpiry(current.certificate, settings.certPath, log),
    CERTIFICATE_CHECK_MS,
  ).unref();

  // Before the first fork: a worker joins the host's budgets before it listens.
  const penalties = new HostPenalties();
  penalties.configure(settings.penalties);
  const pool = new WorkerPool(log, current.env, settings.workers);
  pool.onChange = (n) => metrics.workers.set(n);
  let stopping = false;
  const page = pageCheck(settings.pagePath, settings.caching, log);
  const checks: ReadinessCheck[] = [
    { name: 'workers', check: async () => !stopping && pool.serving > 0 },
    page,
    configCheck(settings.userCfgPath),
    fenceCheck(() => page.page),
    managerCheck(settings.socketPath),
  ];
  const readiness = new Readiness(checks, log);

  let metricsServer: http.Server | null = null;
  if (settings.metricsPort > 0) {
    metricsServer = http.createServer((req, res) => {
      if (serveHealth(req, res, readiness)) return;
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      clusterMetrics(pool.workers(), metrics.registry).then(
        (text) => res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text),
        (error) => {
          log.error({ err: String(error) }, 'metrics failed');
          res.writeHead(500).end();
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      metricsServer?.once('error', reject);
      metricsServer?.listen(settings.metricsPort, settings.metricsHost, resolve);
    });
  }

  const port = await pool.start();
  const address = metricsServer?.address();
  const scheme = settings.plainHttp ? 'http' : 'https';
  const shown = host === '::' || host === '0.0.0.0' ? 'localhost' : host;
  log.info(
    {
      url: `${scheme}://${authority(shown, port)}/api2/json`,
      host,
      port,
      workers: settings.workers,
      ...(typeof address === 'object' && address ? { metricsPort: address.port } : {}),
    },
    'api ready',
  );
  let reloading: Promise<void> | null = null;
  let again = false;
  const reload = async (): Promise<void> => {
    await notifySystemd({ reloading: true, status: 'reloading' }, notifyFailed);
    log.info({ workers: pool.serving }, 'reloading: certificate, settings, rolling restart');
    try {
      const next = await prepare(command, host);
      penalties.configure(next.settings.penalties);
      await pool.roll(next.env, next.settings.workers);
      current = next;
      log.level = next.logLevel;
      showCertificate(next);
      metrics.reloads.inc({ outcome: 'ok' });
      log.info({ workers: pool.serving }, 'reload done');
    } catch (error) {
      metrics.reloads.inc({ outcome: 'failed' });
      // The workers keep the previous generation's settings.
      log.error(
        { err: error instanceof Error ? error.message : String(error), settings: 'unchanged' },
        'reload failed',
      );
    }
    await notifySystemd(
      { ready: true, status: `serving on ${authority(host, port)}` },
      notifyFailed,
    );
  };
  process.on('SIGHUP', () => {
    if (stopping) return;
    if (reloading) {
      again = true;
      return;
    }
    reloading = (async () => {
      do {
        again = false;
        await reload();
      } while (again && !stopping);
    })().finally(() => {
      reloading = null;
    });
  });

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    notifySystemd({ stopping: true }, notifyFailed);
    log.info({ signal }, 'stopping: draining workers');
    metricsServer?.close();
    page.close();
    (reloading ?? Promise.resolve()).then(() => pool.stop()).then(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // Last: systemd may send a reload as soon as it hears READY=1.
  await notifySystemd({ ready: true, status: `serving on ${authority(host, port)}` }, notifyFailed);
}

async function runWorker(): Promise<void> {
  // First, so that a scrape during start-up gets an answer rather than a timeout.
  answerMetricsRequests();
  const envelope = JSON.parse(process.env[SETTINGS_ENV] ?? '{}') as WorkerEnvelope;
  const log = createLogger('api-worker', envelope.logLevel);
  const worker = await startWorker(envelope.settings, log, envelope.options);
  process.send?.({ type: 'listening', port: worker.port } satisfies FromWorker);
  const stop = () => {
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('message', (message) => {
    if (message === SHUTDOWN) stop();
  });
  // The primary forwards signals by message; a signal sent to the whole group is handled the same way.
  process.on('SIGTERM', stop);
  process.on('SIGINT', () => undefined);
  // A reload is the primary's business; a hangup sent to the whole group must not kill workers.
  process.on('SIGHUP', () => undefined);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const run = cluster.isPrimary ? runPrimary(process.argv) : runWorker();
  run.catch((error) => {
    process.stderr.write(`token-shadow-api: ${error instanceof Error ? error.message : error}\n`);
    process.exit(1);
  });
}
