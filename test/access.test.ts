import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type AccessControlConfig,
  AccessControlNotInitialisedError,
  accessConfig,
  ConfigError,
  checkPrivileges,
  DEFAULT_ACCESS_BACKEND,
  importPveUserConfig,
  initAccessControl,
  PVE_ACCESS_CONTROL,
  PVE_BUILTIN_ROLES,
  PVE_PRIVILEGES,
  parseUserConfig,
  permissions,
  permissionsTree,
  rolesAt,
  type UserConfig,
} from '../src/index.js';

// Runs first, while nothing has been initialised in this process.
describe('access: initialisation', () => {
  it('throws a clear error before initAccessControl()', () => {
    assert.throws(
      () => accessConfig(),
      (e: unknown) =>
        e instanceof AccessControlNotInitialisedError &&
        e.code === 'ERR_ACCESS_CONTROL_NOT_INITIALISED' &&
        /configuration used before initAccessControl\(\)/.test(e.message),
    );
  });

  it('stores the configuration initAccessControl() is given, until the next call', () => {
    const custom: AccessControlConfig = {
      ...PVE_ACCESS_CONTROL,
      isSuperuser: (authid) => authid === 'boss@pve',
    };
    initAccessControl(custom);
    assert.equal(accessConfig(), custom);
    const { config } = parseUserConfig('user:boss@pve:1:0::::::');
    assert.ok(checkPrivileges(config, 'boss@pve', '/', ['Sys.PowerMgmt']), 'uses the init config');
    initAccessControl(PVE_ACCESS_CONTROL);
    assert.equal(accessConfig(), PVE_ACCESS_CONTROL);
    assert.equal(checkPrivileges(config, 'boss@pve', '/', ['Sys.PowerMgmt']), false);
  });

  it('the default backend re-adds root@pam', () => {
    const { config } = parseUserConfig('user:joe@pve:1:0::::::');
    assert.equal(config.users.has('root@pam'), false);
    DEFAULT_ACCESS_BACKEND.initUserConfig(config);
    assert.equal(config.users.get('root@pam')?.enable, true);
  });
});

