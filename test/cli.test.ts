import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { formatExpire, parseExpire } from '../src/cli/dates.js';
import { ExitCode, failureOf } from '../src/cli/exit.js';
import { groupName } from '../src/cli/names.js';
import { renderTable } from '../src/cli/output.js';
import { main } from '../src/cli/tokenctl.js';
import { ConfigError, ParameterError, PermissionError } from '../src/errors.js';
import { SECRET_PATTERN } from '../src/secret-format.js';
import { openDeployment } from '../src/service/deployment.js';
import { resolveSettings } from '../src/service/settings.js';
import { tokenDatabaseAvailable } from '../src/store/token-database.js';
import { VERSION } from '../src/version.js';
import { runChild } from './helpers/children.js';
import { AS_NOBODY, NOBODY, nobodysCopy } from './helpers/nobody.js';
import { tempDir } from './helpers/tmp.js';

const TOKENCTL = fileURLToPath(new URL('../src/cli/tokenctl.js', import.meta.url));
const PVE_USER_CFG = fileURLToPath(
  new URL('../../test/fixtures/cli-pve-user.cfg', import.meta.url),
);

interface Dirs {
  root: string;
  config: string;
  run: string;
  page: string;
  /** The global options pointing tokenctl at this deployment. */
  args: string[];
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function deploymentDirs(): Dirs {
  const root = tempDir('token-shadow-cli-');
  const config = path.join(root, 'etc');
  const run = path.join(root, 'run');
  return {
    root,
    config,
    run,
    page: path.join(run, 'shmem', 'config-versions'),
    // Most tests read tables without borders; the bordered default has its own test.
    args: ['--config-dir', config, '--runtime-dir', run, '--noborder'],
  };
}

/** tokenctl in this process, output captured. */
async function tokenctl(dirs: Dirs, ...args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main([...dirs.args, ...args], {
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
  });
  return { code, stdout, stderr };
}

/** tokenctl that must succeed, its stdout parsed as JSON. */
async function tokenctlJson<T>(dirs: Dirs, ...args: string[]): Promise<T> {
  const result = await tokenctl(dirs, '--output', 'json', ...args);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as T;
}

/** tokenctl as a real process. */
function spawnTokenctl(args: string[]) {
  return runChild(TOKENCTL, args);
}

function secretOf(tableOutput: string): string {
  const match = /^value\s+(\S+)$/m.exec(tableOutput);
  assert.ok(match?.[1], `no value line in ${tableOutput}`);
  return match[1];
}

/** What a daemon would answer: the secret checked through a freshly opened deployment. */
async function verifies(dirs: Dirs, tokenid: string, secret: string): Promise<boolean> {
  const settings = resolveSettings({
    configDir: dirs.config,
    runtimeDir: dirs.run,
    workers: 1,
    hashThreads: 1,
  });
  const deployment = openDeployment(settings, 'cli', { warn: () => undefined });
  try {
    return await deployment.shadow.verifySecret(tokenid, secret);
  } finally {
    await deployment.close();
  }
}

interface TokenRow {
  'full-tokenid': string;
  enable: number;
  expire: number;
  privsep: number;
  comment: string;
  'has-secret': boolean;
}

type Slots = Record<'USER_AND_ACL' | 'TOKEN_SHADOW', number>;

async function slots(dirs: Dirs): Promise<Slots> {
  const shown = await tokenctlJson<{ caching: boolean; slots: Slots }>(dirs, 'generations');
  assert.equal(shown.caching, true);
  return shown.slots;
}

function doctorLine(stdout: string, check: string): string {
  const line = stdout.split('\n').find((l) => l.split(/\s{2,}/)[1] === check);
  assert.ok(line, `no ${check} line in\n${stdout}`);
  return line;
}

const isRoot = process.getuid?.() === 0;

describe('tokenctl dates and tables', () => {
  it('parses a day as 00:00 UTC, epoch seconds as they are, 0 as never', () => {
    assert.equal(parseExpire('2027-01-01'), Date.UTC(2027, 0, 1) / 1000);
    assert.equal(parseExpire('2027-01-01'), 1798761600);
    assert.equal(parseExpire('1700000000'), 1700000000);
    assert.equal(parseExpire('0'), 0);
    for (const bad of ['2027-02-30', '2027-13-01', '0099-01-01', 'tomorrow', '-5', '1.5', '']) {
      assert.throws(() => parseExpire(bad), RangeError, bad);
    }
  });

  it('shows never, a day, a time, and marks the past as expired', () => {
    const now = 1_800_000_000;
    assert.equal(formatExpire(0, now), 'never');
    assert.equal(formatExpire(1906502400, now), '2030-06-01');
    assert.equal(formatExpire(1906502401, now), '2030-06-01T00:00:01Z');
    assert.equal(formatExpire(1798761600, now), '2027-01-01 (expired)');
  });

  it('aligns columns and escapes control characters in cells', () => {
    const text = renderTable(
      [
        { a: 'x', b: 'evil\n\u001b[2Jline' },
        { a: 'longer', b: '' },
      ],
      [
        { header: 'A', cell: (r) => r.a },
        { header: 'B', cell: (r) => r.b },
      ],
      { border: false, header: true, unicode: false },
    );
    assert.equal(text, 'A       B\nx       evil\\u000a\\u001b[2Jline\nlonger\n');
  });

  it("draws pveum's borders, counting terminal columns for wide characters", () => {
    const rows = [
      { name: '日本語', note: 'x' },
      { name: 'ascii', note: '👍' },
    ];
    const columns = [
      { header: 'NAME', cell: (r: (typeof rows)[number]) => r.name },
      { header: 'NOTE', cell: (r: (typeof rows)[number]) => r.note },
    ];
    assert.equal(
      renderTable(rows, columns, { border: true, header: true, unicode: true }),
      [
        '┌────────┬──────┐',
        '│ NAME   │ NOTE │',
        '╞════════╪══════╡',
        '│ 日本語 │ x    │',
        '├────────┼──────┤',
        '│ ascii  │ 👍   │',
        '└────────┴──────┘',
        '',
      ].join('\n'),
    );
    assert.equal(
      renderTable(rows, columns, { border: true, header: false, unicode: false }),
      [
        '+--------+----+',
        '| 日本語 | x  |',
        '+--------+----+',
        '| ascii  | 👍 |',
        '+--------+----+',
        '',
      ].join('\n'),
    );
    assert.equal(
      renderTable(rows, columns, { border: false, header: false, unicode: false }),
      '日本語  x\nascii   👍\n',
    );
  });
});

describe('tokenctl tokens', () => {
  it('token add prints a secret, once, that then verifies', async () => {
    const dirs = deploymentDirs();
    const added = await tokenctl(
      dirs,
      'token',
      'add',
      'root@pam!ci',
      '--privsep',
      '0',
      '--expire',
      '2027-01-01',
      '--comment',
      'ci runner',
    );
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^full-tokenid\s+root@pam!ci$/m);
    const secret = secretOf(added.stdout);
    assert.match(secret, SECRET_PATTERN);
    assert.match(added.stderr, /shown only once/);
    assert.ok(!added.stderr.includes(secret));
    assert.equal(await verifies(dirs, 'root@pam!ci', secret), true);
    const wrong = `${secret.slice(0, -1)}${secret.endsWith('0') ? '1' : '0'}`;
    assert.equal(await verifies(dirs, 'root@pam!ci', wrong), false);

    const table = await tokenctl(dirs, 'token', 'list');
    assert.equal(table.code, 0, table.stderr);
    assert.ok(!table.stdout.includes(secret), 'list never shows a secret');
    assert.match(
      table.stdout,
      /^TOKENID\s+ENABLED\s+EXPIRE\s+PRIVSEP\s+SECRET\s+LAST-USED\s+FROM\s+COMMENT$/m,
    );
    assert.match(
      table.stdout,
      /^root@pam!ci\s+yes\s+2027-01-01\s+no\s+yes\s+never\s+-\s+ci runner$/m,
    );

    const rows = await tokenctlJson<TokenRow[]>(dirs, 'token', 'list', 'root@pam');
    assert.deepEqual(
      rows.map((r) => [r['full-tokenid'], r.enable, r.expire, r.privsep, r.comment]),
      [['root@pam!ci', 1, 1798761600, 0, 'ci runner']],
    );
    assert.equal(rows[0]?.['has-secret'], true);

    const again = await tokenctl(dirs, 'token', 'add', 'root@pam!ci');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^tokenctl: token root@pam!ci already exists\n$/);
  });

