import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeText, encodeText } from '../src/config/encoding.js';
import { normalizeAclPath } from '../src/config/syntax.js';
import {
  addGroup,
  addRole,
  addToken,
  addUser,
  ConfigError,
  createUserConfig,
  groupsOfUser,
  importPveUserConfig,
  isTokenActive,
  isUserActive,
  listAcl,
  parseUserConfig,
  removeGroup,
  removeRole,
  removeToken,
  removeUser,
  setAcl,
  TokenShadowError,
  type UserConfig,
  updateGroup,
  updateRole,
  updateToken,
  updateUser,
  writeUserConfig,
} from '../src/index.js';

const SAMPLE = `# token-shadow user.cfg
user:root@pam:1:0:::root@example.com:::
user:joe@pve:1:1900000000:Joe:Doe%3A%25:joe@example.com:a%20comment::
token:joe@pve!ci:1:0:1:CI%20token:
token:joe@pve!old:0:1700000000:0::
user:ann@pam:0:0::::::
token:ann@pam!ro:1:0:0::

group:admins:joe@pve,ann@pam:Admins:
group:empty:::

role:Ops:VM.Audit,VM.PowerMgmt:

acl:1:/:@admins:PVEAuditor:
acl:1:/vms:joe@pve:PVEVMUser:
acl:0:/vms/100:joe@pve!ci:Ops:
`;