describe('access: built-in roles', () => {
  const role = (name: string) => [...(PVE_BUILTIN_ROLES.get(name) ?? [])].sort();

  it('has the PVE 9.1 roles', () => {
    assert.deepEqual([...PVE_BUILTIN_ROLES.keys()].sort(), [
      'Administrator',
      'NoAccess',
      'PVEAdmin',
      'PVEAuditor',
      'PVEDatastoreAdmin',
      'PVEDatastoreUser',
      'PVEMappingAdmin',
      'PVEMappingUser',
      'PVEPoolAdmin',
      'PVEPoolUser',
      'PVESDNAdmin',
      'PVESDNUser',
      'PVESysAdmin',
      'PVETemplateUser',
      'PVEUserAdmin',
      'PVEVMAdmin',
      'PVEVMUser',
    ]);
  });

  // The expected lists are PVE 9.1's own (src/test/perm-test1.pl in pve-access-control).
  const PVE_VM_ADMIN = [
    'VM.Allocate',
    'VM.Audit',
    'VM.Backup',
    'VM.Clone',
    'VM.Config.CDROM',
    'VM.Config.CPU',
    'VM.Config.Cloudinit',
    'VM.Config.Disk',
    'VM.Config.HWType',
    'VM.Config.Memory',
    'VM.Config.Network',
    'VM.Config.Options',
    'VM.Console',
    'VM.GuestAgent.Audit',
    'VM.GuestAgent.FileRead',
    'VM.GuestAgent.FileSystemMgmt',
    'VM.GuestAgent.FileWrite',
    'VM.GuestAgent.Unrestricted',
    'VM.Migrate',
    'VM.PowerMgmt',
    'VM.Replicate',
    'VM.Snapshot',
    'VM.Snapshot.Rollback',
  ];

  it("has PVE 9.1's privileges: Administrator holds all of them, PVEVMAdmin every VM one", () => {
    const administrator = [
      ...['Datastore.Allocate', 'Datastore.AllocateSpace', 'Datastore.AllocateTemplate'],
      ...['Datastore.Audit', 'Group.Allocate', 'Mapping.Audit', 'Mapping.Modify', 'Mapping.Use'],
      ...['Permissions.Modify', 'Pool.Allocate', 'Pool.Audit', 'Realm.Allocate'],
      ...['Realm.AllocateUser', 'SDN.Allocate', 'SDN.Audit', 'SDN.Use', 'Sys.AccessNetwork'],
      ...['Sys.Audit', 'Sys.Console', 'Sys.Incoming', 'Sys.Modify', 'Sys.PowerMgmt'],
      ...['Sys.Syslog', 'User.Modify'],
      ...PVE_VM_ADMIN,
    ];
    assert.deepEqual([...PVE_PRIVILEGES], administrator);
    assert.deepEqual(role('Administrator'), administrator);
    assert.deepEqual(role('PVEVMAdmin'), PVE_VM_ADMIN);
    assert.equal(PVE_PRIVILEGES.includes('VM.Monitor'), false, 'PVE 9 dropped VM.Monitor');
  });

  it('reads a PVE 8 role naming VM.Monitor: a warning, the privilege dropped, the rest kept', () => {
    const pve8 = [
      'user:mon@pve:1:0::::::',
      'role:Monitoring:VM.Audit,VM.Monitor,Sys.Audit:',
      'acl:1:/vms:mon@pve:Monitoring:',
      '',
    ].join('\n');
    const imported = importPveUserConfig(pve8);
    assert.equal(imported.warnings.length, 1);
    assert.equal(imported.warnings[0]?.line, 2);
    assert.match(imported.warnings[0]?.message ?? '', /"VM.Monitor" of role "Monitoring": removed/);
    assert.deepEqual([...(imported.config.roles.get('Monitoring') ?? [])].sort(), [
      'Sys.Audit',
      'VM.Audit',
    ]);
    assert.match(imported.text, /^role:Monitoring:Sys.Audit,VM.Audit:$/m);
    assert.deepEqual([...permissions(imported.config, 'mon@pve', '/vms/100').keys()].sort(), [
      'Sys.Audit',
      'VM.Audit',
    ]);
    assert.equal(parseUserConfig(imported.text).warnings.length, 0, 'written back clean');
  });

  it('derives role contents from the privilege groups', () => {
    assert.deepEqual(role('NoAccess'), []);
    assert.deepEqual(role('PVEAuditor'), [
      'Datastore.Audit',
      'Mapping.Audit',
      'Pool.Audit',
      'SDN.Audit',
      'Sys.Audit',
      'VM.Audit',
      'VM.GuestAgent.Audit',
    ]);
    assert.deepEqual(role('PVEVMUser'), [
      'VM.Audit',
      'VM.Backup',
      'VM.Config.CDROM',
      'VM.Config.Cloudinit',
      'VM.Console',
      'VM.GuestAgent.Audit',
      'VM.GuestAgent.FileRead',
      'VM.GuestAgent.FileSystemMgmt',
      'VM.GuestAgent.FileWrite',
      'VM.PowerMgmt',
    ]);
    assert.deepEqual(role('PVESysAdmin'), ['Sys.Audit', 'Sys.Console', 'Sys.Syslog']);
    assert.deepEqual(role('PVEUserAdmin'), ['Group.Allocate', 'Realm.AllocateUser', 'User.Modify']);
    assert.deepEqual(role('PVESDNUser'), ['SDN.Audit', 'SDN.Use']);
    assert.deepEqual(role('PVEMappingUser'), ['Mapping.Audit', 'Mapping.Use']);
    assert.deepEqual(role('PVETemplateUser'), ['VM.Audit', 'VM.Clone']);
    for (const missing of [
      'Sys.PowerMgmt',
      'Sys.Modify',
      'Sys.Incoming',
      'Realm.Allocate',
      'Permissions.Modify',
      'Mapping.Modify',
    ]) {
      assert.ok(!PVE_BUILTIN_ROLES.get('PVEAdmin')?.has(missing), `PVEAdmin lacks ${missing}`);
    }
    assert.ok(PVE_BUILTIN_ROLES.get('PVEAdmin')?.has('Mapping.Use'));
  });
});

const CONFIG = `
user:root@pam:1:0::::::
token:root@pam!sep:1:0:1::
token:root@pam!full:1:0:0::
user:joe@pve:1:0::::::
token:joe@pve!full:1:0:0::
token:joe@pve!sep:1:0:1::
token:joe@pve!bare:1:0:1::
token:joe@pve!off:0:0:0::
token:joe@pve!old:1:1000:0::
user:ann@pve:1:0::::::
user:bob@pve:1:0::::::
user:gone@pve:1:1500::::::
user:off@pve:0:0::::::
group:staff:joe@pve,ann@pve,bob@pve,gone@pve,off@pve::
group:vmops:ann@pve::
role:Power:VM.PowerMgmt,VM.Audit:
acl:1:/:@staff:PVEAuditor:
acl:1:/vms:@vmops:PVEVMUser:
acl:1:/vms:joe@pve:PVEVMAdmin:
acl:0:/storage:joe@pve:PVEDatastoreUser:
acl:1:/vms/100:bob@pve:NoAccess:
acl:1:/vms/200:@vmops:NoAccess:
acl:1:/vms/200:ann@pve:Power:
acl:1:/vms:joe@pve!sep:Power:
acl:1:/nodes:joe@pve!sep:PVESysAdmin:
acl:1:/:root@pam!sep:PVEAuditor:
acl:0:/pool:bob@pve:PVEPoolAdmin:
`;

