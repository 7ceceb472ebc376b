/**
 * Token policy beyond Proxmox (issue 27) against the real daemons (manager +
 * an API of two workers): a token limited to an address is refused, with the
 * right secret, from any other; a rotation with a grace keeps the previous
 * secret working on every worker until the grace ends and on none after; at
 * most two secrets work at once; a token with privilege separation cannot
 * widen its own allowed-ips; and a webhook receiver hears of each source
 * refusal and of the previous secret's use, once per token and address.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type Api,
  call,
  type Daemons,
  type Deployment,
  pveHeader,
  startDaemons,
  startDeployment,
} from '../harness/daemons.js';
import { freePorts } from '../harness/ports.js';
import type { TokenEvent } from '../src/events/webhooks.js';
import { tempDir } from './helpers/tmp.js';
import { unitLayout } from './helpers/units.js';
import { type Receiver, receiver, SECRET } from './helpers/webhook-receiver.js';

/** Enough calls on new connections that both workers answer some (the primary spreads them). */
const ROUNDS = 6;

async function statuses(
  api: { url: string; ca: Buffer },
  auth: string,
  localAddress = '127.0.0.1',
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    out.push((await call(api, 'GET', '/version', { auth, localAddress })).status);
  }
  return out;
}

const all = (status: number) => Array<number>(ROUNDS).fill(status);

/** The first event of `type` about `tokenid`, once it arrived (events arrive in order, never by a timer). */
async function eventAbout(
  hook: Receiver,
  type: string,
  tokenid: string,
  data: Record<string, unknown> = {},
) {
  const wanted = (e: TokenEvent) =>
    e.type === type &&
    e.data.tokenid === tokenid &&
    Object.entries(data).every(([key, value]) => e.data[key] === value);
  for (let count = 1; ; count++) {
    const found = (await hook.received(count)).find(wanted);
    if (found) return found;
  }
}