  it('json add, update, rotate (old secret refused, new accepted) and remove', async () => {
    const dirs = deploymentDirs();
    const created = await tokenctlJson<{ 'full-tokenid': string; info: TokenRow; value: string }>(
      dirs,
      'token',
      'add',
      'root@pam!deploy',
      '--disabled',
      '--expire',
      '1900000000',
    );
    assert.equal(created['full-tokenid'], 'root@pam!deploy');
    assert.deepEqual(created.info, { enable: 0, expire: 1900000000, privsep: 1, comment: '' });

    const updated = await tokenctlJson<TokenRow>(
      dirs,
      'token',
      'update',
      'root@pam!deploy',
      '--enable',
      '--expire',
      '0',
      '--privsep',
      '0',
      '--comment',
      'now on',
    );
    assert.deepEqual(updated, { enable: 1, expire: 0, privsep: 0, comment: 'now on' });
    const table = await tokenctl(dirs, 'token', 'update', 'root@pam!deploy', '--disable');
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^enabled\s+no$/m);
    assert.match(table.stdout, /^expire\s+never$/m);

    const rotated = await tokenctl(dirs, 'token', 'rotate', 'root@pam!deploy');
    assert.equal(rotated.code, 0, rotated.stderr);
    const fresh = secretOf(rotated.stdout);
    assert.notEqual(fresh, created.value);
    assert.equal(await verifies(dirs, 'root@pam!deploy', created.value), false);
    assert.equal(await verifies(dirs, 'root@pam!deploy', fresh), true);

    const removed = await tokenctl(dirs, 'token', 'remove', 'root@pam!deploy');
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, 'removed token root@pam!deploy\n');
    assert.deepEqual(await tokenctlJson(dirs, 'token', 'list'), []);
    const shadow = JSON.parse(readFileSync(path.join(dirs.config, 'token.shadow'), 'utf8'));
    assert.deepEqual(Object.keys(shadow), [], 'the secret is gone from token.shadow');