function expectConfigError(fn: () => unknown, problem: string, pattern?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    assert.equal(error.problem, problem);
    assert.equal(error.code, `ERR_CONFIG_${problem.toUpperCase().replace(/-/g, '_')}`);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

function roundTrip(config: UserConfig): void {
  const text = writeUserConfig(config);
  const again = parseUserConfig(text);
  assert.deepEqual(again.warnings, []);
  assert.deepEqual(again.config, config);
  assert.equal(writeUserConfig(again.config), text);
}

describe('config: parsing', () => {
  it('reads every entry type of the sample', () => {
    const { config, warnings } = parseUserConfig(SAMPLE);
    assert.deepEqual(warnings, []);
    assert.deepEqual([...config.users.keys()].sort(), ['ann@pam', 'joe@pve', 'root@pam']);
    const joe = config.users.get('joe@pve');
    assert.equal(joe?.lastname, 'Doe:%');
    assert.equal(joe?.comment, 'a comment');
    assert.equal(joe?.expire, 1900000000);
    assert.equal(config.users.get('ann@pam')?.enable, false);
    assert.deepEqual(joe?.tokens.get('ci'), {
      enable: true,
      expire: 0,
      privsep: true,
      comment: 'CI token',
    });
    assert.deepEqual(joe?.tokens.get('old'), {
      enable: false,
      expire: 1700000000,
      privsep: false,
      comment: '',
    });
    assert.deepEqual([...(config.groups.get('admins')?.members ?? [])].sort(), [
      'ann@pam',
      'joe@pve',
    ]);
    assert.deepEqual(config.groups.get('empty'), { comment: '', members: new Set() });
    assert.deepEqual(config.roles.get('Ops'), new Set(['VM.Audit', 'VM.PowerMgmt']));
    assert.deepEqual(listAcl(config), [
      { path: '/', type: 'group', ugid: 'admins', roleid: 'PVEAuditor', propagate: true },
      { path: '/vms', type: 'user', ugid: 'joe@pve', roleid: 'PVEVMUser', propagate: true },
      { path: '/vms/100', type: 'token', ugid: 'joe@pve!ci', roleid: 'Ops', propagate: false },
    ]);
  });

  it('round-trips the sample and writes it canonically', () => {
    const { config } = parseUserConfig(SAMPLE);
    roundTrip(config);
    const text = writeUserConfig(config);
    assert.equal(
      text,
      [
        'user:ann@pam:0:0::::::',
        'token:ann@pam!ro:1:0:0::',
        'user:joe@pve:1:1900000000:Joe:Doe%3A%25:joe@example.com:a%20comment::',
        'token:joe@pve!ci:1:0:1:CI%20token:',
        'token:joe@pve!old:0:1700000000:0::',
        'user:root@pam:1:0:::root@example.com:::',
        '',
        'group:admins:ann@pam,joe@pve:Admins:',
        'group:empty:::',
        '',
        'role:Ops:VM.Audit,VM.PowerMgmt:',
        '',
        'acl:1:/:@admins:PVEAuditor:',
        'acl:1:/vms:joe@pve:PVEVMUser:',
        'acl:0:/vms/100:joe@pve!ci:Ops:',
        '',
      ].join('\n'),
    );
  });

  it('trims lines and fields, takes CRLF, and defaults empty fields', () => {
    const text = '  user: joe@pve :1::::::: \r\n\ttoken:joe@pve!a:1::::\r\n#comment\r\n';
    const { config, warnings } = parseUserConfig(text);
    assert.deepEqual(warnings, []);
    const joe = config.users.get('joe@pve');
    assert.equal(joe?.enable, true);
    assert.equal(joe?.expire, 0);
    assert.deepEqual(joe?.tokens.get('a'), {
      enable: true,
      expire: 0,
      privsep: false,
      comment: '',
    });
  });

  it('never grants more for a line cut short: an empty ENABLE is disabled, a token needs PRIVSEP', () => {
    const text = '  user: joe@pve ::: \r\n\ttoken:joe@pve!a\r\n#comment\r\n';
    const { config, warnings } = parseUserConfig(text);
    assert.deepEqual(
      warnings.map((w) => w.line),
      [2, 2],
    );
    const joe = config.users.get('joe@pve');
    assert.equal(joe?.enable, false, 'empty ENABLE is disabled, as in PVE');
    assert.equal(joe?.tokens.has('a'), false, 'a token without PRIVSEP is dropped');
  });

  it('groups ACL ids by propagate flag and role list when writing', () => {
    const config = createUserConfig();
    addUser(config, 'a@pve');
    addUser(config, 'b@pve');
    addGroup(config, 'g');
    setAcl(config, '/x', { users: ['b@pve', 'a@pve'], roles: ['PVEAuditor', 'NoAccess'] });
    setAcl(config, '/x', { groups: ['g'], roles: ['PVEAuditor'], propagate: false });
    setAcl(config, '/x', { users: ['a@pve'], roles: ['PVEVMUser'], propagate: false });
    const acl = writeUserConfig(config).split('\n\n').at(-1);
    assert.equal(
      acl,
      [
        'acl:0:/x:a@pve:PVEVMUser:',
        'acl:1:/x:a@pve,b@pve:NoAccess,PVEAuditor:',
        'acl:0:/x:@g:PVEAuditor:',
        '',
      ].join('\n'),
    );
    roundTrip(config);
  });
});

describe('config: warnings', () => {
  const cases: Array<{ name: string; text: string; line: number; message: RegExp }> = [
    {
      name: 'token before its user',
      text: 'token:joe@pve!a:1:0:1::\nuser:joe@pve:1:0::::::',
      line: 1,
      message: /user does not exist/,
    },
    {
      name: 'token without user',
      text: 'user:ann@pve:1:0::::::\n\ntoken:joe@pve!a:1:0:1::',
      line: 3,
      message: /user does not exist/,
    },
    {
      name: 'invalid token id',
      text: 'token:joe@pve:1:0:1::',
      line: 1,
      message: /invalid token id/,
    },
    { name: 'invalid user id', text: 'user:joe:1:0::::::', line: 1, message: /invalid user id/ },
    {
      name: 'user id is a token id',
      text: 'user:joe@pve!x:1:0::::::',
      line: 1,
      message: /invalid user id/,
    },
    { name: 'bad enable', text: 'user:joe@pve:yes:0::::::', line: 1, message: /invalid enable/ },
    { name: 'bad expire', text: 'user:joe@pve:1:-5::::::', line: 1, message: /invalid expire/ },
    {
      name: 'huge expire',
      text: 'user:joe@pve:1:99999999999999999999::::::',
      line: 1,
      message: /invalid expire/,
    },
    {
      name: 'bad token privsep',
      text: 'user:j@pve:1:0::::::\ntoken:j@pve!t:1:0:2::',
      line: 2,
      message: /invalid privsep/,
    },
    {
      name: 'bad token expire',
      text: 'user:j@pve:1:0::::::\ntoken:j@pve!t:1:x:1::',
      line: 2,
      message: /invalid expire/,
    },
    {
      name: 'bad token enable',
      text: 'user:j@pve:1:0::::::\ntoken:j@pve!t:on:0:1::',
      line: 2,
      message: /invalid enable/,
    },
    {
      name: 'duplicate user',
      text: 'user:j@pve:1:0::::::\nuser:j@pve:0:0::::::',
      line: 2,
      message: /duplicate user/,
    },
    {
      name: 'duplicate token',
      text: 'user:j@pve:1:0::::::\ntoken:j@pve!t:1:0:1::\ntoken:j@pve!t:1:0:1::',
      line: 3,
      message: /duplicate token/,
    },
    {
      name: 'too many fields',
      text: 'user:j@pve:1:0:a:b:c:d:e:f:',
      line: 1,
      message: /too many fields/,
    },
    { name: 'unknown type', text: '\n\nbogus:1:2', line: 3, message: /unknown type "bogus"/ },
    { name: 'pool', text: 'pool:a/b/c/d:::', line: 1, message: /invalid pool id/ },
    { name: 'bad group id', text: 'group:bad name:::', line: 1, message: /invalid group id/ },
    {
      name: 'group member missing',
      text: 'group:g:joe@pve::',
      line: 1,
      message: /member "joe@pve".*no such user/,
    },
    {
      name: 'group member invalid',
      text: 'group:g:joe::',
      line: 1,
      message: /member "joe".*invalid user id/,
    },
    {
      name: 'duplicate group',
      text: 'group:g:::\ngroup:g:::',
      line: 2,
      message: /duplicate group/,
    },
    { name: 'bad role id', text: 'role:a b:VM.Audit:', line: 1, message: /invalid role id/ },
    {
      name: 'built-in role',
      text: 'role:PVEAdmin:VM.Audit:',
      line: 1,
      message: /built-in role cannot be redefined/,
    },
    {
      name: 'unknown privilege',
      text: 'role:R:VM.Audit,VM.Fly:',
      line: 1,
      message: /unknown privilege "VM.Fly"/,
    },
    {
      name: 'acl unknown role',
      text: 'user:j@pve:1:0::::::\nacl:1:/:j@pve:Ghost:',
      line: 2,
      message: /unknown role "Ghost"/,
    },
    {
      name: 'acl missing user',
      text: 'acl:1:/:joe@pve:PVEAuditor:',
      line: 1,
      message: /unknown user "joe@pve"/,
    },
    {
      name: 'acl missing group',
      text: 'acl:1:/:@ops:PVEAuditor:',
      line: 1,
      message: /unknown group "@ops"/,
    },
    {
      name: 'acl missing token',
      text: 'user:j@pve:1:0::::::\nacl:1:/:j@pve!t:PVEAuditor:',
      line: 2,
      message: /unknown token "j@pve!t"/,
    },
    {
      name: 'acl invalid ugid',
      text: 'acl:1:/:nobody:PVEAuditor:',
      line: 1,
      message: /invalid user or token "nobody"/,
    },
    {
      name: 'acl bad path',
      text: 'acl:1:vms:@g:PVEAuditor:',
      line: 1,
      message: /invalid path "vms"/,
    },
    {
      name: 'acl dot path',
      text: 'acl:1:/vms/../x:@g:PVEAuditor:',
      line: 1,
      message: /invalid path/,
    },
    {
      name: 'acl bad propagate',
      text: 'acl:2:/:@g:PVEAuditor:',
      line: 1,
      message: /invalid propagate/,
    },
    {
      name: 'acl without members',
      text: 'acl:1:/::PVEAuditor:',
      line: 1,
      message: /without users, groups or tokens/,
    },
    {
      name: 'acl with an empty list',
      text: 'group:g:::\nacl:1:/: , ;:PVEAuditor:',
      line: 2,
      message: /without users, groups or tokens/,
    },
    {
      name: 'acl without roles',
      text: 'group:g:::\nacl:1:/:@g::',
      line: 2,
      message: /without roles/,
    },
  ];
  for (const { name, text, line, message } of cases) {
    it(`warns: ${name}`, () => {
      const { warnings } = parseUserConfig(text);
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      const [warning] = warnings;
      assert.equal(warning?.line, line);
      assert.match(warning?.message ?? '', message);
      assert.match(warning?.message ?? '', new RegExp(`^line ${line}: `));
    });
  }

  it('skips only the bad part of a line and keeps the rest', () => {
    const text = 'user:j@pve:1:0::::::\nrole:R:VM.Audit,Nope:\nacl:1:/:j@pve,@nope:R,Ghost:';
    const { config, warnings } = parseUserConfig(text);
    assert.deepEqual(
      warnings.map((w) => w.line),
      [2, 3, 3],
    );
    assert.deepEqual(config.roles.get('R'), new Set(['VM.Audit']));
    assert.deepEqual(listAcl(config), [
      { path: '/', type: 'user', ugid: 'j@pve', roleid: 'R', propagate: true },
    ]);
  });

  it('quotes the line escaped and truncated, and hides the key list', () => {
    const evil = `acl:1:/:\u001b[31m${'x'.repeat(300)}:PVEAuditor:`;
    const { warnings } = parseUserConfig(evil);
    const message = warnings[0]?.message ?? '';
    assert.ok(!message.includes('\u001b'));
    assert.ok(message.length < 400, `message is ${message.length} long`);
    const secret = 'JBSWY3DPEHPK3PXP';
    const user = parseUserConfig(`user:joe@pve:maybe:0:::::x!${secret}:`);
    assert.equal(user.warnings.length, 1);
    assert.ok(!user.warnings[0]?.message.includes(secret), user.warnings[0]?.message);
    assert.match(user.warnings[0]?.message ?? '', /\*\*\*/);
  });

  it('normalizes ACL paths like PVE, but insists on a leading slash', () => {
    const cases: Array<[string, string | null]> = [
      ['/', '/'],
      ['//', '/'],
      ['/vms/', '/vms'],
      ['/vms//100', '/vms/100'],
      ['///storage///local//', '/storage/local'],
      ['vms', null],
      ['', null],
      ['/vms/1 00', null],
      ['/a/./b', null],
      ['/é', null],
    ];
    for (const [input, expected] of cases) assert.equal(normalizeAclPath(input), expected, input);
    const { config } = parseUserConfig('group:g:::\nacl:1://vms//100/:@g:PVEAuditor:');
    assert.deepEqual([...config.acl.keys()], ['/vms/100']);
  });
});

describe('config: PVE dialect', () => {
  const PVE = [
    'user:root@pam:1:0:::root@example.com:::',
    'user:joe@pve:1:0:::::',
    'token:joe@pve!ci::1:',
    'user:ann@pam:1:0::::::',
    'token:ann@pam!ro:::',
    'token:ann@pam!full:1800000000:0:deploy%20key:',
    'user:off@pve::0::::::',
    '',
    'group:admins:joe@pve:',
    'acl:1:/:@admins,ann@pam!ro:PVEAuditor:',
  ].join('\n');

  it('reads tokens without ENABLE: enabled, empty expire and privsep are 0', () => {
    const { config, warnings } = parseUserConfig(PVE, { dialect: 'pve' });
    assert.deepEqual(warnings, []);
    assert.deepEqual(config.users.get('joe@pve')?.tokens.get('ci'), {
      enable: true,
      expire: 0,
      privsep: true,
      comment: '',
    });
    assert.deepEqual(config.users.get('ann@pam')?.tokens.get('ro'), {
      enable: true,
      expire: 0,
      privsep: false,
      comment: '',
    });
    assert.deepEqual(config.users.get('ann@pam')?.tokens.get('full'), {
      enable: true,
      expire: 1800000000,
      privsep: false,
      comment: 'deploy key',
    });
    assert.equal(config.users.get('off@pve')?.enable, false, 'PVE reads an empty ENABLE as 0');
  });

  it('reads the same text differently in our dialect', () => {
    const ours = parseUserConfig('user:joe@pve:1:0::::::\ntoken:joe@pve!ci::1:');
    assert.equal(ours.config.users.get('joe@pve')?.tokens.has('ci'), false, 'no PRIVSEP: dropped');
    assert.match(ours.warnings.at(-1)?.message ?? '', /privsep missing or cut/);
    // Our form has one field too many for PVE, which reads the first four as its own.
    const pve = parseUserConfig('user:x@pve:1\ntoken:x@pve!tk:1:0:1:c:\n', { dialect: 'pve' });
    assert.deepEqual(
      pve.warnings.map((w) => w.message),
      ['line 2: ignoring the fields after the first 4, as PVE does: "token:x@pve!tk:1:0:1:c:"'],
    );
    assert.deepEqual(pve.config.users.get('x@pve')?.tokens.get('tk'), {
      enable: true,
      expire: 1,
      privsep: false,
      comment: '1',
    });
  });

  it('imports PVE into our format', () => {
    const imported = importPveUserConfig(PVE);
    assert.deepEqual(imported.warnings, []);
    assert.match(imported.text, /^token:joe@pve!ci:1:0:1::$/m);
    assert.match(imported.text, /^token:ann@pam!ro:1:0:0::$/m);
    assert.match(imported.text, /^token:ann@pam!full:1:1800000000:0:deploy%20key:$/m);
    const reread = parseUserConfig(imported.text);
    assert.deepEqual(reread.warnings, []);
    assert.deepEqual(reread.config, imported.config);
  });

  it('rejects an unknown dialect and a non-string text with ConfigError', () => {
    expectConfigError(() => parseUserConfig('', { dialect: 'x' as 'pve' }), 'invalid');
    expectConfigError(() => parseUserConfig(42 as unknown as string), 'invalid');
  });
});

describe('config: text encoding', () => {
  const cases: Array<[string, string]> = [
    ['plain', 'plain'],
    ['a:b', 'a%3Ab'],
    ['100%', '100%25'],
    ['two words', 'two%20words'],
    ['tab\tnew\nline', 'tab%09new%0Aline'],
    ['Grüße', 'Gr%C3%BC%C3%9Fe'],
    ['🙂', '%F0%9F%99%82'],
    ['', ''],
  ];
  for (const [text, encoded] of cases) {
    it(`encodes ${JSON.stringify(text)}`, () => {
      assert.equal(encodeText(text), encoded);
      assert.equal(decodeText(encoded), text);
    });
  }

  it('decodes what PVE writes: raw spaces and %, lower-case hex, stray %', () => {
    assert.equal(decodeText('a b'), 'a b');
    assert.equal(decodeText('100%'), '100%');
    assert.equal(decodeText('%zz%4'), '%zz%4');
    assert.equal(decodeText('%c3%a9'), 'é');
    assert.equal(decodeText('%FF'), '\uFFFD', 'invalid UTF-8 becomes U+FFFD, as in Perl');
    assert.equal(decodeText('é%20'), 'é ');
  });

  it('decode(encode(s)) is s for every well-formed string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (text) => {
        const encoded = encodeText(text);
        assert.match(encoded, /^[\x21-\x39\x3b-\x7e]*$/);
        assert.ok(!/%(?![0-9A-F]{2})/.test(encoded));
        assert.equal(decodeText(encoded), text);
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips comments with ":" "%" spaces and unicode through a file', () => {
    const config = createUserConfig();
    const comment = ' lead: 100% ünïcødé 🙂 trail \n';
    addUser(config, 'joe@pve', { comment, firstname: 'Jo:e', lastname: '%41' });
    addToken(config, 'joe@pve!t', { comment });
    addGroup(config, 'g', { comment });
    const { config: again } = parseUserConfig(writeUserConfig(config));
    assert.equal(again.users.get('joe@pve')?.comment, comment);
    assert.equal(again.users.get('joe@pve')?.lastname, '%41');
    assert.equal(again.users.get('joe@pve')?.tokens.get('t')?.comment, comment);
    assert.equal(again.groups.get('g')?.comment, comment);
    roundTrip(config);
  });
});

