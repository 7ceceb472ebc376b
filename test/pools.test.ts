import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isPoolId } from '../src/config/pools.js';
import { normalizeAclPath } from '../src/config/syntax.js';
import { PermissionError } from '../src/errors.js';
import { parseAuthid } from '../src/ids.js';
import {
  addPool,
  ConfigError,
  createUserConfig,
  importPveUserConfig,
  PVE_BUILTIN_ROLES,
  parseUserConfig,
  permissions,
  permissionsTree,
  removePool,
  rolesAt,
  setAcl,
  type UserConfig,
  updatePool,
  writeUserConfig,
} from '../src/index.js';
import { listPools as listPoolsOperation, runRead } from '../src/service/operations.js';

const sorted = (map: Map<string, boolean>) => [...map.keys()].sort();
const poolIds = (config: UserConfig) => [...config.pools.keys()].sort();

describe('pools: user.cfg lines', () => {
  // As PVE 9.1 writes it: VM ids comma separated; storages comma separated too,
  // though PVE reads any list separator (older files have spaces).
  const PVE_FILE = [
    'user:root@pam:1:0::::::',
    'user:ann@pve:1:0::::::',
    '',
    'pool:marketing:Marketing%20team:100,101:local,nfs-1:',
    'pool:marketing/interns::102:local:',
    'pool:marketing/interns/summer:::ceph.fast:',
    'pool:dev::200,300:local lvm_thin;zfs:',
    '',
    'acl:1:/pool/marketing:ann@pve:PVEVMUser:',
    '',
  ].join('\n');

  it('reads pools with nested children, members and comments, in both dialects', () => {
    for (const dialect of ['pve', 'token-shadow'] as const) {
      const { config, warnings } = parseUserConfig(PVE_FILE, { dialect });
      assert.deepEqual(warnings, [], dialect);
      assert.deepEqual(poolIds(config), [
        'dev',
        'marketing',
        'marketing/interns',
        'marketing/interns/summer',
      ]);
      const marketing = config.pools.get('marketing');
      assert.equal(marketing?.comment, 'Marketing team');
      assert.deepEqual([...(marketing?.vms ?? [])], [100, 101]);
      assert.deepEqual([...(marketing?.storage ?? [])], ['local', 'nfs-1']);
      assert.deepEqual([...(config.pools.get('dev')?.storage ?? [])], ['local', 'lvm_thin', 'zfs']);
      assert.deepEqual([...(config.pools.get('marketing/interns/summer')?.vms ?? [])], []);
    }
  });

  it('writes pool lines as PVE does and reads them back to the same bytes', () => {
    const imported = importPveUserConfig(PVE_FILE);
    assert.deepEqual(imported.warnings, []);
    const poolLines = imported.text.split('\n').filter((line) => line.startsWith('pool:'));
    assert.deepEqual(poolLines, [
      'pool:dev::200,300:local,lvm_thin,zfs:',
      'pool:marketing:Marketing%20team:100,101:local,nfs-1:',
      'pool:marketing/interns::102:local:',
      'pool:marketing/interns/summer:::ceph.fast:',
    ]);
    // Groups, then pools, then roles and ACLs, as in PVE's write_user_config.
    assert.ok(imported.text.indexOf('pool:') < imported.text.indexOf('acl:'));
    const again = parseUserConfig(imported.text);
    assert.deepEqual(again.warnings, []);
    assert.equal(writeUserConfig(again.config), imported.text, 'a fixed point');
  });

  it('sorts VM ids as numbers and adds missing parents, as PVE does on reading', () => {
    const { config, warnings } = parseUserConfig('pool:a/b/c::1000,200,0300::\n');
    assert.deepEqual(warnings, []);
    assert.deepEqual(poolIds(config), ['a', 'a/b', 'a/b/c']);
    assert.equal(writeUserConfig(config), 'pool:a::::\npool:a/b::::\npool:a/b/c::200,300,1000::\n');
  });

  it('skips a bad pool line or the bad member, with a warning naming it', () => {
    const text = [
      'pool:a/b/c/d::::', // 1: four levels
      'pool:bad name::::', // 2
      'pool:p1::100,x1,-5::', // 3: two invalid VM ids
      'pool:p2::100,101::', // 4: 100 is already in p1
      'pool:p3:::local,9bad,a:', // 5: invalid storage ids
      'pool:p4::::extra:', // 6: too many fields
      'pool:p1:second line:102:nfs:', // 7: adds to p1
    ].join('\n');
    const { config, warnings } = parseUserConfig(text);
    const at = (line: number) => warnings.filter((w) => w.line === line).map((w) => w.message);
    assert.match(at(1).join(), /ignoring pool "a\/b\/c\/d": invalid pool id/);
    assert.match(at(2).join(), /ignoring pool "bad name": invalid pool id/);
    assert.equal(at(3).length, 2);
    assert.match(at(3).join(), /invalid vm id "x1" of pool "p1"/);
    assert.match(at(4).join(), /vm id "100" of pool "p2": already in pool "p1"/);
    assert.equal(at(5).length, 2);
    assert.match(at(5).join(), /invalid storage id "9bad"/);
    assert.match(at(6).join(), /too many fields/);
    assert.deepEqual(at(7), []);
    assert.deepEqual(poolIds(config), ['p1', 'p2', 'p3']);
    assert.deepEqual([...(config.pools.get('p1')?.vms ?? [])], [100, 102]);
    assert.equal(config.pools.get('p1')?.comment, 'second line');
    assert.deepEqual([...(config.pools.get('p2')?.vms ?? [])], [101]);
    assert.deepEqual([...(config.pools.get('p3')?.storage ?? [])], ['local']);
  });

  it('a pool line cut short keeps only the members it surely names', () => {
    const cut = (text: string) => parseUserConfig(`${text}\n`);
    const vms = cut('pool:p::100,12');
    assert.deepEqual([...(vms.config.pools.get('p')?.vms ?? [])], [100], '12 may be 123');
    assert.match(vms.warnings[0]?.message ?? '', /pool entry cut short \(3 of 5 fields\)/);
    const storage = cut('pool:p::100,123:local,nf');
    assert.deepEqual([...(storage.config.pools.get('p')?.vms ?? [])], [100, 123]);
    assert.deepEqual([...(storage.config.pools.get('p')?.storage ?? [])], ['local']);
    assert.equal(storage.warnings.length, 1);
    const whole = cut('pool:p::100,123:local,nfs:');
    assert.deepEqual(whole.warnings, []);
    assert.deepEqual([...(whole.config.pools.get('p')?.storage ?? [])], ['local', 'nfs']);
  });

  it('validates pool ids as PVE does, and refuses to write what the format cannot hold', () => {
    for (const good of ['a', 'A.b-c_d', 'a/b', 'a/b/c', '1x']) assert.ok(isPoolId(good), good);
    for (const bad of [
      '',
      'a/b/c/d',
      '/a',
      'a/',
      'a//b',
      'a b',
      'a:b',
      'ä',
      '..',
      'a/.',
      'x'.repeat(1019),
    ]) {
      assert.equal(isPoolId(bad), false, bad);
    }
    assert.ok(
      isPoolId('x'.repeat(1018)) && isPoolId('a/..b/c.'),
      'the longest, and dots in a name',
    );
    // Exactly the ids whose ACL path this project holds as it is.
    for (const id of ['a', 'a/b/c', 'x'.repeat(1018), '..', 'a/.', 'x'.repeat(1019)]) {
      assert.equal(isPoolId(id), normalizeAclPath(`/pool/${id}`) === `/pool/${id}`, id);
    }
    const config = createUserConfig();
    config.pools.set('a:b', { comment: '', vms: new Set(), storage: new Set() });
    assert.throws(() => writeUserConfig(config), /cannot write pool id "a:b"/);
    config.pools.clear();
    config.pools.set('ok', { comment: '', vms: new Set(), storage: new Set(['no:pe']) });
    assert.throws(() => writeUserConfig(config), /cannot write storage id/);
  });
});