    const missing = await tokenctl(dirs, 'token', 'rotate', 'root@pam!deploy');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no such token "root@pam!deploy"/);
  });

  it('token revoke: every token of the users whose comment matches, with its secret, in one change', async () => {
    const dirs = deploymentDirs();
    for (const user of ['joe@pve', 'ann@pve']) {
      assert.equal((await tokenctl(dirs, 'user', 'add', user)).code, 0);
    }
    const secrets = new Map<string, string>();
    for (const [id, comment] of [
      ['joe@pve!a', 'ci runner'],
      ['joe@pve!b', 'backup'],
      ['ann@pve!c', 'ci nightly'],
      ['root@pam!keep', 'ci root'],
    ] as const) {
      const created = await tokenctlJson<{ value: string }>(
        dirs,
        'token',
        'add',
        id,
        '--comment',
        comment,
      );
      secrets.set(id, created.value);
    }
    const none = await tokenctl(dirs, 'token', 'revoke');
    assert.equal(none.code, 2, 'a filter is required');
    const answer = await tokenctlJson<{ revoked: string[] }>(
      dirs,
      'token',
      'revoke',
      '--user',
      'joe@pve',
      '--user',
      'ann@pve',
      '--comment',
      'ci *',
    );
    assert.deepEqual(answer.revoked, ['ann@pve!c', 'joe@pve!a']);
    const shadow = JSON.parse(readFileSync(path.join(dirs.config, 'token.shadow'), 'utf8'));
    assert.deepEqual(Object.keys(shadow).sort(), ['joe@pve!b', 'root@pam!keep']);
    assert.equal(await verifies(dirs, 'joe@pve!a', secrets.get('joe@pve!a') as string), false);
    assert.equal(await verifies(dirs, 'joe@pve!b', secrets.get('joe@pve!b') as string), true);
    assert.equal(
      await verifies(dirs, 'root@pam!keep', secrets.get('root@pam!keep') as string),
      true,
    );
    const text = await tokenctl(dirs, 'token', 'revoke', '--comment', 'ci root');
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout, 'revoked 1 token(s)\n');
  });

  it('bad arguments are usage errors (exit 2) and change nothing', async () => {
    const dirs = deploymentDirs();
    const cases: Array<[string[], RegExp]> = [
      [['token', 'add', 'root@pam'], /invalid .*missing "!TOKEN"/],
      [['token', 'add', 'root@pam!x', '--expire', '2027-02-30'], /expected a date YYYY-MM-DD/],
      [['token', 'add', 'root@pam!x', '--privsep', 'maybe'], /expected 0 or 1/],
      [['token', 'update', 'root@pam!x'], /nothing to change/],
      [['token', 'update', 'root@pam!x', '--enable', '--disable'], /cannot be used with/],
      [['acl', 'set', '/', '--roles', 'PVEAuditor'], /at least one of --users/],
      [['acl', 'set', 'vms', '--roles', 'PVEAuditor', '--users', 'root@pam'], /ACL path/],
      [['user', 'update', 'joe@pve', '--append'], /--append needs --groups/],
      [['--output', 'xml', 'user', 'list'], /xml/],
    ];
    for (const [args, message] of cases) {
      const result = await tokenctl(dirs, ...args);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, /^tokenctl: /, args.join(' '));
      assert.match(result.stderr, message, args.join(' '));
      assert.equal(result.stdout, '');
    }
    assert.equal(existsSync(path.join(dirs.config, 'token.shadow')), false);
    const help = await tokenctl(dirs, '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /import-pve/);
  });
});

describe('tokenctl users, groups and ACLs', () => {
  it('adds, lists, updates and removes users, groups and ACL entries', async () => {
    const dirs = deploymentDirs();
    assert.equal((await tokenctl(dirs, 'group', 'add', 'admins', '--comment', 'Admins')).code, 0);
    const added = await tokenctl(
      dirs,
      'user',
      'add',
      'joe@pve',
      '--email',
      'joe@example.com',
      '--firstname',
      'Joe',
      '--groups',
      'admins',
      '--expire',
      '2030-06-01',
    );
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.stdout, 'added user joe@pve\n');
    const token = await tokenctl(dirs, 'token', 'add', 'joe@pve!ci');
    assert.equal(token.code, 0, token.stderr);

    const groups = await tokenctlJson<unknown[]>(dirs, 'group', 'list');
    assert.deepEqual(groups, [{ groupid: 'admins', comment: 'Admins', users: 'joe@pve' }]);

    const users = await tokenctl(dirs, 'user', 'list');
    assert.match(
      users.stdout,
      /^joe@pve\s+yes\s+2030-06-01\s+Joe\s+joe@example\.com\s+admins\s+1$/m,
    );
    assert.match(users.stdout, /^root@pam\s+yes\s+never\s+0$/m);

    const update = await tokenctl(
      dirs,
      'user',
      'update',
      'joe@pve',
      '--disable',
      '--lastname',
      'B',
    );
    assert.equal(update.code, 0, update.stderr);
    const joe = (
      await tokenctlJson<Array<{ userid: string; enable: number; lastname: string }>>(
        dirs,
        'user',
        'list',
      )
    ).find((u) => u.userid === 'joe@pve');
    assert.equal(joe?.enable, 0);
    assert.equal(joe?.lastname, 'B');

    const granted = [
      ['acl', 'set', '/', '--roles', 'PVEAuditor', '--groups', 'admins'],
      ['acl', 'set', '/vms', '--roles', 'PVEVMUser', '--tokens', 'joe@pve!ci', '--no-propagate'],
      ['acl', 'set', '/vms', '--roles', 'PVEVMAdmin,PVEAuditor', '--users', 'joe@pve'],
    ];
    for (const args of granted) assert.equal((await tokenctl(dirs, ...args)).code, 0);
    const acl = await tokenctlJson<unknown[]>(dirs, 'acl', 'list');
    assert.deepEqual(acl, [
      { path: '/', type: 'group', ugid: 'admins', roleid: 'PVEAuditor', propagate: 1 },
      { path: '/vms', type: 'user', ugid: 'joe@pve', roleid: 'PVEAuditor', propagate: 1 },
      { path: '/vms', type: 'user', ugid: 'joe@pve', roleid: 'PVEVMAdmin', propagate: 1 },
      { path: '/vms', type: 'token', ugid: 'joe@pve!ci', roleid: 'PVEVMUser', propagate: 0 },
    ]);
    const table = await tokenctl(dirs, 'acl', 'list');
    assert.match(table.stdout, /^\/vms\s+token\s+joe@pve!ci\s+PVEVMUser\s+no$/m);

    const taken = await tokenctl(
      dirs,
      ...['acl', 'set', '/vms', '--roles', 'PVEVMAdmin', '--users', 'joe@pve', '--delete'],
    );
    assert.equal(taken.code, 0, taken.stderr);
    const after = await tokenctlJson<Array<{ roleid: string }>>(dirs, 'acl', 'list');
    assert.deepEqual(
      after.map((e) => e.roleid),
      ['PVEAuditor', 'PVEAuditor', 'PVEVMUser'],
    );

    const unknownRole = await tokenctl(
      dirs,
      'acl',
      'set',
      '/',
      '--roles',
      'Nope',
      '--users',
      'joe@pve',
    );
    assert.equal(unknownRole.code, 1);
    assert.match(unknownRole.stderr, /no such role "Nope"/);

    const removed = await tokenctl(dirs, 'user', 'remove', 'joe@pve');
    assert.equal(removed.code, 0, removed.stderr);
    const left = await tokenctlJson<Array<{ type: string }>>(dirs, 'acl', 'list');
    assert.deepEqual(
      left.map((e) => e.type),
      ['group'],
      "joe's and his token's entries went with him",
    );
    const shadow = JSON.parse(readFileSync(path.join(dirs.config, 'token.shadow'), 'utf8'));
    assert.equal(shadow['joe@pve!ci'], undefined, "his token's secret too");
    const gone = await tokenctl(dirs, 'user', 'remove', 'joe@pve');
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /^tokenctl: no such user "joe@pve"\n$/);
  });
});

