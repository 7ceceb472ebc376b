import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  call,
  type Daemons,
  pveHeader,
  startDaemons,
  startDeployment,
} from '../harness/daemons.js';
import { SECRET_PATTERN } from '../src/secret-format.js';
import { VERSION } from '../src/version.js';
import { createRootToken } from './helpers/daemons.js';
import { tempDir } from './helpers/tmp.js';

describe('the daemons over HTTPS', () => {
  let d: Daemons;
  let root: string;
  // Here, not in before(): tempDir registers its cleanup with after() of the current suite.
  const dir = tempDir();
  chmodSync(dir, 0o755);

  before(async () => {
    // Dozens of deliberate 401s from 127.0.0.1: more than the host's default budget of 20
    // (penalties have tests of their own: source-penalties, penalties-daemons).
    d = await startDaemons(dir, ['--penalty-budget', '200']);
    root = (await createRootToken(d, 'test')).header;
  });
  after(() => d?.stop());

  it('creates a token through the API and uses it on every worker', async () => {
    const user = await call(d, 'POST', '/access/users', {
      auth: root,
      form: { userid: 'ann@pve', comment: 'made by a test' },
    });
    assert.equal(user.status, 200, user.raw);
    const token = await call(d, 'POST', '/access/users/ann@pve/token/ci', {
      auth: root,
      form: { privsep: 0, comment: 'ci' },
    });
    assert.equal(token.status, 200, token.raw);
    const data = token.body.data as { 'full-tokenid': string; value: string; info: unknown };
    assert.equal(data['full-tokenid'], 'ann@pve!ci');
    assert.match(data.value, SECRET_PATTERN);
    assert.deepEqual(data.info, { enable: 1, expire: 0, privsep: 0, comment: 'ci' });
    const header = pveHeader('ann@pve!ci', data.value);
    // New connections are spread round-robin: 10 requests reach both workers.
    for (let i = 0; i < 10; i++) {
      const version = await call(d, 'GET', '/version', { auth: header });
      assert.equal(version.status, 200);
      assert.equal((version.body.data as { repoid: string }).repoid, 'token-shadow');
    }
    // package.json's version, not a copy of it.
    const answer = (await call(d, 'GET', '/version', { auth: header })).body.data;
    const [major, minor] = VERSION.split('.');
    assert.deepEqual(answer, {
      version: VERSION,
      release: `${major}.${minor}`,
      repoid: 'token-shadow',
    });
    const pbs = await call(d, 'GET', '/version', { auth: `PBSAPIToken ann@pve!ci:${data.value}` });
    assert.equal(pbs.status, 200);

    const disabled = await call(d, 'PUT', '/access/users/ann@pve/token/ci', {
      auth: root,
      form: { enable: 0 },
    });
    assert.equal(disabled.status, 200, disabled.raw);
    for (let i = 0; i < 10; i++) {
      assert.equal((await call(d, 'GET', '/version', { auth: header })).status, 401);
    }
    const removed = await call(d, 'DELETE', '/access/users/ann@pve/token/ci', { auth: root });
    assert.equal(removed.status, 200);
    const listed = await call(d, 'GET', '/access/users/ann@pve/token', { auth: root });
    assert.deepEqual(listed.body.data, []);
  });

  it('a token update with regenerate=1 answers a new secret; the old one is refused at once', async () => {
    await call(d, 'POST', '/access/users', { auth: root, form: { userid: 'rita@pve' } });
    const created = await call(d, 'POST', '/access/users/rita@pve/token/ci', {
      auth: root,
      form: { privsep: 0 },
    });
    assert.equal(created.status, 200, created.raw);
    const old = pveHeader('rita@pve!ci', (created.body.data as { value: string }).value);
    assert.equal((await call(d, 'GET', '/version', { auth: old })).status, 200);

    const rotated = await call(d, 'PUT', '/access/users/rita@pve/token/ci', {
      auth: root,
      form: { regenerate: 1, comment: 'rotated' },
    });
    assert.equal(rotated.status, 200, rotated.raw);
    const data = rotated.body.data as { 'full-tokenid': string; value: string; info: unknown };
    assert.equal(data['full-tokenid'], 'rita@pve!ci');
    assert.match(data.value, SECRET_PATTERN);
    assert.deepEqual(data.info, { enable: 1, expire: 0, privsep: 0, comment: 'rotated' });
    for (let i = 0; i < 10; i++) {
      assert.equal((await call(d, 'GET', '/version', { auth: old })).status, 401);
    }
    const fresh = pveHeader('rita@pve!ci', data.value);
    assert.equal((await call(d, 'GET', '/version', { auth: fresh })).status, 200);

    const plain = await call(d, 'PUT', '/access/users/rita@pve/token/ci', {
      auth: root,
      form: { comment: 'no new secret' },
    });
    assert.equal(plain.status, 200, plain.raw);
    assert.equal((plain.body.data as { value?: string }).value, undefined);
    assert.equal((await call(d, 'GET', '/version', { auth: fresh })).status, 200);
  });

  it('a privsep token sees only the intersection of its and its user privileges', async () => {
    await call(d, 'POST', '/access/users', { auth: root, form: { userid: 'joe@pve' } });
    const acl = (form: Record<string, string | number>) =>
      call(d, 'PUT', '/access/acl', { auth: root, form });
    assert.equal((await acl({ path: '/', users: 'joe@pve', roles: 'PVEAuditor' })).status, 200);
    const token = await call(d, 'POST', '/access/users/joe@pve/token/sep', {
      auth: root,
      form: { privsep: 1 },
    });
    const secret = (token.body.data as { value: string }).value;
    assert.equal(
      (await acl({ path: '/vms', tokens: 'joe@pve!sep', roles: 'PVEVMAdmin' })).status,
      200,
    );
    const header = pveHeader('joe@pve!sep', secret);
    const perms = await call(d, 'GET', '/access/permissions?path=/vms/100', { auth: header });
    assert.equal(perms.status, 200, perms.raw);
    const granted = (perms.body.data as Record<string, Record<string, number>>)['/vms/100'] ?? {};
    assert.ok('VM.Audit' in granted, 'in both the user and the token role');
    assert.ok(!('VM.PowerMgmt' in granted), 'only in the token role');
    assert.ok(!('Sys.Audit' in granted), 'only in the user role, not on the token');

    const forbidden = await call(d, 'POST', '/access/users', {
      auth: header,
      form: { userid: 'eve@pve' },
    });
    assert.equal(forbidden.status, 403);
    assert.match(String(forbidden.body.message), /Permission check failed/);
    const own = await call(d, 'POST', '/access/users/joe@pve/token/other', { auth: header });
    assert.equal(own.status, 403, 'a token is not its user: it cannot mint tokens for it');
  });

  it('malformed headers, unknown ids, wrong secrets and expired tokens get a bare 401', async () => {
    const made = await call(d, 'POST', '/access/users/root@pam/token/old', {
      auth: root,
      form: { expire: 1 },
    });
    const expired = pveHeader('root@pam!old', (made.body.data as { value: string }).value);
    const headers = [
      undefined,
      'Bearer xyz',
      'PVEAPIToken=root@pam!test',
      'PVEAPIToken=no-realm!x=abc',
      pveHeader('nobody@pve!ci', '00000000-0000-4000-8000-000000000000'),
      pveHeader('root@pam!test', 'wrong'),
      expired,
    ];
    for (const auth of headers) {
      const reply = await call(d, 'GET', '/access/users', auth ? { auth } : {});
      assert.equal(reply.status, 401, String(auth));
      assert.equal(reply.raw, '{"data":null}', 'no detail');
    }
  });

  it('bad parameters get 400 with per-parameter errors', async () => {
    const missing = await call(d, 'POST', '/access/users', { auth: root, form: { comment: 'x' } });
    assert.equal(missing.status, 400);
    assert.ok(missing.body.errors && 'userid' in missing.body.errors, missing.raw);
    const badFlag = await call(d, 'PUT', '/access/users/root@pam/token/test', {
      auth: root,
      form: { privsep: 7 },
    });
    assert.equal(badFlag.status, 400);
    assert.ok(badFlag.body.errors && 'privsep' in badFlag.body.errors, badFlag.raw);
  });

  it('a killed worker is replaced and the API keeps answering', async () => {
    const workers = d.apiLog.lines.filter((l) => l.msg === 'worker listening');
    const victim = Number(workers[0]?.worker);
    assert.ok(victim > 0);
    process.kill(victim, 'SIGKILL');
    const replacement = await d.apiLog.waitFor(
      (l) => l.msg === 'worker listening' && !workers.some((w) => w.worker === l.worker),
    );
    assert.notEqual(replacement.worker, victim);
    for (let i = 0; i < 6; i++) {
      assert.equal((await call(d, 'GET', '/version', { auth: root })).status, 200);
    }
  });
});

