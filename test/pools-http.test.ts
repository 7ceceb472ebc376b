import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../src/cli/tokenctl.js';
import { call, type Daemons, pveHeader, startDaemons } from './helpers/daemons.js';
import { tempDir } from './helpers/tmp.js';

// A PVE user.cfg of our own: a group's roles on a pool with a nested child, a
// storage in two pools, NoAccess on a pool, tokens with and without privsep.
const PVE_USER_CFG = `user:root@pam:1:0::::::
user:ann@pve:1:0::::::
token:ann@pve!full::0::
token:ann@pve!sep::1::
user:cat@pve:1:0::::::
token:cat@pve!full::0::

group:marketing:ann@pve,cat@pve::

pool:dev::200:local:
pool:marketing:Marketing%20team:100,101:local:
pool:marketing/interns::102:nfs:

acl:1:/pool/marketing:@marketing:PVEPoolUser,PVEVMUser:
acl:1:/pool/marketing/interns:cat@pve:NoAccess:
acl:1:/pool/dev:cat@pve:PVEDatastoreUser:
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
    for (const tokenid of ['ann@pve!full', 'ann@pve!sep', 'cat@pve!full']) {
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
});