describe('tokenctl import-pve', () => {
  it('imports a PVE user.cfg, refusing to overwrite without --force', async () => {
    const dirs = deploymentDirs();
    const existing = await tokenctl(dirs, 'token', 'add', 'root@pam!old');
    const oldSecret = secretOf(existing.stdout);
    const before = await slots(dirs);

    const refused = await tokenctl(dirs, 'import-pve', PVE_USER_CFG);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /give --force/);
    assert.deepEqual(await slots(dirs), before, 'nothing changed');

    const imported = await tokenctl(
      dirs,
      '--output',
      'json',
      'import-pve',
      PVE_USER_CFG,
      '--force',
    );
    assert.equal(imported.code, 0, imported.stderr);
    const summary = JSON.parse(imported.stdout);
    assert.equal(summary.users, 3);
    assert.equal(summary.tokens, 2);
    assert.equal(summary['removed-secrets'], 1);
    assert.deepEqual(summary['tokens-without-secret'], ['joe@pve!ci', 'joe@pve!ro']);
    assert.match(imported.stderr, /tokenctl: warning: .*Bogus\.Priv/);
    assert.match(imported.stderr, /tokenctl: warning: .*"VM.Monitor" of role "Custom": removed/);
    assert.equal(summary.pools, 2);
    assert.ok((await slots(dirs)).USER_AND_ACL > before.USER_AND_ACL, 'announced');
    assert.equal(await verifies(dirs, 'root@pam!old', oldSecret), false);

    const tokens = await tokenctlJson<TokenRow[]>(dirs, 'token', 'list');
    assert.deepEqual(
      tokens.map((t) => [t['full-tokenid'], t.enable, t.expire, t.privsep, t.comment]),
      [
        ['joe@pve!ci', 1, 0, 1, 'deploys'],
        ['joe@pve!ro', 1, 1893456000, 0, ''],
      ],
    );
    assert.ok(tokens.every((t) => !t['has-secret']));
    const users = await tokenctlJson<Array<{ userid: string; enable: number; groups: string }>>(
      dirs,
      'user',
      'list',
    );
    const ann = users.find((u) => u.userid === 'ann@pve');
    assert.equal(ann?.enable, 0, "PVE's empty enable field means disabled");
    assert.equal(ann?.groups, 'admins');
    const acl = await tokenctlJson<Array<{ path: string; roleid: string }>>(dirs, 'acl', 'list');
    assert.deepEqual(
      acl.map((e) => `${e.path} ${e.roleid}`),
      ['/ PVEAuditor', '/pool/marketing PVEVMUser', '/vms Custom', '/vms PVEVMUser'],
    );
    const text = readFileSync(path.join(dirs.config, 'user.cfg'), 'utf8');
    assert.match(text, /^token:joe@pve!ci:1:0:1:deploys:$/m, 'written in our dialect');
    assert.match(text, /^role:Custom:VM.Audit,VM.Console:$/m, 'VM.Monitor dropped');
    const poolLines = (cfg: string) => cfg.split('\n').filter((line) => line.startsWith('pool:'));
    const pveText = readFileSync(PVE_USER_CFG, 'utf8');
    assert.deepEqual(poolLines(text), poolLines(pveText), 'pool lines as PVE wrote them');

    const pools = await tokenctlJson<
      Array<{ poolid: string; comment?: string; members: unknown[] }>
    >(dirs, 'pool', 'list');
    assert.deepEqual(pools, [
      {
        poolid: 'marketing',
        comment: 'Marketing team',
        members: [
          { vmid: 100 },
          { vmid: 101 },
          { type: 'storage', storage: 'local' },
          { type: 'storage', storage: 'nfs' },
        ],
      },
      {
        poolid: 'marketing/interns',
        members: [{ vmid: 102 }, { type: 'storage', storage: 'local' }],
      },
    ]);
    const table = await tokenctl(dirs, 'pool', 'list');
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^POOLID\s+VMS\s+STORAGE\s+COMMENT$/m);
    assert.match(table.stdout, /^marketing\s+100,101\s+local,nfs\s+Marketing team$/m);
    assert.match(table.stdout, /^marketing\/interns\s+102\s+local$/m);
    // Another change through tokenctl rewrites the file and keeps the pools.
    assert.equal((await tokenctl(dirs, 'group', 'add', 'later')).code, 0);
    const rewritten = readFileSync(path.join(dirs.config, 'user.cfg'), 'utf8');
    assert.deepEqual(poolLines(rewritten), poolLines(pveText));

    const rotated = await tokenctl(dirs, 'token', 'rotate', 'joe@pve!ci');
    assert.equal(await verifies(dirs, 'joe@pve!ci', secretOf(rotated.stdout)), true);
  });

  it('imports into a fresh deployment without --force; a missing file fails', async () => {
    const dirs = deploymentDirs();
    const imported = await tokenctl(dirs, 'import-pve', PVE_USER_CFG);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /^imported 3 users, 2 tokens, 1 groups, 2 pools, 1 roles/);
    assert.match(imported.stderr, /tokenctl token rotate 'joe@pve!ci'/);
    const missing = await tokenctl(dirs, 'import-pve', path.join(dirs.root, 'nope.cfg'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /ENOENT/);
  });
});

