/**
 * Issue 10, item 8: the smaller defects found by reading the code, each with
 * a test on real files or real processes.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { call, pveHeader, startDeployment } from '../harness/daemons.js';
import { rolesAt } from '../src/access/permissions.js';
import { settingsFromOptions } from '../src/cli/context.js';
import { parseUserConfig } from '../src/config/parse.js';
import { settingsFrom } from '../src/daemon/cli-options.js';
import { openDeployment } from '../src/service/deployment.js';
import {
  createToken,
  createUser,
  deleteToken,
  rotateToken,
  runWrite,
  updateAcl,
} from '../src/service/operations.js';
import { HOST_ROOT } from '../src/service/rules.js';
import { resolveSettings } from '../src/service/settings.js';
import { FileStorage } from '../src/service/storage.js';
import { readShadow } from '../src/shadow/file.js';
import { tempDir } from './helpers/tmp.js';

/** Settings of a new deployment in a temporary directory, its directories made. */
function freshSettings() {
  const dir = tempDir();
  const settings = resolveSettings({
    configDir: path.join(dir, 'etc'),
    runtimeDir: path.join(dir, 'run'),
    workers: 1,
    hashThreads: 1,
  });
  mkdirSync(settings.configDir, { recursive: true });
  mkdirSync(path.dirname(settings.pagePath), { recursive: true });
  return settings;
}

describe('issue 10, item 8', () => {
  it('rolesAt gives a token without privilege separation its user roles, as PVE roles() does', () => {
    const { config } = parseUserConfig(
      [
        'user:bob@pve:1:0:::::',
        'token:bob@pve!full:1:0:0::',
        'token:bob@pve!sep:1:0:1::',
        'acl:1:/:bob@pve:PVEAdmin:',
        'acl:1:/:bob@pve!sep:PVEAuditor:',
      ].join('\n'),
    );
    assert.deepEqual([...rolesAt(config, 'bob@pve!full', '/vms').keys()], ['PVEAdmin']);
    assert.deepEqual([...rolesAt(config, 'bob@pve!sep', '/vms').keys()], ['PVEAuditor']);
    assert.deepEqual([...rolesAt(config, 'bob@pve!none', '/vms').keys()], []);
  });

  it('tokenctl and a daemon started without --runtime-dir agree on the page', () => {
    const saved = process.env.RUNTIME_DIRECTORY;
    process.env.RUNTIME_DIRECTORY = '/run/token-shadow'; // what systemd sets for the daemons
    try {
      const daemon = settingsFrom({ configDir: '/etc/token-shadow' });
      delete process.env.RUNTIME_DIRECTORY; // an administrator's shell
      const cli = settingsFromOptions({
        configDir: '/etc/token-shadow',
        runtimeDir: '/run/token-shadow',
        output: 'table',
      });
      assert.equal(daemon.pagePath, cli.pagePath);
      assert.equal(cli.pagePath, '/run/token-shadow/shmem/config-versions');
    } finally {
      if (saved === undefined) delete process.env.RUNTIME_DIRECTORY;
      else process.env.RUNTIME_DIRECTORY = saved;
    }
  });

  it('a rotation racing a delete leaves no orphan secret (two writers on the same files)', async () => {
    const settings = freshSettings();
    // Two deployments are two writers as two processes would be: own caches, the files' locks.
    const da = openDeployment(settings, 'cli');
    const db = openDeployment(settings, 'cli');
    const a = new FileStorage(da.users, da.shadow);
    const b = new FileStorage(db.users, db.shadow);
    try {
      await runWrite(createUser, a, HOST_ROOT, { userid: 'race@pve', fields: {} });
      let raced = 0;
      for (let round = 0; round < 5; round++) {
        const params = { userid: 'race@pve', tokenName: `t${round}` };
        await runWrite(createToken, a, HOST_ROOT, { ...params, fields: {} });
        const [rotated] = await Promise.allSettled([
          runWrite(rotateToken, a, HOST_ROOT, params),
          runWrite(deleteToken, b, HOST_ROOT, params),
        ]);
        if (rotated.status === 'rejected') raced++;
        const left = (await readShadow(settings.shadowPath)).entries;
        assert.equal(left.has(`race@pve!t${round}`), false, `round ${round}: an orphan secret`);
      }
      console.log(
        `[reliability] rotate vs delete: ${raced} of 5 rotations lost the race, 0 orphans`,
      );
    } finally {
      await da.close();
      await db.close();
    }
  });

  it('acl.update refuses lists that are not lists of strings, and changes nothing', async () => {
    const settings = freshSettings();
    const d = openDeployment(settings, 'cli');
    try {
      await runWrite(createUser, new FileStorage(d.users, d.shadow), HOST_ROOT, {
        userid: 'acl@pve',
        fields: {},
      });
      const before = await d.users.get();
      for (const users of [[{ toString: () => 'acl@pve' }], 'acl@pve', [1]]) {
        assert.throws(
          () => updateAcl.parse({ path: '/', roles: ['PVEAuditor'], users } as never),
          (error: unknown) => (error as { status?: number }).status === 400,
        );
      }
      assert.throws(
        () => updateAcl.parse({ path: '/', roles: ['PVEAuditor'], propagate: 'yes' } as never),
        (error: unknown) => (error as { status?: number }).status === 400,
      );
      assert.equal((await d.users.get()).acl.size, before.acl.size);
    } finally {
      await d.close();
    }
  });
});