describe('pools: changing them', () => {
  const base = () => parseUserConfig('pool:marketing::100:local:\n').config;

  it('creates a nested pool only under an existing parent, with a letter first', () => {
    const config = base();
    addPool(config, 'marketing/interns', { comment: 'the interns' });
    assert.equal(config.pools.get('marketing/interns')?.comment, 'the interns');
    const problem = (fn: () => unknown, re: RegExp, kind: string) =>
      assert.throws(
        fn,
        (e: unknown) => e instanceof ConfigError && e.problem === kind && re.test(e.message),
      );
    problem(
      () => addPool(config, 'sales/emea'),
      /parent "sales" of pool "sales\/emea" does not exist/,
      'not-found',
    );
    problem(() => addPool(config, 'marketing'), /exists/, 'exists');
    problem(() => addPool(config, '1st'), /must start with a letter/, 'invalid');
    problem(() => addPool(config, 'marketing/2nd'), /must start with a letter/, 'invalid');
    problem(() => addPool(config, 'a/b/c/d'), /invalid pool id/, 'invalid');
    addPool(config, 'marketing/interns/summer');
    problem(() => addPool(config, 'marketing/interns/summer/x'), /invalid pool id/, 'invalid');
  });

  it('adds, moves and removes members as PUT /pools does, checking everything first', () => {
    const config = base();
    addPool(config, 'dev');
    updatePool(config, 'dev', { vms: [200, 201], storage: ['local', 'nfs'], comment: 'dev' });
    assert.deepEqual([...(config.pools.get('dev')?.vms ?? [])], [200, 201]);
    const before = writeUserConfig(config);
    assert.throws(
      () => updatePool(config, 'dev', { vms: [202, 100] }),
      /VM 100 belongs already to pool "marketing" and 'allow-move' is not set/,
    );
    assert.throws(
      () => updatePool(config, 'dev', { vms: [202, 200] }),
      /VM 200 is already a pool member/,
    );
    assert.throws(() => updatePool(config, 'dev', { vms: [99] }), /invalid vm id "99"/);
    assert.throws(() => updatePool(config, 'dev', { storage: ['local'] }), /already a pool member/);
    assert.throws(
      () => updatePool(config, 'dev', { vms: [100], delete: true }),
      /VM 100 is not a pool member/,
    );
    assert.throws(() => updatePool(config, 'nope', { vms: [300] }), /no such pool "nope"/);
    assert.equal(writeUserConfig(config), before, 'a refused change changes nothing');
    updatePool(config, 'dev', { vms: [100], allowMove: true });
    assert.equal(config.pools.get('marketing')?.vms.has(100), false, 'moved out');
    assert.equal(config.pools.get('dev')?.vms.has(100), true, 'moved in');
    updatePool(config, 'dev', { vms: [100, 200], storage: ['nfs'], delete: true });
    assert.deepEqual([...(config.pools.get('dev')?.vms ?? [])], [201]);
    assert.deepEqual([...(config.pools.get('dev')?.storage ?? [])], ['local']);
  });

  it('removes only an empty pool, and with it the ACL entries at its path and below', () => {
    const config = parseUserConfig(
      [
        'user:ann@pve:1:0::::::',
        'pool:marketing::::',
        'pool:marketing/interns::102::',
        'pool:marketingx::::',
        'acl:1:/pool/marketing:ann@pve:PVEVMUser:',
        'acl:1:/pool/marketing/interns:ann@pve:PVEAuditor:',
        'acl:1:/pool/marketing/gone:ann@pve:PVEAuditor:',
        'acl:1:/pool/marketingx:ann@pve:PVEAuditor:',
      ].join('\n'),
    ).config;
    assert.throws(
      () => removePool(config, 'marketing'),
      /not empty \(contains pool "marketing\/interns"\)/,
    );
    assert.throws(() => removePool(config, 'marketing/interns'), /not empty \(contains VM 102\)/);
    updatePool(config, 'marketing/interns', { vms: [102], delete: true });
    removePool(config, 'marketing/interns');
    assert.deepEqual([...config.acl.keys()].sort(), [
      '/pool/marketing',
      '/pool/marketing/gone',
      '/pool/marketingx',
    ]);
    removePool(config, 'marketing');
    assert.deepEqual([...config.acl.keys()], ['/pool/marketingx'], 'a stale child entry too');
    assert.deepEqual(poolIds(config), ['marketingx']);
    assert.throws(() => removePool(config, 'marketing'), /no such pool/);
  });
});

