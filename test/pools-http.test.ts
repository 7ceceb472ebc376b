import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { call, type Daemons, pveHeader, startDaemons } from '../harness/daemons.js';
import { main } from '../src/cli/tokenctl.js';
import { tempDir } from './helpers/tmp.js';

// A PVE user.cfg of our own: a group's roles on a pool with a nested child, a
// storage in two pools, NoAccess on a pool, tokens with and without privsep.
const PVE_USER_CFG = `user:root@pam:1:0::::::
token:root@pam!admin::0::
user:ann@pve:1:0::::::
token:ann@pve!full::0::
token:ann@pve!sep::1::
user:cat@pve:1:0::::::
token:cat@pve!full::0::
user:ops@pve:1:0::::::
token:ops@pve!sep::1::

group:marketing:ann@pve,cat@pve::

pool:dev::200:local:
pool:marketing:Marketing%20team:100,101:local:
pool:marketing/interns::102:nfs:

acl:1:/pool/marketing:@marketing:PVEPoolUser,PVEVMUser:
acl:1:/pool/marketing/interns:cat@pve:NoAccess:
acl:1:/pool/dev:cat@pve:PVEDatastoreUser:
acl:1:/pool/dev:ops@pve:PVEPoolAdmin:
acl:1:/pool/dev:ops@pve!sep:PVEPoolAdmin:
acl:1:/vms/500:ops@pve:PVEVMAdmin:
`;