describe('tokenctl pool', () => {
  it('adds nested pools, changes their members, removes them with their ACL entries', async () => {
    const dirs = deploymentDirs();
    const ok = async (...args: string[]) => {
      const run = await tokenctl(dirs, ...args);
      assert.equal(run.code, 0, run.stderr);
      return run;
    };
    await ok('pool', 'add', 'marketing', '--comment', 'Marketing team');
    await ok('pool', 'add', 'marketing/interns');
    const orphan = await tokenctl(dirs, 'pool', 'add', 'sales/emea');
    assert.equal(orphan.code, 1);
    assert.match(orphan.stderr, /parent "sales" of pool "sales\/emea" does not exist/);
    const usage = await tokenctl(dirs, 'pool', 'add', 'a/b/c/d');
    assert.equal(usage.code, 2, 'an invalid id is a usage error');
    await ok('pool', 'update', 'marketing', '--vms', '100,101', '--storage', 'local');
    await ok('pool', 'update', 'marketing/interns', '--vms', '102');
    const taken = await tokenctl(dirs, 'pool', 'update', 'marketing/interns', '--vms', '100');
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /allow-move/);
    await ok('pool', 'update', 'marketing/interns', '--vms', '100', '--allow-move');
    const pools = await tokenctlJson<Array<{ poolid: string; members: unknown[] }>>(
      dirs,
      'pool',
      'list',
    );
    assert.deepEqual(
      pools.map((p) => [p.poolid, p.members]),
      [
        ['marketing', [{ vmid: 101 }, { type: 'storage', storage: 'local' }]],
        ['marketing/interns', [{ vmid: 100 }, { vmid: 102 }]],
      ],
    );
    await ok('user', 'add', 'ann@pve');
    await ok('acl', 'set', '/pool/marketing/interns', '--users', 'ann@pve', '--roles', 'PVEVMUser');
    const notEmpty = await tokenctl(dirs, 'pool', 'remove', 'marketing/interns');
    assert.equal(notEmpty.code, 1);
    assert.match(notEmpty.stderr, /not empty \(contains VM 100\)/);
    await ok('pool', 'update', 'marketing/interns', '--vms', '100,102', '--delete');
    await ok('pool', 'remove', 'marketing/interns');
    const acl = await tokenctlJson<Array<{ path: string }>>(dirs, 'acl', 'list');
    assert.deepEqual(acl, [], "the pool's ACL entry went with it");
    const text = readFileSync(path.join(dirs.config, 'user.cfg'), 'utf8');
    assert.deepEqual(
      text.split('\n').filter((line) => line.startsWith('pool:')),
      ['pool:marketing:Marketing%20team:101:local:'],
    );
  });
});

describe('tokenctl generations', () => {
  it('shows the page and its counters moving with each change', async () => {
    const dirs = deploymentDirs();
    const none = await tokenctl(dirs, 'generations');
    assert.equal(none.code, 0);
    assert.match(none.stdout, /caching\s+off: the page does not exist yet/);

    assert.equal((await tokenctl(dirs, 'group', 'add', 'ops')).code, 0);
    const first = await slots(dirs);
    assert.equal((await tokenctl(dirs, 'group', 'add', 'devs')).code, 0);
    const second = await slots(dirs);
    assert.equal(second.USER_AND_ACL, first.USER_AND_ACL + 1);
    assert.equal(second.TOKEN_SHADOW, first.TOKEN_SHADOW);
    assert.equal((await tokenctl(dirs, 'token', 'add', 'root@pam!t')).code, 0);
    const third = await slots(dirs);
    assert.equal(third.USER_AND_ACL, second.USER_AND_ACL + 1);
    assert.equal(third.TOKEN_SHADOW, second.TOKEN_SHADOW + 1);

    const table = await tokenctl(dirs, 'generations');
    assert.match(table.stdout, new RegExp(`^page\\s+${dirs.page}$`, 'm'));
    assert.match(table.stdout, new RegExp(`^USER_AND_ACL\\s+${third.USER_AND_ACL}$`, 'm'));
    assert.match(table.stdout, /^TRAFFIC_CONTROL\s+0$/m);
  });
});