// Configurations of our own, checked against PVE's documented rules: an ACL on
// /pool/NAME applies to the pool's VMs and storages; nested pools inherit what
// propagates; NoAccess works as at any path.
const POOLED = `
user:root@pam:1:0::::::
user:ann@pve:1:0::::::
user:cat@pve:1:0::::::
user:bob@pve:1:0::::::
token:bob@pve!full:1:0:0::
token:bob@pve!sep:1:0:1::
token:bob@pve!bare:1:0:1::
user:dan@pve:1:0::::::
group:marketing:ann@pve,cat@pve::
role:VMAudit:VM.Audit:
pool:marketing::100,101:local:
pool:marketing/interns::102::
pool:marketing/interns/summer::103:nfs:
pool:dev::200:local:
pool:solo::300::
acl:1:/pool/marketing:@marketing:PVEVMUser,PVEPoolUser:
acl:1:/pool/marketing/interns:cat@pve:NoAccess:
acl:1:/vms:cat@pve:VMAudit:
acl:1:/vms/101:ann@pve:NoAccess:
acl:1:/pool/dev:bob@pve:PVEDatastoreUser:
acl:1:/pool/dev:bob@pve!sep:PVEDatastoreUser,PVEVMUser:
acl:0:/pool/solo:dan@pve:PVEVMAdmin:
acl:1:/vms/300:dan@pve:VMAudit:
`;

