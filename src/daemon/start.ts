#!/usr/bin/env node
/**
 * `npm start`: the manager and the API cluster on an embedded configuration
 * inside the checkout (var/), created on first run with root@pam. Prints the
 * URL and a ready-to-paste curl command with a freshly rotated root token,
 * root@pam!quickstart. Ctrl-C stops everything cleanly.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createToken, rotateToken } from '../service/operations.js';
import { RpcClient } from './rpc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const varDir = path.resolve(process.env.TOKEN_SHADOW_HOME ?? path.join(root, 'var'));
const configDir = path.join(varDir, 'config');
const runtimeDir = path.join(varDir, 'run');
const logDir = path.join(varDir, 'log');
const port = Number(process.env.PORT ?? 8006);
const metricsPort = Number(process.env.METRICS_PORT ?? 9106);
const TOKEN = { userid: 'root@pam', tokenName: 'quickstart' };

/** Starts a daemon, copies its JSON log to var/log, resolves with the first line matching `ready`. */
function startDaemon(
  name: string,
  args: string[],
  ready: string,
): Promise<{ child: ChildProcess; line: Record<string, unknown> }> {
  const log = createWriteStream(path.join(logDir, `${name}.log`), { flags: 'a' });
  const child = spawn(process.execPath, [path.join(here, `${name}.js`), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { UV_THREADPOOL_SIZE: '4', ...process.env },
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
    child.once('exit', (code) =>
      reject(new Error(`${name} exited (${code}) before it was ready; see ${log.path}`)),
    );
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

async function main(): Promise<void> {
  mkdirSync(logDir, { recursive: true });
  const common = ['--config-dir', configDir, '--runtime-dir', runtimeDir];
  const children: ChildProcess[] = [];
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping...\n');
    stop(children).then(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);

  const manager = await startDaemon('manager', common, 'manager ready');
  children.push(manager.child);

  // A fresh secret for root@pam!quickstart: rotated if it exists, created otherwise.
  const rpc = new RpcClient(path.join(runtimeDir, 'manager.sock'));
  let reply = await rpc.call(rotateToken.name, 'root@pam', TOKEN);
  if (!reply.ok && reply.status === 404) {
    reply = await rpc.call(createToken.name, 'root@pam', {
      ...TOKEN,
      fields: { privsep: false, comment: 'created by npm start' },
    });
  }
  rpc.close();
  if (!reply.ok) throw new Error(`cannot create the quickstart token: ${reply.message}`);
  const secret = (reply.data as { value: string }).value;

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
  children.push(api.child);
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

main().catch((error) => {
  process.stderr.write(`npm start: ${error instanceof Error ? error.message : error}\n`);
  process.exit(1);
});