describe('tokenctl doctor', () => {
  it('reports OK on a fresh setup, FAIL for a world-writable token.shadow or page', async () => {
    const dirs = deploymentDirs();
    assert.equal((await tokenctl(dirs, 'token', 'add', 'root@pam!d')).code, 0);
    const fresh = await tokenctl(dirs, 'doctor');
    assert.equal(fresh.code, 0, fresh.stdout);
    assert.doesNotMatch(fresh.stdout, /^FAIL/m);
    assert.match(doctorLine(fresh.stdout, 'token.shadow'), /^OK\s.*0600/);
    assert.match(doctorLine(fresh.stdout, 'user.cfg'), /^OK\s.*0640/);
    assert.match(doctorLine(fresh.stdout, 'generation page'), /^OK\s.*0660.*magic ok/);
    assert.match(doctorLine(fresh.stdout, 'manager socket'), /^WARN\s.*absent/);

    const shadow = path.join(dirs.config, 'token.shadow');
    chmodSync(shadow, 0o666);
    const open = await tokenctl(dirs, 'doctor');
    assert.equal(open.code, 1);
    assert.match(doctorLine(open.stdout, 'token.shadow'), /^FAIL\s.*world-writable/);
    chmodSync(shadow, 0o600);

    chmodSync(dirs.page, 0o666);
    const page = await tokenctl(dirs, '--output', 'json', 'doctor');
    assert.equal(page.code, 1);
    const checks = JSON.parse(page.stdout) as Array<{ status: string; name: string }>;
    assert.deepEqual(
      checks.filter((c) => c.status === 'FAIL').map((c) => c.name),
      ['generation page'],
    );
  });

  it('FAILs a page of the wrong size and WARNs about a stale lock', async () => {
    const dirs = deploymentDirs();
    assert.equal((await tokenctl(dirs, 'group', 'add', 'g')).code, 0);
    truncateSync(dirs.page, 100);
    const lock = path.join(dirs.config, 'user.cfg.lock');
    mkdirSync(lock);
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    const result = await tokenctl(dirs, 'doctor');
    assert.equal(result.code, 1);
    assert.match(doctorLine(result.stdout, 'generation page'), /^FAIL\s.*size is 100 bytes/);
    assert.match(doctorLine(result.stdout, 'user.cfg lock'), /^WARN\s.*stale.*crashed/);
    assert.match(doctorLine(result.stdout, 'token.shadow lock'), /^OK\s.*not held/);

    const refused = await tokenctl(dirs, 'group', 'add', 'h');
    assert.equal(refused.code, 1, 'a broken page refuses changes');
    assert.match(refused.stderr, /refusing to change anything/);
  });

  it('--fix repairs modes, owners, a broken page and a stale lock, and says what it changed', async () => {
    const dirs = deploymentDirs();
    assert.equal((await tokenctl(dirs, 'token', 'add', 'root@pam!d')).code, 0);
    const shadow = path.join(dirs.config, 'token.shadow');
    const userCfg = path.join(dirs.config, 'user.cfg');
    chmodSync(shadow, 0o666);
    chmodSync(userCfg, 0o606);
    chownSync(userCfg, NOBODY, -1);
    truncateSync(dirs.page, 100);
    const lock = path.join(dirs.config, 'token.shadow.lock');
    mkdirSync(lock);
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    assert.equal((await tokenctl(dirs, 'doctor')).code, 1);

    const fixed = await tokenctl(dirs, 'doctor', '--fix');
    assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
    assert.match(fixed.stdout, /^fixed token\.shadow \S+: mode 0666 -> 0600$/m);
    assert.match(fixed.stdout, /^fixed user\.cfg \S+: owner nobody:\S+ -> root:\S+$/m);
    assert.match(fixed.stdout, /^fixed user\.cfg \S+: mode 0606 -> 0640$/m);
    assert.match(fixed.stdout, /^fixed generation page \S+: recreated \(it was unusable\)$/m);
    assert.match(fixed.stdout, /^fixed token\.shadow lock \S+: removed the stale lock$/m);
    assert.match(doctorLine(fixed.stdout, 'generation page'), /^OK\s.*magic ok/);
    assert.equal(statSync(shadow).mode & 0o777, 0o600);
    assert.equal(statSync(dirs.page).size, 4096);
    assert.equal(existsSync(lock), false);
    // The deployment works again: a change is accepted and announced.
    assert.equal((await tokenctl(dirs, 'group', 'add', 'after')).code, 0);

    const again = await tokenctl(dirs, '--output', 'json', 'doctor', '--fix');
    assert.equal(again.code, 0);
    const report = JSON.parse(again.stdout) as { changes: unknown[]; checks: unknown[] };
    assert.deepEqual(report.changes, [], 'nothing left to fix');
    assert.ok(report.checks.length > 5);
  });

  it('checks and repairs the token database and the journal it keeps', {
    skip: tokenDatabaseAvailable() ? false : `node:sqlite is not in Node ${process.version}`,
  }, async () => {
    const dirs = deploymentDirs();
    assert.equal((await tokenctl(dirs, 'token', 'add', 'root@pam!d')).code, 0);
    const onFiles = await tokenctl(dirs, 'doctor');
    assert.match(doctorLine(onFiles.stdout, 'token database'), /^OK\s.*absent/);
    assert.equal((await tokenctl(dirs, 'database', 'migrate')).code, 0);
    assert.equal((await tokenctl(dirs, 'token', 'add', 'root@pam!e')).code, 0); // a commit
    const database = path.join(dirs.config, 'access.db');
    const journal = `${database}-journal`;
    const fresh = await tokenctl(dirs, 'doctor');
    assert.equal(fresh.code, 0, fresh.stdout);
    assert.match(doctorLine(fresh.stdout, 'token database'), /^OK\s.*0600/);
    assert.match(doctorLine(fresh.stdout, 'token database journal'), /^OK\s.*0600/);
    assert.match(doctorLine(fresh.stdout, 'access.db lock'), /^OK\s.*not held/);

    chmodSync(database, 0o644);
    chmodSync(journal, 0o666);
    const open = await tokenctl(dirs, 'doctor');
    assert.equal(open.code, 1);
    assert.match(doctorLine(open.stdout, 'token database'), /^FAIL\s.*world-readable/);
    assert.match(doctorLine(open.stdout, 'token database journal'), /^FAIL\s.*world-writable/);
    const fixed = await tokenctl(dirs, 'doctor', '--fix');
    assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
    assert.match(fixed.stdout, /^fixed token database \S+: mode 0644 -> 0600$/m);
    assert.match(fixed.stdout, /^fixed token database journal \S+: mode 0666 -> 0600$/m);
    assert.equal(statSync(database).mode & 0o777, 0o600);
    assert.equal(statSync(journal).mode & 0o777, 0o600);
  });
});