describe('config: mutators', () => {
  function base(): UserConfig {
    return parseUserConfig(SAMPLE).config;
  }

  it('adds, updates and removes users', () => {
    const config = base();
    const user = addUser(config, 'new@pve', { email: 'n@x.org', groups: ['admins'], expire: 5 });
    assert.equal(user.enable, true);
    assert.deepEqual(groupsOfUser(config, 'new@pve'), ['admins']);
    expectConfigError(() => addUser(config, 'new@pve'), 'exists');
    expectConfigError(() => addUser(config, 'bad'), 'invalid', /invalid user id "bad"/);
    expectConfigError(() => addUser(config, 'x@pve', { groups: ['nope'] }), 'not-found');
    assert.equal(config.users.has('x@pve'), false, 'a failed add leaves nothing behind');
    expectConfigError(() => addUser(config, 'y@pve', { email: 'a b' }), 'invalid');
    expectConfigError(() => addUser(config, 'y@pve', { expire: -1 }), 'invalid');
    expectConfigError(() => addUser(config, 'y@pve', { comment: '\ud800' }), 'invalid');
    updateUser(config, 'new@pve', { enable: false, comment: 'c', groups: ['empty'], append: true });
    assert.deepEqual(groupsOfUser(config, 'new@pve'), ['admins', 'empty']);
    updateUser(config, 'new@pve', { groups: ['empty'] });
    assert.deepEqual(groupsOfUser(config, 'new@pve'), ['empty']);
    assert.equal(config.users.get('new@pve')?.enable, false);
    expectConfigError(() => updateUser(config, 'ghost@pve', {}), 'not-found');
    roundTrip(config);
  });

  it('removing a user removes its tokens, memberships and ACL entries', () => {
    const config = base();
    removeUser(config, 'joe@pve');
    assert.equal(config.users.has('joe@pve'), false);
    assert.deepEqual([...(config.groups.get('admins')?.members ?? [])], ['ann@pam']);
    assert.deepEqual(
      listAcl(config).map((e) => e.ugid),
      ['admins'],
    );
    assert.equal(config.acl.has('/vms/100'), false, 'empty ACL nodes are dropped');
    expectConfigError(() => removeUser(config, 'joe@pve'), 'not-found');
    roundTrip(config);
  });

  it('adds, updates and removes tokens', () => {
    const config = base();
    const token = addToken(config, 'ann@pam!new');
    assert.deepEqual(token, { enable: true, expire: 0, privsep: true, comment: '' });
    expectConfigError(() => addToken(config, 'ann@pam!new'), 'exists');
    expectConfigError(() => addToken(config, 'ghost@pam!t'), 'not-found');
    expectConfigError(() => addToken(config, 'ann@pam'), 'invalid');
    updateToken(config, 'ann@pam!new', { enable: false, privsep: false, expire: 9 });
    assert.deepEqual(config.users.get('ann@pam')?.tokens.get('new'), {
      enable: false,
      expire: 9,
      privsep: false,
      comment: '',
    });
    expectConfigError(() => updateToken(config, 'ann@pam!nope', {}), 'not-found');
    removeToken(config, 'joe@pve!ci');
    assert.equal(config.users.get('joe@pve')?.tokens.has('ci'), false);
    assert.equal(
      listAcl(config).some((e) => e.type === 'token'),
      false,
    );
    expectConfigError(() => removeToken(config, 'joe@pve!ci'), 'not-found');
    roundTrip(config);
  });

  it('adds, updates and removes groups', () => {
    const config = base();
    addGroup(config, 'ops', { members: ['ann@pam'], comment: 'x' });
    expectConfigError(() => addGroup(config, 'ops'), 'exists');
    expectConfigError(() => addGroup(config, 'bad name'), 'invalid');
    expectConfigError(() => addGroup(config, 'g2', { members: ['ghost@pve'] }), 'not-found');
    updateGroup(config, 'ops', { members: ['joe@pve'] });
    assert.deepEqual(groupsOfUser(config, 'joe@pve'), ['admins', 'ops']);
    removeGroup(config, 'admins');
    assert.equal(config.acl.has('/'), false, "the group's ACL entries go with it");
    assert.equal(config.users.has('ann@pam'), true, 'members stay');
    expectConfigError(() => removeGroup(config, 'admins'), 'not-found');
    roundTrip(config);
  });

  it('adds, updates and removes roles', () => {
    const config = base();
    addRole(config, 'Backup', ['VM.Backup']);
    expectConfigError(() => addRole(config, 'Backup'), 'exists');
    expectConfigError(() => addRole(config, 'Administrator'), 'exists');
    expectConfigError(() => addRole(config, 'PVEMine'), 'invalid', /reserved prefix/);
    expectConfigError(() => addRole(config, 'X', ['VM.Fly']), 'invalid');
    updateRole(config, 'Backup', ['VM.Audit'], { append: true });
    assert.deepEqual(config.roles.get('Backup'), new Set(['VM.Backup', 'VM.Audit']));
    updateRole(config, 'Backup', ['Sys.Audit']);
    assert.deepEqual(config.roles.get('Backup'), new Set(['Sys.Audit']));
    expectConfigError(() => updateRole(config, 'PVEAdmin', []), 'invalid');
    expectConfigError(() => removeRole(config, 'NoAccess'), 'invalid');
    removeRole(config, 'Ops');
    assert.equal(config.roles.has('Ops'), false);
    assert.equal(config.acl.has('/vms/100'), false, 'ACL entries granting it are removed');
    expectConfigError(() => removeRole(config, 'Ops'), 'not-found');
    roundTrip(config);
  });

  it('sets and deletes ACL entries like PUT /access/acl', () => {
    const config = base();
    setAcl(config, '/storage//local/', {
      users: ['ann@pam'],
      tokens: ['joe@pve!ci'],
      groups: ['empty'],
      roles: ['PVEDatastoreUser', 'Ops'],
    });
    const entries = listAcl(config).filter((e) => e.path === '/storage/local');
    assert.equal(entries.length, 6);
    assert.ok(entries.every((e) => e.propagate));
    setAcl(config, '/storage/local', {
      users: ['ann@pam'],
      tokens: ['joe@pve!ci'],
      groups: ['empty'],
      roles: ['PVEDatastoreUser', 'Ops'],
      delete: true,
    });
    assert.equal(config.acl.has('/storage/local'), false);
    expectConfigError(
      () => setAcl(config, 'storage', { users: ['ann@pam'], roles: ['Ops'] }),
      'invalid',
    );
    expectConfigError(() => setAcl(config, '/', { roles: ['Ops'] }), 'invalid', /no users/);
    expectConfigError(() => setAcl(config, '/', { users: ['ann@pam'], roles: [] }), 'invalid');
    expectConfigError(
      () => setAcl(config, '/', { users: ['ann@pam'], roles: ['Nope'] }),
      'not-found',
    );
    expectConfigError(() => setAcl(config, '/', { users: ['x@pve'], roles: ['Ops'] }), 'not-found');
    expectConfigError(
      () => setAcl(config, '/', { tokens: ['ann@pam!x'], roles: ['Ops'] }),
      'not-found',
    );
    expectConfigError(
      () => setAcl(config, '/', { tokens: ['ann@pam'], roles: ['Ops'] }),
      'invalid',
    );
    expectConfigError(() => setAcl(config, '/', { groups: ['nope'], roles: ['Ops'] }), 'not-found');
    const before = writeUserConfig(config);
    expectConfigError(
      () => setAcl(config, '/', { users: ['ann@pam', 'ghost@pve'], roles: ['Ops'] }),
      'not-found',
    );
    assert.equal(writeUserConfig(config), before, 'nothing changes when a request fails');
    roundTrip(config);
  });

  it('refuses to write values that would break the format', () => {
    const config = createUserConfig();
    addUser(config, 'joe@pve');
    const joe = config.users.get('joe@pve');
    assert.ok(joe);
    joe.email = 'a\nuser:evil@pve:1:0::::::';
    expectConfigError(() => writeUserConfig(config), 'invalid');
    joe.email = '';
    joe.expire = 1.5;
    expectConfigError(() => writeUserConfig(config), 'invalid');
    joe.expire = 0;
    config.roles.set('Bad:Role', new Set());
    expectConfigError(() => writeUserConfig(config), 'invalid');
  });
});