/** GET /pools as the API runs it: the operation's rule, then its run. */
function listPools(config: UserConfig, authid: string, params: { poolid?: string } = {}) {
  return runRead(listPoolsOperation, config, parseAuthid(authid), params);
}

describe('pools: permissions of members', () => {
  const { config, warnings } = parseUserConfig(POOLED);
  const now = 1000;
  // PVEVMUser (its exact content is asserted in access.test.ts) and PVEPoolUser.
  const VM_USER = [...(PVE_BUILTIN_ROLES.get('PVEVMUser') ?? []), 'Pool.Audit'].sort();
  const DATASTORE_USER = ['Datastore.AllocateSpace', 'Datastore.Audit'];
  const at = (authid: string, path: string) => permissions(config, authid, path, now);

  it('parses the fixture cleanly', () => assert.deepEqual(warnings, []));

  it("a VM in a pool gets the group's role on the pool, never propagating", () => {
    const granted = at('ann@pve', '/vms/100');
    assert.deepEqual(sorted(granted), VM_USER);
    assert.ok([...granted.values()].every((propagate) => propagate === false));
    assert.equal(at('ann@pve', '/vms/100').has('VM.PowerMgmt'), true);
    assert.deepEqual(sorted(at('ann@pve', '/vms/999')), [], 'not a member');
    assert.deepEqual(sorted(at('ann@pve', '/vms/0100')), [], 'PVE matches the id as written');
    assert.deepEqual(sorted(at('ann@pve', '/vms')), []);
    assert.deepEqual(sorted(rolesAt(config, 'ann@pve', '/vms/100')), [], 'roles() ignores pools');
    assert.equal(at('ann@pve', '/pool/marketing').get('VM.Console'), true, 'on the pool itself');
  });

  it('nested pools inherit what propagates from their parents', () => {
    assert.deepEqual(sorted(at('ann@pve', '/vms/102')), VM_USER);
    assert.deepEqual(sorted(at('ann@pve', '/vms/103')), VM_USER);
    assert.deepEqual(sorted(at('ann@pve', '/storage/nfs')), VM_USER);
    // dan's entry on /pool/solo does not propagate: it still reaches solo's members,
    // and the role from the ordinary ACL keeps its propagate flag.
    const dan = at('dan@pve', '/vms/300');
    assert.equal(dan.get('VM.Allocate'), false);
    assert.equal(dan.get('VM.Audit'), true, 'from /vms/300 itself, propagating');
  });

  it('NoAccess on a pool takes everything from its members, over the ordinary ACL', () => {
    assert.deepEqual(sorted(at('cat@pve', '/vms/100')), VM_USER);
    assert.equal(at('cat@pve', '/vms/100').get('VM.Audit'), true, 'the ordinary entry propagates');
    assert.equal(at('cat@pve', '/vms/100').get('VM.Console'), false, 'the pool one does not');
    assert.deepEqual(sorted(at('cat@pve', '/vms/102')), [], 'NoAccess on marketing/interns');
    assert.deepEqual(sorted(at('cat@pve', '/vms/103')), [], 'and on its child pool');
    assert.deepEqual(sorted(at('cat@pve', '/vms/999')), ['VM.Audit'], 'elsewhere the ordinary ACL');
    assert.deepEqual(sorted(at('cat@pve', '/pool/marketing/interns')), []);
  });

  it('NoAccess in the ordinary ACL at the member is not trumped by a pool', () => {
    assert.deepEqual(sorted(at('ann@pve', '/vms/101')), []);
    assert.deepEqual(sorted(at('ann@pve', '/storage/local')), VM_USER, 'the pool storage still');
  });

  it('a storage in a pool, and in several: their roles are united', () => {
    assert.deepEqual(sorted(at('bob@pve', '/storage/local')), DATASTORE_USER);
    assert.deepEqual(sorted(at('bob@pve', '/storage/nfs')), [], 'not in dev');
    assert.deepEqual(sorted(at('bob@pve', '/vms/200')), DATASTORE_USER);
  });

  it('tokens: without privsep the user privileges, with it the intersection', () => {
    for (const path of ['/vms/200', '/storage/local', '/vms/100']) {
      assert.deepEqual(at('bob@pve!full', path), at('bob@pve', path), path);
    }
    // bob!sep holds PVEVMUser on /pool/dev too, but bob does not: only Datastore.*.
    assert.deepEqual(sorted(at('bob@pve!sep', '/vms/200')), DATASTORE_USER);
    assert.deepEqual(sorted(at('bob@pve!sep', '/storage/local')), DATASTORE_USER);
    assert.deepEqual(sorted(at('bob@pve!bare', '/vms/200')), [], 'no entries of its own');
    assert.deepEqual(sorted(at('bob@pve!bare', '/storage/local')), []);
  });

  it('lists the pool members in the permission tree, as PVE does', () => {
    const tree = permissionsTree(config, 'ann@pve', { now });
    assert.ok(tree['/vms/100']);
    assert.equal(tree['/vms/100']?.['VM.PowerMgmt'], 0);
    assert.ok(tree['/vms/103']);
    assert.ok(tree['/storage/nfs']);
    assert.equal(tree['/vms/101'], undefined, 'NoAccess');
    assert.equal(tree['/vms/200'], undefined, 'not hers');
  });

  it('GET /pools lists the pools with Pool.Audit, and one pool with its members', () => {
    const ids = (authid: string) => listPools(config, authid).map((p) => p.poolid);
    assert.deepEqual(ids('ann@pve'), [
      'marketing',
      'marketing/interns',
      'marketing/interns/summer',
    ]);
    assert.deepEqual(ids('cat@pve'), ['marketing'], 'NoAccess on interns hides it and its child');
    assert.deepEqual(ids('bob@pve'), []);
    assert.deepEqual(ids('root@pam'), [
      'dev',
      'marketing',
      'marketing/interns',
      'marketing/interns/summer',
      'solo',
    ]);
    assert.deepEqual(listPools(config, 'ann@pve', { poolid: 'marketing/interns/summer' }), [
      {
        poolid: 'marketing/interns/summer',
        members: [{ vmid: 103 }, { type: 'storage', storage: 'nfs' }],
      },
    ]);
    const refused = (authid: string, poolid: string) =>
      assert.throws(() => listPools(config, authid, { poolid }), PermissionError);
    refused('cat@pve', 'marketing/interns');
    refused('ann@pve', 'nope'); // the same answer whether or not it exists
    assert.throws(
      () => listPools(config, 'root@pam', { poolid: 'nope' }),
      (e: unknown) => e instanceof ConfigError && e.problem === 'not-found',
    );
  });

  it('after the pool is removed its members lose what it gave', () => {
    const copy = parseUserConfig(POOLED).config;
    setAcl(copy, '/pool/solo', { users: ['dan@pve'], roles: ['PVEVMAdmin'], delete: true });
    assert.equal(copy.acl.has('/pool/solo'), false);
    assert.equal(permissions(copy, 'dan@pve', '/vms/300', now).has('VM.Allocate'), false);
    setAcl(copy, '/pool/solo', { users: ['dan@pve'], roles: ['PVEVMAdmin'] });
    updatePool(copy, 'solo', { vms: [300], delete: true });
    removePool(copy, 'solo');
    assert.equal(copy.acl.has('/pool/solo'), false);
    assert.deepEqual(sorted(permissions(copy, 'dan@pve', '/vms/300', now)), ['VM.Audit']);
    addPool(copy, 'solo');
    updatePool(copy, 'solo', { vms: [300] });
    assert.deepEqual(
      sorted(permissions(copy, 'dan@pve', '/vms/300', now)),
      ['VM.Audit'],
      'a new pool inherits nothing',
    );
  });
});