const AUDITOR = [
  'Datastore.Audit',
  'Mapping.Audit',
  'Pool.Audit',
  'SDN.Audit',
  'Sys.Audit',
  'VM.Audit',
  'VM.GuestAgent.Audit',
];
const VM_ADMIN = [...(PVE_BUILTIN_ROLES.get('PVEVMAdmin') ?? [])];
const VM_USER = [...(PVE_BUILTIN_ROLES.get('PVEVMUser') ?? [])];

describe('access: permissions', () => {
  const { config, warnings } = parseUserConfig(CONFIG);
  const now = 2000;

  it('parses the fixture cleanly', () => assert.deepEqual(warnings, []));

  const cases: Array<{ authid: string; path: string; expected: string[]; why: string }> = [
    {
      authid: 'root@pam',
      path: '/anything/at/all',
      expected: [...PVE_PRIVILEGES],
      why: 'superuser',
    },
    {
      authid: 'root@pam!full',
      path: '/x',
      expected: [...PVE_PRIVILEGES],
      why: 'privsep=0 token of root',
    },
    {
      authid: 'root@pam!sep',
      path: '/vms/1',
      expected: AUDITOR,
      why: "root's privsep token: its own ACL",
    },
    { authid: 'ann@pve', path: '/', expected: AUDITOR, why: 'group on /' },
    { authid: 'ann@pve', path: '/storage/local', expected: AUDITOR, why: 'propagated group' },
    { authid: 'ann@pve', path: '/vms/5', expected: VM_USER, why: 'deeper group entry replaces' },
    {
      authid: 'ann@pve',
      path: '/vms/200',
      expected: ['VM.Audit', 'VM.PowerMgmt'],
      why: 'user beats group NoAccess',
    },
    { authid: 'bob@pve', path: '/vms/200', expected: AUDITOR, why: 'not in vmops' },
    { authid: 'bob@pve', path: '/vms/100', expected: [], why: 'NoAccess for the user' },
    { authid: 'bob@pve', path: '/vms/100/disk', expected: [], why: 'NoAccess propagates' },
    {
      authid: 'bob@pve',
      path: '/pool',
      expected: ['Pool.Allocate', 'Pool.Audit'],
      why: 'non-propagating, on the path',
    },
    {
      authid: 'bob@pve',
      path: '/pool/p1',
      expected: AUDITOR,
      why: 'non-propagating does not reach children',
    },
    { authid: 'joe@pve', path: '/vms/7', expected: VM_ADMIN, why: 'user beats group at /vms' },
    {
      authid: 'joe@pve',
      path: '/storage',
      expected: ['Datastore.AllocateSpace', 'Datastore.Audit'],
      why: 'user entry on the path',
    },
    {
      authid: 'joe@pve',
      path: '/storage/local',
      expected: AUDITOR,
      why: 'falls back to propagated group',
    },
    { authid: 'joe@pve!full', path: '/vms/7', expected: VM_ADMIN, why: 'privsep=0: the user' },
    {
      authid: 'joe@pve!sep',
      path: '/vms/7',
      expected: ['VM.Audit', 'VM.PowerMgmt'],
      why: 'privsep=1: own ∩ user',
    },
    {
      authid: 'joe@pve!sep',
      path: '/nodes/n1',
      expected: ['Sys.Audit'],
      why: 'own PVESysAdmin ∩ user PVEAuditor',
    },
    { authid: 'joe@pve!sep', path: '/', expected: [], why: 'no own entry on /' },
    { authid: 'joe@pve!bare', path: '/vms', expected: [], why: 'privsep token without ACL' },
    { authid: 'joe@pve!off', path: '/', expected: [], why: 'disabled token' },
    { authid: 'joe@pve!old', path: '/', expected: [], why: 'expired token' },
    { authid: 'joe@pve!ghost', path: '/', expected: [], why: 'unknown token' },
    { authid: 'gone@pve', path: '/', expected: [], why: 'expired user' },
    { authid: 'off@pve', path: '/', expected: [], why: 'disabled user' },
    { authid: 'nobody@pve', path: '/', expected: [], why: 'unknown user' },
    { authid: 'bad id', path: '/', expected: [], why: 'invalid id' },
    { authid: 'ann@pve', path: 'vms', expected: [], why: 'invalid path' },
    { authid: 'ann@pve', path: '//vms//5/', expected: VM_USER, why: 'path is normalized' },
  ];
  for (const { authid, path, expected, why } of cases) {
    it(`${authid} at ${path}: ${why}`, () => {
      const granted = permissions(config, authid, path, now);
      assert.deepEqual([...granted.keys()].sort(), [...expected].sort());
      assert.equal(
        checkPrivileges(config, authid, path, ['VM.Audit']),
        expected.includes('VM.Audit'),
      );
    });
  }

  it('expiry depends on the time given', () => {
    assert.equal(permissions(config, 'gone@pve', '/', 1499).size, AUDITOR.length);
    assert.equal(permissions(config, 'gone@pve', '/', { now: 1500 }).size, 0);
    assert.equal(permissions(config, 'joe@pve!old', '/', 999).size, AUDITOR.length);
  });

  it('reports propagate flags like PVE, combined for privsep tokens', () => {
    assert.equal(permissions(config, 'bob@pve', '/pool', now).get('Pool.Allocate'), false);
    assert.equal(permissions(config, 'bob@pve', '/pool', now).get('Pool.Audit'), false);
    assert.equal(permissions(config, 'joe@pve', '/storage', now).get('Datastore.Audit'), false);
    assert.equal(permissions(config, 'ann@pve', '/', now).get('Sys.Audit'), true);
    assert.equal(permissions(config, 'joe@pve!sep', '/vms/1', now).get('VM.Audit'), true);
    assert.equal(permissions(config, 'root@pam', '/', now).get('Sys.PowerMgmt'), true);
  });

  it('rolesAt returns the deciding roles and only NoAccess when it is there', () => {
    assert.deepEqual(rolesAt(config, 'bob@pve', '/vms/100'), new Map([['NoAccess', true]]));
    assert.deepEqual(rolesAt(config, 'joe@pve', '/vms/1'), new Map([['PVEVMAdmin', true]]));
    assert.deepEqual(rolesAt(config, 'joe@pve!sep', '/'), new Map());
  });

  it('checkPrivileges: all, any, empty and unknown', () => {
    const storage = ['Datastore.AllocateSpace', 'Datastore.Allocate'];
    assert.equal(checkPrivileges(config, 'joe@pve', '/storage', storage), false);
    assert.equal(checkPrivileges(config, 'joe@pve', '/storage', storage, { any: true }), true);
    assert.equal(checkPrivileges(config, 'joe@pve', '/storage', []), false);
    assert.equal(checkPrivileges(config, 'joe@pve', '/storage', [], { any: true }), false);
    assert.throws(
      () => checkPrivileges(config, 'joe@pve', '/', ['VM.Fly']),
      (e: unknown) => e instanceof ConfigError && e.problem === 'invalid',
    );
    assert.equal(checkPrivileges(config, 'gone@pve', '/', ['Sys.Audit'], { now: 1499 }), true);
    assert.equal(checkPrivileges(config, 'gone@pve', '/', ['Sys.Audit'], { now: 1500 }), false);
  });

  it('permissionsTree lists top-level and ACL paths with privileges', () => {
    const tree = permissionsTree(config, 'joe@pve!sep', { now });
    assert.deepEqual(Object.keys(tree), ['/nodes', '/vms', '/vms/100', '/vms/200']);
    assert.deepEqual(tree['/nodes'], { 'Sys.Audit': 1 });
    assert.deepEqual(tree['/vms'], { 'VM.Audit': 1, 'VM.PowerMgmt': 1 });
    const bob = permissionsTree(config, 'bob@pve', { now });
    assert.equal(bob['/vms/100'], undefined, 'paths without privileges are left out');
    assert.deepEqual(bob['/pool'], { 'Pool.Allocate': 0, 'Pool.Audit': 0 });
    assert.equal(Object.keys(bob).includes('/access/groups'), true);
    assert.deepEqual(permissionsTree(config, 'off@pve', { now }), {});
  });
});

describe('access: custom configuration', () => {
  it('honours a product without NoAccess and with its own privileges', () => {
    const access: AccessControlConfig = {
      privileges: new Set(['Read', 'Write']),
      roles: new Map([
        ['Reader', new Set(['Read'])],
        ['Deny', new Set<string>()],
      ]),
      isSuperuser: () => false,
      noAccessRole: null,
    };
    const { config, warnings } = parseUserConfig(
      'user:a@pve:1:0::::::\nrole:Writer:Write,VM.Audit:\nacl:1:/:a@pve:Reader,Deny,Writer:',
      { access },
    );
    assert.equal(warnings.length, 1, 'VM.Audit is not a privilege here');
    const granted: UserConfig = config;
    assert.deepEqual([...permissions(granted, 'a@pve', '/x', { access, now: 0 }).keys()].sort(), [
      'Read',
      'Write',
    ]);
  });
});

describe('access: the roles of a token', () => {
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
});
