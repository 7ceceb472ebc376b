/**
 * `npm start` on a busy host: a taken port is named with the variable that
 * moves it, and when a part fails after another started, nothing is left
 * running.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { alive } from '../harness/daemons.js';
import { runChild } from './helpers/children.js';
import { tempDir } from './helpers/tmp.js';

const START = fileURLToPath(new URL('../src/daemon/start.js', import.meta.url));

async function occupiedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** Runs npm start's script with `port` taken; returns its stderr and the manager's pid. */
async function startWith(env: Record<string, string>) {
  const home = tempDir();
  const run = await runChild(START, [], { env: { TOKEN_SHADOW_HOME: home, ...env } });
  const ready = readFileSync(path.join(home, 'log', 'manager.log'), 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg?: string; pid?: number })
    .find((line) => line.msg === 'manager ready');
  return { ...run, managerPid: ready?.pid };
}

describe('npm start on a busy host', () => {
  for (const variable of ['METRICS_PORT', 'PORT']) {
    it(`${variable} taken: names the port and the variable, stops the manager it started`, async () => {
      const taken = await occupiedPort();
      const other: Record<string, string> =
        variable === 'PORT' ? { METRICS_PORT: '0' } : { PORT: '0' };
      const run = await startWith({ ...other, [variable]: String(taken) });
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        run.stderr,
        new RegExp(
          `port ${taken} on 127\\.0\\.0\\.1 is already in use; choose another with ${variable}=`,
        ),
      );
      assert.match(run.stderr, /stopping the 1 daemon\(s\) it started/);
      assert.ok(run.managerPid, 'the manager had started');
      assert.equal(alive(run.managerPid), false, 'and was stopped');
    });
  }
});