describe('pools over HTTPS, configured with tokenctl import-pve', () => {
  let d: Daemons;
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const secrets = new Map<string, string>();

  /** tokenctl in this process, on the daemons' directories. */
  const tokenctl = async (...args: string[]) => {
    let stdout = '';
    let stderr = '';
    const common = ['--config-dir', path.join(dir, 'etc'), '--runtime-dir', path.join(dir, 'run')];
    const code = await main([...common, '--output', 'json', ...args], {
      stdout: (text) => {
        stdout += text;
      },
      stderr: (text) => {
        stderr += text;
      },
    });
    assert.equal(code, 0, stderr);
    return JSON.parse(stdout) as Record<string, unknown>;
  };
  const as = (tokenid: string) => pveHeader(tokenid, secrets.get(tokenid) ?? '');
  const get = (tokenid: string, route: string) => call(d, 'GET', route, { auth: as(tokenid) });

  before(async () => {
    d = await startDaemons(dir);
    const file = path.join(dir, 'pve-user.cfg');
    writeFileSync(file, PVE_USER_CFG);
    const summary = await tokenctl('import-pve', file, '--force');
    assert.equal(summary.pools, 3);
    assert.deepEqual(summary.warnings, []);
    for (const tokenid of [
      'root@pam!admin',
      'ann@pve!full',
      'ann@pve!sep',
      'cat@pve!full',
      'ops@pve!sep',
    ]) {
      const rotated = await tokenctl('token', 'rotate', tokenid);
      secrets.set(tokenid, String(rotated.value));
    }
  });
  after(() => d?.stop());

  it('GET /pools lists the pools the caller has Pool.Audit on', async () => {
    const ann = await get('ann@pve!full', '/pools');
    assert.equal(ann.status, 200, ann.raw);
    assert.deepEqual(ann.body.data, [
      { poolid: 'marketing', comment: 'Marketing team' },
      { poolid: 'marketing/interns' },
    ]);
    const cat = await get('cat@pve!full', '/pools');
    assert.deepEqual(cat.body.data, [{ poolid: 'marketing', comment: 'Marketing team' }]);
    const sep = await get('ann@pve!sep', '/pools');
    assert.deepEqual(sep.body.data, [], 'a privsep token without entries of its own');
    assert.equal((await call(d, 'GET', '/pools')).status, 401);
  });

  it('GET /pools?poolid= gives one pool with its members, 403 without Pool.Audit', async () => {
    const one = await get(
      'ann@pve!full',
      `/pools?poolid=${encodeURIComponent('marketing/interns')}`,
    );
    assert.equal(one.status, 200, one.raw);
    assert.deepEqual(one.body.data, [
      {
        poolid: 'marketing/interns',
        members: [{ vmid: 102 }, { type: 'storage', storage: 'nfs' }],
      },
    ]);
    assert.equal((await get('cat@pve!full', '/pools?poolid=marketing%2Finterns')).status, 403);
    assert.equal((await get('ann@pve!full', '/pools?poolid=dev')).status, 403);
    assert.equal((await get('ann@pve!full', '/pools?poolid=nope')).status, 403);
    const bad = await get('ann@pve!full', '/pools?poolid=a%2Fb%2Fc%2Fd');
    assert.equal(bad.status, 400);
    assert.ok(bad.body.errors?.poolid, bad.raw);
  });

  it("members get their pools' roles in GET /access/permissions", async () => {
    const permissionsOf = async (tokenid: string, where: string) => {
      const reply = await get(tokenid, `/access/permissions?path=${encodeURIComponent(where)}`);
      assert.equal(reply.status, 200, reply.raw);
      return Object.keys((reply.body.data as Record<string, object>)[where] ?? {}).sort();
    };
    const vm102 = await permissionsOf('ann@pve!full', '/vms/102');
    assert.ok(vm102.includes('VM.PowerMgmt') && vm102.includes('VM.Console'), String(vm102));
    assert.deepEqual(await permissionsOf('ann@pve!full', '/vms/200'), []);
    assert.deepEqual(await permissionsOf('cat@pve!full', '/vms/102'), [], 'NoAccess on interns');
    assert.ok((await permissionsOf('cat@pve!full', '/vms/100')).includes('VM.PowerMgmt'));
    const local = await permissionsOf('cat@pve!full', '/storage/local');
    assert.ok(local.includes('Datastore.AllocateSpace'), 'from dev');
    assert.ok(local.includes('VM.Console'), 'and from marketing: a storage in two pools');
    assert.deepEqual(await permissionsOf('ann@pve!sep', '/vms/100'), []);
  });

  it('POST, PUT and DELETE /pools change pools with the privileges PVE asks for', async () => {
    const send = (tokenid: string, method: string, form: Record<string, string | number>) =>
      call(
        d,
        method,
        method === 'DELETE'
          ? `/pools?${new URLSearchParams(Object.entries(form).map(([k, v]) => [k, String(v)]))}`
          : '/pools',
        {
          auth: as(tokenid),
          ...(method === 'DELETE' ? {} : { form }),
        },
      );
    // Pool.Allocate on the new pool's path: ann has PVEPoolUser there, not PVEPoolAdmin.
    assert.equal((await send('ann@pve!full', 'POST', { poolid: 'marketing/x' })).status, 403);
    const created = await send('ops@pve!sep', 'POST', { poolid: 'dev/web', comment: 'web' });
    assert.equal(created.status, 200, created.raw);
    const orphan = await send('root@pam!admin', 'POST', { poolid: 'sales/emea' });
    assert.equal(orphan.status, 404);
    assert.match(orphan.body.message ?? '', /parent "sales" of pool "sales\/emea" does not exist/);

    // Adding a VM needs VM.Allocate (or Permissions.Modify) on it: ops has it on 500 only.
    const refused = await send('ops@pve!sep', 'PUT', { poolid: 'dev/web', vms: '501' });
    assert.equal(refused.status, 403, refused.raw);
    assert.match(refused.body.message ?? '', /\/vms\/501/);
    // ops!sep has no entry of its own on /vms/500: the intersection with its user is empty.
    assert.equal((await send('ops@pve!sep', 'PUT', { poolid: 'dev/web', vms: '500' })).status, 403);
    const added = await send('root@pam!admin', 'PUT', { poolid: 'dev/web', vms: '500,501' });
    assert.equal(added.status, 200, added.raw);
    const moved = await send('root@pam!admin', 'PUT', { poolid: 'dev/web', vms: '200' });
    assert.equal(moved.status, 400);
    assert.match(moved.body.message ?? '', /allow-move/);
    const bad = await send('root@pam!admin', 'PUT', { poolid: 'dev/web', vms: 'x1' });
    assert.equal(bad.status, 400);
    assert.ok(bad.body.errors?.vms, bad.raw);
    const web = await get('root@pam!admin', '/pools?poolid=dev%2Fweb');
    assert.deepEqual(web.body.data, [
      { poolid: 'dev/web', comment: 'web', members: [{ vmid: 500 }, { vmid: 501 }] },
    ]);
    assert.equal(
      (await send('ops@pve!sep', 'DELETE', { poolid: 'dev/web' })).status,
      400,
      'not empty',
    );
    const emptied = await send('root@pam!admin', 'PUT', {
      poolid: 'dev/web',
      vms: '500,501',
      delete: 1,
    });
    assert.equal(emptied.status, 200, emptied.raw);
    const acl = await call(d, 'PUT', '/access/acl', {
      auth: as('root@pam!admin'),
      form: { path: '/pool/dev/web', users: 'ann@pve', roles: 'PVEAuditor' },
    });
    assert.equal(acl.status, 200, acl.raw);
    const removed = await send('ops@pve!sep', 'DELETE', { poolid: 'dev/web' });
    assert.equal(removed.status, 200, removed.raw);
    const entries = await get('root@pam!admin', '/access/acl');
    const paths = (entries.body.data as Array<{ path: string }>).map((e) => e.path);
    assert.ok(paths.includes('/pool/dev'));
    assert.ok(!paths.includes('/pool/dev/web'), "the pool's ACL entries went with it");
    const left = await get('root@pam!admin', '/pools');
    assert.ok(!(left.body.data as Array<{ poolid: string }>).some((p) => p.poolid === 'dev/web'));
  });
});