describe('tokenctl as separate processes', () => {
  it('adds a token in one process that verifies in another', async () => {
    const dirs = deploymentDirs();
    const added = await spawnTokenctl([
      ...dirs.args,
      '--output',
      'json',
      'token',
      'add',
      'root@pam!p',
    ]);
    assert.equal(added.code, 0, added.stderr);
    const { value } = JSON.parse(added.stdout) as { value: string };
    assert.equal(await verifies(dirs, 'root@pam!p', value), true);
  });

  it('exits 2 for a usage error, with the message on stderr', async () => {
    const dirs = deploymentDirs();
    const missing = await spawnTokenctl([...dirs.args, 'token', 'add']);
    assert.equal(missing.code, 2);
    assert.equal(missing.stdout, '');
    assert.match(missing.stderr, /^tokenctl: missing required argument 'tokenid'/);
    const unknown = await spawnTokenctl([...dirs.args, 'tokens']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'tokens'/);
  });

  it('exits 3 with a permission message when it cannot read token.shadow', async (t) => {
    const nobody = nobodysCopy();
    if (typeof nobody === 'string') return t.skip(nobody);
    const dirs = deploymentDirs();
    assert.equal((await tokenctl(dirs, 'token', 'add', 'root@pam!s')).code, 0);
    // nobody may traverse the directories and read user.cfg, but not token.shadow (0600).
    chmodSync(dirs.root, 0o755);
    chmodSync(dirs.config, 0o755);
    chmodSync(path.join(dirs.config, 'user.cfg'), 0o644);
    const shadow = path.join(dirs.config, 'token.shadow');
    assert.equal(statSync(shadow).mode & 0o777, 0o600);
    const result = await runChild(
      nobody.file('dist/src/cli/tokenctl.js'),
      [...dirs.args, 'token', 'list'],
      { prefix: AS_NOBODY },
    );
    assert.equal(result.code, 3, result.stderr);
    assert.match(
      result.stderr,
      /tokenctl: permission denied: .*token\.shadow.*run tokenctl as root/,
    );
    assert.equal(result.stdout, '');
  });

  it("keeps the deployment's group on the files it writes", {
    skip: isRoot ? false : 'needs root to chown',
  }, async () => {
    const dirs = deploymentDirs();
    mkdirSync(dirs.config, { mode: 0o750 });
    chownSync(dirs.config, 0, NOBODY);
    assert.equal((await tokenctl(dirs, 'token', 'add', 'root@pam!g')).code, 0);
    const shadow = statSync(path.join(dirs.config, 'token.shadow'));
    assert.equal(shadow.gid, NOBODY, "the config dir's group");
    assert.equal(shadow.mode & 0o777, 0o640, 'readable by the group');
    const doctor = await tokenctl(dirs, 'doctor');
    const owners = `root:${groupName(NOBODY)}`;
    assert.match(doctorLine(doctor.stdout, 'token.shadow'), new RegExp(`^OK\\s.*0640 ${owners}$`));
    assert.match(
      doctorLine(doctor.stdout, 'generation page'),
      new RegExp(`^OK\\s.*0660 ${owners}; magic ok`),
    );
  });
});