describe('token policy: source restrictions and rotation with a grace', () => {
  let deployment: Deployment;
  let api: Api;
  let admin: string;
  let hook: Receiver;
  after(async () => {
    await deployment?.stop();
    await hook?.close();
  });
  const dir = tempDir();
  before(async () => {
    const [port] = await freePorts(1);
    hook = await receiver(port as number);
    mkdirSync(path.join(dir, 'etc'), { recursive: true });
    writeFileSync(
      path.join(dir, 'etc', 'webhooks.json'),
      JSON.stringify({
        endpoints: [
          {
            url: hook.url,
            secret: SECRET,
            events: ['token.source-refused', 'token.previous-secret-used'],
          },
        ],
      }),
      { mode: 0o600 },
    );
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1']);
    const made = await deployment.asRoot('user.create', { userid: 'joe@pve', fields: {} });
    assert.equal(made.ok, true, JSON.stringify(made));
    const root = await deployment.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'admin',
      fields: { privsep: false },
    });
    assert.equal(root.ok, true, JSON.stringify(root));
    admin = pveHeader('root@pam!admin', (root as { data: { value: string } }).data.value);
  });

  it('a token limited to 127.0.0.2 is refused from 127.0.0.3 with the right secret, on every worker', async () => {
    const created = await call(api, 'POST', '/access/users/joe@pve/token/ci', {
      auth: admin,
      form: { privsep: 0, 'allowed-ips': '127.0.0.2, ::ffff:10.0.0.0/104, 2001:DB8::1/32' },
    });
    assert.equal(created.status, 200, created.raw);
    const data = created.body.data as { value: string; info: Record<string, unknown> };
    assert.equal(
      data.info['allowed-ips'],
      '127.0.0.2,10.0.0.0/8,2001:db8::/32',
      'canonical: IPv4-mapped as IPv4',
    );
    const auth = pveHeader('joe@pve!ci', data.value);
    assert.deepEqual(await statuses(api, auth, '127.0.0.2'), all(200));
    assert.deepEqual(await statuses(api, auth, '127.0.0.3'), all(401), 'refused from elsewhere');
    const refusal = await eventAbout(hook, 'token.source-refused', 'joe@pve!ci');
    assert.equal(refusal.data.source, '127.0.0.3');
    // Refused from elsewhere also once cached on both workers: the check is on the fast path.
    assert.deepEqual(await statuses(api, auth, '127.0.0.2'), all(200));

    const read = await call(api, 'GET', '/access/users/joe@pve/token/ci', { auth: admin });
    assert.equal(read.status, 200, read.raw);
    assert.equal(
      (read.body.data as Record<string, unknown>)['allowed-ips'],
      '127.0.0.2,10.0.0.0/8,2001:db8::/32',
    );

    const bad = await call(api, 'PUT', '/access/users/joe@pve/token/ci', {
      auth: admin,
      form: { 'allowed-ips': '127.0.0.300' },
    });
    assert.equal(bad.status, 400, bad.raw);

    // Lifted by the admin: anywhere again, at once on every worker.
    const lifted = await call(api, 'PUT', '/access/users/joe@pve/token/ci', {
      auth: admin,
      form: { 'allowed-ips': '' },
    });
    assert.equal(lifted.status, 200, lifted.raw);
    assert.deepEqual(await statuses(api, auth, '127.0.0.3'), all(200));
  });

  it('a token with privilege separation may narrow its own allowed-ips, never widen them', async () => {
    const created = await deployment.asRoot('token.create', {
      userid: 'joe@pve',
      tokenName: 'sep',
      fields: { privsep: true, allowedIps: '127.0.0.0/8' },
    });
    assert.equal(created.ok, true, JSON.stringify(created));
    const own = pveHeader('joe@pve!sep', (created as { data: { value: string } }).data.value);
    const acl = await deployment.asRoot('acl.update', {
      path: '/access',
      roles: ['Administrator'],
      users: ['joe@pve'],
      tokens: ['joe@pve!sep'],
    });
    assert.equal(acl.ok, true, JSON.stringify(acl));
    for (const wider of ['', '0.0.0.0/0', '127.0.0.0/8,10.0.0.1']) {
      const refused = await call(api, 'PUT', '/access/users/joe@pve/token/sep', {
        auth: own,
        form: { 'allowed-ips': wider },
      });
      assert.equal(refused.status, 403, `${wider}: ${refused.raw}`);
      assert.match(refused.raw, /cannot widen its own allowed-ips/);
    }
    const narrowed = await call(api, 'PUT', '/access/users/joe@pve/token/sep', {
      auth: own,
      form: { 'allowed-ips': '127.0.0.1' },
    });
    assert.equal(narrowed.status, 200, narrowed.raw);
    assert.deepEqual(await statuses(api, own, '127.0.0.2'), all(401));
  });

  it('rotation with a grace: the previous secret works on every worker until it ends, then on none', async () => {
    const created = await call(api, 'POST', '/access/users/joe@pve/token/deploy', {
      auth: admin,
      form: { privsep: 0 },
    });
    assert.equal(created.status, 200, created.raw);
    const first = pveHeader('joe@pve!deploy', (created.body.data as { value: string }).value);
    assert.deepEqual(await statuses(api, first), all(200));

    const grace = 4;
    const rotated = await call(api, 'PUT', '/access/users/joe@pve/token/deploy', {
      auth: admin,
      form: { regenerate: 1, grace },
    });
    assert.equal(rotated.status, 200, rotated.raw);
    const rotatedData = rotated.body.data as { value: string; info: Record<string, unknown> };
    const second = pveHeader('joe@pve!deploy', rotatedData.value);
    const until = rotatedData.info['grace-until'] as number;
    assert.ok(until >= Math.floor(Date.now() / 1000) + grace - 2, `grace-until ${until}`);
    assert.deepEqual(await statuses(api, second), all(200));
    assert.deepEqual(await statuses(api, first), all(200), 'the previous secret during the grace');
    await eventAbout(hook, 'token.previous-secret-used', 'joe@pve!deploy', { grace: 'open' });

    // A second rotation ends the first grace at once: at most two secrets work.
    const again = await call(api, 'PUT', '/access/users/joe@pve/token/deploy', {
      auth: admin,
      form: { regenerate: 1, grace },
    });
    assert.equal(again.status, 200, again.raw);
    const againData = again.body.data as { value: string; info: Record<string, unknown> };
    const third = pveHeader('joe@pve!deploy', againData.value);
    assert.deepEqual(await statuses(api, first), all(401), 'the first secret is gone');
    assert.deepEqual(await statuses(api, second), all(200), 'the second is the previous now');
    assert.deepEqual(await statuses(api, third), all(200));

    // The grace ends by the clock, with no write: wait for its second to pass, then none accepts.
    const end = (againData.info['grace-until'] as number) * 1000;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, end - Date.now() + 50)));
    assert.deepEqual(
      await statuses(api, second),
      all(401),
      'refused by every worker after the grace',
    );
    // ... and told: a client still on it after the grace never moved.
    await eventAbout(hook, 'token.previous-secret-used', 'joe@pve!deploy', { grace: 'ended' });
    assert.deepEqual(await statuses(api, third), all(200));

    // Without a grace, Proxmox's regenerate: the old secret stops at once.
    const cut = await call(api, 'PUT', '/access/users/joe@pve/token/deploy', {
      auth: admin,
      form: { regenerate: 1 },
    });
    assert.equal(cut.status, 200, cut.raw);
    const cutData = cut.body.data as { value: string; info: Record<string, unknown> };
    assert.equal(cutData.info['grace-until'], undefined);
    assert.deepEqual(await statuses(api, third), all(401));
    assert.deepEqual(await statuses(api, pveHeader('joe@pve!deploy', cutData.value)), all(200));

    const tooLong = await call(api, 'PUT', '/access/users/joe@pve/token/deploy', {
      auth: admin,
      form: { regenerate: 1, grace: 31 * 86_400 },
    });
    assert.equal(tooLong.status, 400, tooLong.raw);
    // Once a minute per token, kind and address, however many requests (two workers: two at most).
    const told = hook.events.filter(
      (e) => e.type === 'token.source-refused' && e.data.tokenid === 'joe@pve!ci',
    );
    assert.ok(told.length >= 1 && told.length <= 3, JSON.stringify(told));
  });
});