describe('config: activity', () => {
  const { config } = parseUserConfig(
    [
      'user:on@pve:1:0::::::',
      'token:on@pve!ok:1:0:1::',
      'token:on@pve!off:0:0:1::',
      'token:on@pve!exp:1:1000:1::',
      'user:late@pve:1:2000::::::',
      'token:late@pve!t:1:0:1::',
      'user:off@pve:0:0::::::',
      'token:off@pve!t:1:0:1::',
    ].join('\n'),
  );
  const cases: Array<[string, number, boolean]> = [
    ['on@pve', 5000, true],
    ['late@pve', 1999, true],
    ['late@pve', 2000, false],
    ['off@pve', 0, false],
    ['ghost@pve', 0, false],
  ];
  for (const [userid, now, expected] of cases) {
    it(`user ${userid} at ${now} is ${expected ? '' : 'not '}active`, () => {
      assert.equal(isUserActive(config, userid, now), expected);
    });
  }
  const tokens: Array<[string, number, boolean]> = [
    ['on@pve!ok', 5000, true],
    ['on@pve!off', 0, false],
    ['on@pve!exp', 999, true],
    ['on@pve!exp', 1000, false],
    ['late@pve!t', 1999, true],
    ['late@pve!t', 2000, false],
    ['off@pve!t', 0, false],
    ['on@pve!ghost', 0, false],
    ['on@pve', 0, false],
    ['not an id', 0, false],
  ];
  for (const [tokenid, now, expected] of tokens) {
    it(`token ${tokenid} at ${now} is ${expected ? '' : 'not '}active`, () => {
      assert.equal(isTokenActive(config, tokenid, now), expected);
    });
  }
});