describe('tokenctl next to pveum', () => {
  it("takes pveum's argument order and places: token add USER NAME, user token ..., info", async () => {
    const dirs = deploymentDirs();
    await tokenctl(dirs, 'user', 'add', 'alice@pve');
    const added = await tokenctlJson<{ 'full-tokenid': string; value: string }>(
      dirs,
      'token',
      'add',
      'alice@pve',
      'ci',
      '--privsep',
      '1',
    );
    assert.equal(added['full-tokenid'], 'alice@pve!ci');
    assert.equal(await verifies(dirs, 'alice@pve!ci', added.value), true);
    await tokenctlJson(dirs, 'user', 'token', 'add', 'alice@pve!deploy', '--comment', 'd');
    const pveumInfo = await tokenctlJson(dirs, 'user', 'token', 'info', 'alice@pve', 'deploy');
    assert.deepEqual(pveumInfo, await tokenctlJson(dirs, 'token', 'info', 'alice@pve!deploy'));
    const { enable, expire, privsep, comment } = pveumInfo as Record<string, unknown>;
    assert.deepEqual(
      { enable, expire, privsep, comment },
      { enable: 1, expire: 0, privsep: 1, comment: 'd' },
    );
    await tokenctlJson(dirs, 'token', 'modify', 'alice@pve', 'deploy', '--comment', 'e');
    assert.equal(
      (await tokenctlJson<{ comment: string }>(dirs, 'token', 'info', 'alice@pve', 'deploy'))
        .comment,
      'e',
    );
    await tokenctlJson(dirs, 'user', 'token', 'delete', 'alice@pve', 'deploy');
    const both = await tokenctl(dirs, 'token', 'info', 'alice@pve!ci', 'ci');
    assert.equal(both.code, 2);
    assert.match(both.stderr, /not both|not "alice@pve!ci" and a name/);
    const missing = await tokenctl(dirs, 'token', 'info', 'alice@pve', 'nope');
    assert.equal(missing.code, 1, missing.stderr);
  });

  it('prints text with borders or not, headers or not, json, json-pretty and yaml', async () => {
    const dirs = deploymentDirs();
    await tokenctl(dirs, 'token', 'add', 'root@pam!ci', '--comment', 'CI 日本');
    const bordered = await tokenctl(
      { ...dirs, args: dirs.args.filter((a) => a !== '--noborder') },
      'token',
      'list',
    );
    assert.match(bordered.stdout, /^[│|] TOKENID +[│|] ENABLED [│|]/m);
    assert.match(bordered.stdout, /^[│|] root@pam!ci +[│|] yes +[│|]/m);
    const lengths = new Set(
      bordered.stdout
        .trimEnd()
        .split('\n')
        .map((l) => [...l].reduce((n, c) => n + (/[日本]/.test(c) ? 2 : 1), 0)),
    );
    assert.equal(lengths.size, 1, `ragged table:\n${bordered.stdout}`);
    const bare = await tokenctl(dirs, '--noheader', 'token', 'list');
    assert.match(bare.stdout, /^root@pam!ci\s+yes\s+never\s+yes\s+yes\s+.*CI 日本$/m);
    assert.doesNotMatch(bare.stdout, /TOKENID/);

    const compact = await tokenctl(dirs, '--output', 'json', 'token', 'list');
    assert.equal(compact.stdout.trimEnd().includes('\n'), false);
    const rows = JSON.parse(compact.stdout);
    const pretty = await tokenctl(dirs, '--output', 'json-pretty', 'token', 'list');
    assert.match(pretty.stdout, /^\[\n {2}\{/);
    assert.deepEqual(JSON.parse(pretty.stdout), rows);
    const yaml = await tokenctl(dirs, '--output-format', 'yaml', 'token', 'list');
    assert.deepEqual(YAML.parse(yaml.stdout), rows);
    assert.match(yaml.stdout, /^- full-tokenid: root@pam!ci$/m);
    const table = await tokenctl(dirs, '--output', 'table', 'token', 'list');
    assert.match(table.stdout, /^TOKENID/m, 'the old name of text still works');

    const version = await tokenctl(dirs, '--version');
    assert.equal(version.code, 0);
    assert.equal(version.stdout.trim(), VERSION);
    assert.match(VERSION, /^\d+\.\d+\.\d+/);
  });

  it('role list|add|modify|delete, group delete, acl delete and permissions', async () => {
    const dirs = deploymentDirs();
    await tokenctl(dirs, 'user', 'add', 'bob@pve');
    const added = await tokenctl(dirs, 'role', 'add', 'Ops', '--privs', 'VM.Audit,Sys.Audit');
    assert.equal(added.stdout, 'added role Ops\n', added.stderr);
    type Role = { roleid: string; privs: string; special?: number };
    const roles = await tokenctlJson<Role[]>(dirs, 'role', 'list');
    assert.deepEqual(
      roles.find((r) => r.roleid === 'Ops'),
      { roleid: 'Ops', privs: 'Sys.Audit,VM.Audit' },
    );
    assert.equal(roles.find((r) => r.roleid === 'PVEAdmin')?.special, 1);
    await tokenctl(dirs, 'role', 'modify', 'Ops', '--privs', 'VM.PowerMgmt', '--append', '1');
    const modified = (await tokenctlJson<Role[]>(dirs, 'role', 'list')).find(
      (r) => r.roleid === 'Ops',
    );
    assert.equal(modified?.privs, 'Sys.Audit,VM.Audit,VM.PowerMgmt');
    const builtIn = await tokenctl(dirs, 'role', 'modify', 'PVEAdmin', '--privs', 'VM.Audit');
    assert.equal(builtIn.code, 1);
    assert.match(builtIn.stderr, /built-in role/);

    await tokenctl(dirs, 'acl', 'modify', '/vms', '--roles', 'Ops', '--users', 'bob@pve');
    type Tree = Record<string, Record<string, number>>;
    const all = await tokenctlJson<Tree>(dirs, 'permissions', 'bob@pve');
    assert.deepEqual(all['/vms'], { 'Sys.Audit': 1, 'VM.Audit': 1, 'VM.PowerMgmt': 1 });
    const one = await tokenctlJson<Tree>(dirs, 'user', 'permissions', 'bob@pve', '--path', '/');
    assert.deepEqual(one, { '/': {} });
    const text = await tokenctl(dirs, 'permissions', 'bob@pve', '--path', '/vms');
    assert.match(
      text.stdout,
      /^\/vms\s+Sys\.Audit \(\*\), VM\.Audit \(\*\), VM\.PowerMgmt \(\*\)$/m,
    );
    const root = await tokenctlJson<Tree>(dirs, 'permissions', '--path', '/');
    assert.equal(root['/']?.['Permissions.Modify'], 1, 'root@pam without an id');
    await tokenctl(dirs, 'acl', 'delete', '/vms', '--roles', 'Ops', '--users', 'bob@pve');
    assert.deepEqual(await tokenctlJson(dirs, 'acl', 'list'), []);

    await tokenctl(dirs, 'acl', 'modify', '/', '--roles', 'Ops', '--users', 'bob@pve');
    assert.equal((await tokenctl(dirs, 'role', 'delete', 'Ops')).code, 0);
    assert.deepEqual(await tokenctlJson(dirs, 'acl', 'list'), [], 'its ACL entries went with it');
    assert.equal((await tokenctl(dirs, 'role', 'delete', 'Ops')).code, 1);

    await tokenctl(dirs, 'group', 'add', 'admins');
    await tokenctl(dirs, 'acl', 'modify', '/', '--roles', 'PVEAuditor', '--groups', 'admins');
    const removed = await tokenctl(dirs, 'group', 'delete', 'admins');
    assert.equal(removed.stdout, 'removed group admins\n');
    assert.deepEqual(await tokenctlJson(dirs, 'group', 'list'), []);
    assert.deepEqual(await tokenctlJson(dirs, 'acl', 'list'), []);
  });

  it('completes commands, subcommands and options in bash', {
    skip: spawnSync('bash', ['--version']).error ? 'bash is not installed' : false,
  }, async () => {
    const dirs = deploymentDirs();
    const script = path.join(dirs.root, 'tokenctl.bash');
    writeFileSync(script, (await tokenctl(dirs, 'completion', 'bash')).stdout);
    const complete = (...words: string[]) => {
      const result = spawnSync(
        'bash',
        [
          '-c',
          `source "$0"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _tokenctl; printf '%s\\n' "\${COMPREPLY[@]}"`,
          script,
        ],
        { encoding: 'utf8' },
      );
      assert.equal(result.status, 0, result.stderr);
      return result.stdout.trim().split('\n');
    };
    assert.deepEqual(complete('tokenctl', 'ro'), ['role']);
    assert.deepEqual(complete('tokenctl', '--config-dir', '/x', 'role', 'mo'), ['modify']);
    assert.deepEqual(complete('tokenctl', 'user', 'token', 'add', '--pr'), ['--privsep']);
    assert.ok(complete('tokenctl', 'token', '').includes('info'));
    assert.equal((await tokenctl(dirs, 'completion', 'fish')).code, 2);
  });
});

describe('tokenctl exit codes', () => {
  it('a missing privilege is 3 (denied), by its kind; a refused request is 1', () => {
    const denied = failureOf(new PermissionError('Permission check failed (/access, Sys.Audit)'));
    assert.equal(denied.exitCode, ExitCode.DENIED);
    assert.match(
      denied.message ?? '',
      /^Permission check failed \(\/access, Sys\.Audit\) \(run tokenctl as root/,
    );
    for (const error of [
      new ParameterError('userid must be a string', { userid: 'invalid' }),
      new ConfigError('not-found', 'no such user'),
    ]) {
      assert.deepEqual(failureOf(error), { exitCode: ExitCode.FAILURE, message: error.message });
    }
  });
});