describe("token policy under the units' restrictions", () => {
  let current: Daemons | null = null;
  after(() => current?.stop());

  it('manager bounded to its unit, API as nobody: allowed-ips and a grace hold the same', async (t) => {
    const layout = unitLayout();
    if (typeof layout === 'string') return t.skip(layout);
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const d = await startDaemons(dir, [], layout.harness);
    current = d;
    const root = await d.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'admin',
      fields: { privsep: false },
    });
    assert.equal(root.ok, true, JSON.stringify(root));
    const admin = pveHeader('root@pam!admin', (root.data as { value: string }).value);
    const created = await call(d, 'POST', '/access/users/root@pam/token/edge', {
      auth: admin,
      form: { privsep: 0, 'allowed-ips': '127.0.0.2' },
    });
    assert.equal(created.status, 200, created.raw);
    const first = pveHeader('root@pam!edge', (created.body.data as { value: string }).value);
    assert.deepEqual(await statuses(d, first, '127.0.0.2'), all(200));
    assert.deepEqual(await statuses(d, first, '127.0.0.3'), all(401));
    const rotated = await call(d, 'PUT', '/access/users/root@pam/token/edge', {
      auth: admin,
      form: { regenerate: 1, grace: 600 },
    });
    assert.equal(rotated.status, 200, rotated.raw);
    const second = pveHeader('root@pam!edge', (rotated.body.data as { value: string }).value);
    assert.deepEqual(await statuses(d, first, '127.0.0.2'), all(200), 'previous, in its grace');
    assert.deepEqual(await statuses(d, second, '127.0.0.2'), all(200));
    assert.deepEqual(await statuses(d, second, '127.0.0.3'), all(401));
    const again = await call(d, 'PUT', '/access/users/root@pam/token/edge', {
      auth: admin,
      form: { regenerate: 1 },
    });
    assert.equal(again.status, 200, again.raw);
    assert.deepEqual(await statuses(d, first, '127.0.0.2'), all(401), 'no grace: both old ones go');
    assert.deepEqual(await statuses(d, second, '127.0.0.2'), all(401));
  });
});