describe('config: fuzzing', () => {
  const userids = ['joe@pve', 'ann@pam', 'root@pam', 'we!rd@pve'];
  const tokenNames = ['ci', 'ro', '_x.y'];
  const groupids = ['admins', 'ops', 'bad name', ''];
  const roleids = ['Ops', 'Backup', 'PVEAuditor', 'NoAccess', 'Administrator', 'Ghost', 'b:d'];
  const privs = ['VM.Audit', 'VM.PowerMgmt', 'Sys.Audit', 'VM.Fly', ''];
  const paths = ['/', '/vms', '//vms/100/', '/storage/local', 'vms', '/a/../b', ''];
  const junk = fc.string({ maxLength: 10, unit: 'binary' });
  const pick = <T>(values: T[]) => fc.constantFrom(...values);
  const maybe = (arb: fc.Arbitrary<string>) => fc.oneof({ weight: 20, arbitrary: arb }, junk);
  const flag = maybe(pick(['0', '1', '', '2']));
  const expire = maybe(pick(['0', '', '1700000000', '1.5', '99999999999999999999']));
  const text = fc.oneof(
    { weight: 8, arbitrary: fc.string({ maxLength: 10 }).map(encodeText) },
    { weight: 1, arbitrary: junk },
  );
  const list = (values: string[]) =>
    fc
      .tuple(fc.array(pick(values), { maxLength: 3 }), pick([',', ';', ' ']))
      .map(([items, separator]) => items.join(separator));
  const userid = maybe(pick(userids));
  const tokenid = maybe(
    fc.tuple(pick(userids), pick(tokenNames)).map(([user, token]) => `${user}!${token}`),
  );
  const ugid = fc.oneof(
    pick(userids),
    pick(groupids).map((group) => `@${group}`),
    fc.tuple(pick(userids), pick(tokenNames)).map(([user, token]) => `${user}!${token}`),
  );
  const fields = (...parts: fc.Arbitrary<string>[]) =>
    fc.tuple(...parts).map((values) => `${values.join(':')}:`);
  const userLine = fields(
    fc.constant('user'),
    userid,
    flag,
    expire,
    text,
    text,
    maybe(pick(['', 'a@b.c'])),
    text,
    maybe(pick(['', 'x!y'])),
  );
  const tokenLine = fc.oneof(
    fields(fc.constant('token'), tokenid, flag, expire, flag, text),
    fields(fc.constant('token'), tokenid, expire, flag),
  );
  const groupLine = fields(fc.constant('group'), maybe(pick(groupids)), maybe(list(userids)), text);
  const roleLine = fields(fc.constant('role'), maybe(pick(roleids)), maybe(list(privs)));
  const aclLine = fields(
    fc.constant('acl'),
    flag,
    maybe(pick(paths)),
    fc.array(ugid, { maxLength: 3 }).map((items) => items.join(',')),
    maybe(list(roleids)),
  );
  const junkLine = fc.oneof(
    fc.string({ maxLength: 60, unit: 'binary' }),
    fc.array(junk, { maxLength: 8 }).map((parts) => parts.join(':')),
  );
  const lineArb = fc.oneof(userLine, tokenLine, groupLine, roleLine, aclLine, junkLine);
  /** Mostly in the order a real file has, so that references can resolve; sometimes not. */
  const fileArb = fc
    .tuple(
      fc.array(userLine, { maxLength: 6 }),
      fc.array(tokenLine, { maxLength: 8 }),
      fc.array(groupLine, { maxLength: 3 }),
      fc.array(roleLine, { maxLength: 3 }),
      fc.array(aclLine, { maxLength: 8 }),
      fc.array(fc.tuple(fc.nat(), lineArb), { maxLength: 4 }),
    )
    .map(([users, tokens, groups, roles, acls, extra]) => {
      const lines = [...users, ...tokens, ...groups, ...roles, ...acls];
      for (const [at, line] of extra) lines.splice(at % (lines.length + 1), 0, line);
      return lines.join('\n');
    });

  function stable(text: string, dialect: 'token-shadow' | 'pve'): void {
    let parsed: ReturnType<typeof parseUserConfig>;
    try {
      parsed = parseUserConfig(text, { dialect });
    } catch (error) {
      assert.fail(`parse threw ${String(error)}`);
    }
    for (const warning of parsed.warnings) {
      assert.ok(Number.isInteger(warning.line) && warning.line >= 1);
      assert.match(warning.message, /^line \d+: /);
    }
    const written = writeUserConfig(parsed.config);
    const again = parseUserConfig(written);
    assert.deepEqual(again.warnings, []);
    assert.deepEqual(again.config, parsed.config);
    assert.equal(writeUserConfig(again.config), written);
  }

  it('whole files: never throws, parse(write(parse(x))) is stable (10,000 runs)', () => {
    fc.assert(
      fc.property(fileArb, fc.constantFrom('token-shadow' as const, 'pve' as const), stable),
      { numRuns: 10_000 },
    );
  });

  it('single lines after a fixed prefix (10,000 runs)', () => {
    const prefix = 'user:joe@pve:1:0::::::\ntoken:joe@pve!ci:1:0:1::\ngroup:admins:joe@pve::\n';
    fc.assert(
      fc.property(lineArb, (line) => stable(prefix + line, 'token-shadow')),
      { numRuns: 10_000 },
    );
  });

  it('only typed errors escape the mutators', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 }), (a, b) => {
        const config = parseUserConfig(SAMPLE).config;
        for (const attempt of [
          () => addUser(config, a, { comment: b }),
          () => addToken(config, `${a}!${b}`),
          () => addGroup(config, a, { members: [b] }),
          () => addRole(config, a, [b]),
          () => setAcl(config, a, { users: [b], roles: ['Ops'] }),
          () => removeUser(config, a),
        ]) {
          try {
            attempt();
          } catch (error) {
            assert.ok(error instanceof TokenShadowError, String(error));
          }
        }
        writeUserConfig(config);
      }),
      { numRuns: 1000 },
    );
  });
});
