#!/usr/bin/env node
/**
 * `npm start`: the manager and the API cluster on an embedded configuration
 * inside the checkout (var/), created on first run with root@pam. Prints the
 * URL and a ready-to-paste curl command with a freshly rotated root token,
 * root@pam!quickstart. A new var/ keeps its tokens in the token database
 * (access.db: a change costs what it changes); TOKEN_SHADOW_FILES=1 keeps them
 * in user.cfg and token.shadow instead. An existing var/ keeps what it has.
 * Ctrl-C stops everything cleanly, and so does any
 * failure: a daemon that started is never left behind. A port already in use
 * is named, with the variable that moves it (PORT, METRICS_PORT).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { hostRootToken } from '../service/bootstrap.js';
import { resolveSettings, type Settings } from '../service/settings.js';
import { moveTokensToDatabase } from '../service/token-database-migration.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const varDir = path.resolve(process.env.TOKEN_SHADOW_HOME ?? path.join(root, 'var'));
const configDir = path.join(varDir, 'config');
const runtimeDir = path.join(varDir, 'run');
const logDir = path.join(varDir, 'log');
const port = Number(process.env.PORT ?? 8006);
const metricsPort = Number(process.env.METRICS_PORT ?? 9106);
const TOKEN = { tokenName: 'quickstart' };

/** Every port npm start listens on, and the variable that chooses another. */
const PORTS = [
  { port, variable: 'PORT', what: 'the API' },
  { port: metricsPort, variable: 'METRICS_PORT', what: 'the metrics' },
];

/** Everything started so far: stopped on Ctrl-C and on any failure. */
const children: ChildProcess[] = [];

function portTaken(taken: number): string {
  const known = PORTS.find((p) => p.port === taken);
  const how = known
    ? `choose another with ${known.variable}=<port> npm start (${known.what})`
    : 'see PORT and METRICS_PORT in the README';
  return `port ${taken} on 127.0.0.1 is already in use; ${how}`;
}

/** Starts a daemon, copies its JSON log to var/log, resolves with the first line matching `ready`. */
function startDaemon(
  name: string,
  args: string[],
  ready: string,
): Promise<{ child: ChildProcess; line: Record<string, unknown> }> {
  const log = createWriteStream(path.join(logDir, `${name}.log`), { flags: 'a' });
  const child = spawn(process.execPath, [path.join(here, `${name}.js`), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // As the units set them (deploy/): argon2's 19 MiB blocks go back to the system when freed.
    env: { UV_THREADPOOL_SIZE: '4', MALLOC_MMAP_THRESHOLD_: '131072', ...process.env },
  });
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr = `${stderr}${chunk}`.slice(-8192);
  });
  child.stderr?.pipe(log);
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (text) => {
      log.write(`${text}\n`);
      try {
        const line = JSON.parse(text) as Record<string, unknown>;
        if (line.msg === ready) resolve({ child, line });
      } catch {
        // not JSON: kept in the log only
      }
    });
    child.once('exit', (code) => {
      // The daemon's own words, when it says which address was taken.
      const busy = /EADDRINUSE[^\n]*?:(\d+)/.exec(stderr);
      const why = busy ? `: ${portTaken(Number(busy[1]))}` : '';
      reject(new Error(`${name} exited (${code}) before it was ready${why}; see ${log.path}`));
    });
  });
}

function stop(children: ChildProcess[]): Promise<void> {
  return Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        }),
    ),
  ).then(() => undefined);
}

/** A configuration with nothing in it yet gets the token database (unless TOKEN_SHADOW_FILES=1). */
async function tokenDatabaseForNewConfig(settings: Settings): Promise<void> {
  if (process.env.TOKEN_SHADOW_FILES === '1') return;
  const files = [settings.userCfgPath, settings.shadowPath, settings.tokenDatabasePath];
  if (files.some((file) => existsSync(file))) return;
  mkdirSync(settings.configDir, { recursive: true, mode: 0o750 });
  await moveTokensToDatabase(settings, null);
}

async function main(): Promise<void> {
  mkdirSync(logDir, { recursive: true });
  const settings = resolveSettings({ configDir, runtimeDir, workers: 1, hashThreads: 1 });
  await tokenDatabaseForNewConfig(settings);
  const common = ['--config-dir', configDir, '--runtime-dir', runtimeDir];
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping...\n');
    stop(children).then(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);

  await startDaemon('manager', common, 'manager ready');

  // A fresh secret for root@pam!quickstart, made as tokenctl would (the manager takes no identity on trust).
  const { secret } = await hostRootToken(settings, TOKEN.tokenName, 'created by npm start');

  const api = await startDaemon(
    'api',
    [
      ...common,
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--metrics-port',
      String(metricsPort),
    ],
    'api ready',
  );
  for (const child of children) {
    child.once('exit', (code, signal) => {
      if (stopping) return;
      process.stderr.write(`a daemon exited (${code ?? signal}); stopping the rest\n`);
      shutdown();
    });
  }
  const url = String(api.line.url);
  process.stdout.write(
    [
      '',
      `token-shadow is running (config in ${configDir}, logs in ${logDir})`,
      '',
      `  API:      ${url}`,
      `  metrics:  http://127.0.0.1:${metricsPort}/metrics`,
      '',
      'Try it (the certificate is self-signed, hence -k):',
      '',
      `  curl -k -H 'Authorization: PVEAPIToken=root@pam!quickstart=${secret}' ${url}/version`,
      '',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
}

main().catch(async (error) => {
  process.stderr.write(`npm start: ${error instanceof Error ? error.message : error}\n`);
  const running = children.filter((c) => c.exitCode === null && c.signalCode === null);
  if (running.length > 0)
    process.stderr.write(`npm start: stopping the ${running.length} daemon(s) it started\n`);
  await stop(children);
  process.exit(1);
});