describe('issue 10, item 8, against real daemons', () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);

  it('the authentication histogram counts refusals too, labelled by outcome', async () => {
    const deployment = await startDeployment(dir);
    try {
      const api = await deployment.startApi('api', ['--workers', '1'], { metrics: true });
      const created = await deployment.asRoot('token.create', {
        userid: 'root@pam',
        tokenName: 'm',
        fields: { privsep: false },
      });
      assert.equal(created.ok, true);
      const secret = (created as { data: { value: string } }).data.value;
      const d = { url: api.url, ca: api.ca };
      assert.equal(
        (await call(d as never, 'GET', '/version', { auth: pveHeader('root@pam!m', secret) }))
          .status,
        200,
      );
      assert.equal(
        (await call(d as never, 'GET', '/version', { auth: pveHeader('root@pam!m', 'wrong') }))
          .status,
        401,
      );
      const metrics = await api.metrics();
      const count = (outcome: string) =>
        metrics.get(`token_shadow_authentication_seconds_count{outcome="${outcome}"}`);
      assert.equal(count('ok'), 1);
      assert.equal(count('refused'), 1);
    } finally {
      await deployment.stop();
    }
  });

  it('a worker that dies at start is forked again after a growing wait', async () => {
    const deployment = await startDeployment(tempDir());
    try {
      const api = await deployment.startApi('api', ['--workers', '1']);
      // A replacement reads the certificate again and refuses one the primary did not check.
      writeFileSync(path.join(deployment.configDir, 'api-ssl.pem'), 'not a certificate\n');
      process.kill(api.workerPids[0] as number, 'SIGKILL');
      const waits: unknown[] = [];
      const times: number[] = [];
      const seen = new Set<unknown>();
      for (let n = 1; n <= 5; n++) {
        const line = await api.log.waitFor(
          (l) =>
            (l.msg === 'worker died, starting a new one' || l.msg === 'replacement failed') &&
            !seen.has(l),
        );
        seen.add(line);
        waits.push(line.restartInMs);
        times.push(Number(line.time));
      }
      assert.deepEqual(waits, [0, 100, 200, 400, 800]);
      const spent = (times[4] as number) - (times[1] as number);
      assert.ok(spent >= 700, `4 failed starts within ${spent} ms: no back-off`);
    } finally {
      await deployment.stop();
    }
  });
});
