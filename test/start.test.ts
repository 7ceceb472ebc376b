/**
 * `npm start` on a busy host: a taken port is named with the variable that
 * moves it, and when a part fails after another started, nothing is left
 * running. On a new home it keeps the tokens in the token database, and the
 * curl command it prints works.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { alive } from '../harness/daemons.js';
import { TokenDatabaseReader, tokenDatabaseAvailable } from '../src/store/token-database.js';
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

describe('npm start on a new home', {
  skip: tokenDatabaseAvailable() ? false : 'no node:sqlite',
}, () => {
  it('keeps the tokens in the token database, and the curl command it prints works', async () => {
    const home = tempDir();
    const child = spawn(process.execPath, [START], {
      env: { ...process.env, TOKEN_SHADOW_HOME: home, PORT: '0', METRICS_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      let out = '';
      const command = await new Promise<RegExpMatchArray>((resolve, reject) => {
        child.stdout.on('data', (chunk) => {
          out += String(chunk);
          const found = out.match(/Authorization: (PVEAPIToken=[^']+)' (\S+)\/version/);
          if (found) resolve(found);
        });
        child.once('exit', (code) => reject(new Error(`npm start exited (${code}): ${out}`)));
      });
      const config = path.join(home, 'config');
      assert.equal(existsSync(path.join(config, 'token.shadow')), false);
      const reader = new TokenDatabaseReader(path.join(config, 'access.db'));
      try {
        assert.match(reader.lookup('root@pam!quickstart')?.hash ?? '', /^\$argon2id\$/);
      } finally {
        reader.close();
      }
      assert.doesNotMatch(readFileSync(path.join(config, 'user.cfg'), 'utf8'), /^token:/m);
      // The printed command, as curl -k sends it (the certificate is self-signed).
      const [, header, url] = command as unknown as [string, string, string];
      const status = await new Promise<number | undefined>((resolve, reject) => {
        https
          .get(
            `${url}/version`,
            { headers: { authorization: header }, rejectUnauthorized: false },
            (res) => {
              res.resume();
              resolve(res.statusCode);
            },
          )
          .on('error', reject);
      });
      assert.equal(status, 200, 'the API answered the printed token');
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });
});