describe('shutting down', () => {
  const dir = tempDir();
  chmodSync(dir, 0o755);

  it('SIGTERM lets a request in flight finish, then the API exits cleanly', async () => {
    const d = await startDaemons(dir);
    try {
      const created = await d.asRoot('token.create', {
        userid: 'root@pam',
        tokenName: 'drain',
        fields: { privsep: false },
      });
      const auth = pveHeader('root@pam!drain', (created.data as { value: string }).value);
      const body = 'comment=finished+after+SIGTERM';
      const url = new URL(`${d.url}/access/users/root@pam/token/drained`);
      const exited = new Promise<number | null>((resolve) => d.api.once('exit', resolve));
      const reply = await new Promise<{ status: number; raw: string }>((resolve, reject) => {
        const req = https.request(url, {
          method: 'POST',
          ca: d.ca,
          agent: false,
          headers: {
            authorization: auth,
            'content-type': 'application/x-www-form-urlencoded',
            'content-length': Buffer.byteLength(body),
            expect: '100-continue',
          },
        });
        // "100 Continue" proves the worker holds the request; only then stop the daemon.
        req.once('continue', () => {
          d.api.kill('SIGTERM');
          d.apiLog
            .waitFor((l) => l.msg === 'stopping: draining workers')
            .then(() => req.end(body), reject);
        });
        req.once('response', (res) => {
          let raw = '';
          res.on('data', (c) => {
            raw += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, raw }));
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      assert.equal(reply.status, 200, reply.raw);
      assert.match(reply.raw, /"full-tokenid":"root@pam!drained"/);
      assert.equal(await exited, 0);
    } finally {
      await d.stop();
    }
  });
});

describe('the API primary: metrics and restarts', () => {
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
