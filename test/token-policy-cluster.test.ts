/**
 * Token policy replicated in multi-host mode (issue 27 item 5): with a real
 * 3-member etcd on loopback and two hosts' real managers and APIs, a token's
 * allowed-ips set through host A hold on host B, and a rotation with a grace
 * made on A keeps both secrets working on B until a rotation without one
 * ends the old secret on both.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Api, call, type Deployment, pveHeader } from '../harness/daemons.js';
import { type EtcdCluster, etcdUnavailable, startEtcdCluster } from '../harness/etcd.js';
import { addTokenIn, startClusterHosts } from '../harness/tokenctl.js';
import { tempDir } from './helpers/tmp.js';

const noEtcd = etcdUnavailable();
if (noEtcd) process.stdout.write(`# token policy cluster tests skipped: ${noEtcd}\n`);

/** The status of a request to `api` with `auth` from `localAddress`. */
async function status(api: Api, auth: string, localAddress = '127.0.0.1'): Promise<number> {
  return (await call(api, 'GET', '/version', { auth, localAddress })).status;
}

describe('token policy across hosts', { skip: noEtcd ?? false }, () => {
  let etcd: EtcdCluster;
  const running: Deployment[] = [];
  const dirA = tempDir('token-shadow-policy-a-');
  const dirB = tempDir('token-shadow-policy-b-');
  let apiA: Api;
  let apiB: Api;
  let admin: string;

  before(async () => {
    etcd = await startEtcdCluster();
    const [a, b] = (await startClusterHosts(
      etcd.endpoints,
      'policy',
      [
        { host: 'a', dir: dirA },
        { host: 'b', dir: dirB },
      ],
      running,
    )) as [Deployment, Deployment];
    const args = ['--plain-http', '--workers', '1', '--hash-threads', '1'];
    apiA = await a.startApi('a', args);
    apiB = await b.startApi('b', args);
    admin = (await addTokenIn(dirA, 'root@pam!admin', '--privsep', '0')).header;
  });

  after(async () => {
    for (const d of running) await d.stop();
    await etcd?.stop();
  });

  it("allowed-ips set on host A hold on host B, in the token's answer and on every request", async () => {
    const made = await call(apiA, 'POST', '/access/users/root@pam/token/fenced', {
      auth: admin,
      form: { privsep: 0, 'allowed-ips': '127.0.0.2' },
    });
    assert.equal(made.status, 200, made.raw);
    const auth = pveHeader('root@pam!fenced', (made.body.data as { value: string }).value);
    // The write returned once every live host applied it: B knows the list now.
    const read = await call(apiB, 'GET', '/access/users/root@pam/token/fenced', { auth: admin });
    assert.equal((read.body.data as Record<string, unknown>)['allowed-ips'], '127.0.0.2');
    assert.equal(await status(apiB, auth, '127.0.0.2'), 200);
    assert.equal(await status(apiB, auth, '127.0.0.3'), 401, 'refused from elsewhere on B');
    assert.equal(await status(apiA, auth, '127.0.0.4'), 401, 'and on A');
  });

  it('a rotation with a grace on A keeps both secrets on B; one without ends the old on both', async () => {
    const made = await call(apiA, 'POST', '/access/users/root@pam/token/rot', {
      auth: admin,
      form: { privsep: 0 },
    });
    const first = pveHeader('root@pam!rot', (made.body.data as { value: string }).value);
    const rotated = await call(apiA, 'PUT', '/access/users/root@pam/token/rot', {
      auth: admin,
      form: { regenerate: 1, grace: 3600 },
    });
    assert.equal(rotated.status, 200, rotated.raw);
    const second = pveHeader('root@pam!rot', (rotated.body.data as { value: string }).value);
    assert.equal(await status(apiB, first, '127.0.0.5'), 200, 'the previous secret, on B');
    assert.equal(await status(apiB, second, '127.0.0.5'), 200);
    const read = await call(apiB, 'GET', '/access/users/root@pam/token/rot', { auth: admin });
    assert.ok(Number((read.body.data as Record<string, unknown>)['grace-until']) > 0, read.raw);
    const again = await call(apiB, 'PUT', '/access/users/root@pam/token/rot', {
      auth: admin,
      form: { regenerate: 1 },
    });
    assert.equal(again.status, 200, again.raw);
    const third = pveHeader('root@pam!rot', (again.body.data as { value: string }).value);
    for (const api of [apiA, apiB]) {
      assert.equal(await status(api, first, '127.0.0.6'), 401, `${api.name}: the old one ended`);
      assert.equal(await status(api, second, '127.0.0.6'), 401);
      assert.equal(await status(api, third, '127.0.0.6'), 200);
    }
  });
});
