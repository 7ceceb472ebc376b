/**
 * tokenctl takes pveum's forms as well as its own: `--enable 0|1`, `--append`,
 * `--propagate` with PVE's boolean values, `user list --full/--enabled`,
 * `user token permissions`, `token modify --regenerate`, `group modify`,
 * `pool modify/delete` and pveum's one-word aliases; bash completes option
 * values and ids; deploy/ ships the completion file tokenctl generates.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tokenctlIn } from '../harness/tokenctl.js';
import { tempDir } from './helpers/tmp.js';

const TOKENCTL = fileURLToPath(new URL('../src/cli/tokenctl.js', import.meta.url));
const SHIPPED = fileURLToPath(new URL('../../deploy/bash-completion/tokenctl', import.meta.url));

interface UserRow {
  userid: string;
  enable: number;
  groups: string;
  tokens?: unknown[];
}

async function ok(dir: string, ...args: string[]): Promise<string> {
  const run = await tokenctlIn(dir, ...args);
  assert.equal(run.code, 0, `tokenctl ${args.join(' ')}: ${run.stderr}`);
  return run.stdout;
}

async function json<T>(dir: string, ...args: string[]): Promise<T> {
  return JSON.parse(await ok(dir, '--output', 'json', ...args)) as T;
}

async function user(dir: string, userid: string): Promise<UserRow | undefined> {
  return (await json<UserRow[]>(dir, 'user', 'list')).find((u) => u.userid === userid);
}

describe("tokenctl with pveum's habits", () => {
  it('takes --enable 0|1 (and yes/no) on add and modify, and the one-word aliases', async () => {
    const dir = tempDir();
    await ok(dir, 'user', 'add', 'joe@pve', '--enable', '0');
    assert.equal((await user(dir, 'joe@pve'))?.enable, 0);
    await ok(dir, 'usermod', 'joe@pve', '--enable', '1');
    assert.equal((await user(dir, 'joe@pve'))?.enable, 1);
    await ok(dir, 'user', 'modify', 'joe@pve', '--enable', 'no');
    assert.equal((await user(dir, 'joe@pve'))?.enable, 0);
    await ok(dir, 'user', 'modify', 'joe@pve', '--enable'); // tokenctl's bare flag
    assert.equal((await user(dir, 'joe@pve'))?.enable, 1);
    const wrong = await tokenctlIn(dir, 'user', 'modify', 'joe@pve', '--enable', '2');
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /expected 0 or 1/);

    await ok(dir, 'useradd', 'amy@pve');
    assert.equal((await user(dir, 'amy@pve'))?.enable, 1);
    await ok(dir, 'userdel', 'amy@pve');
    assert.equal(await user(dir, 'amy@pve'), undefined);
    // A global option before the alias does not hide it.
    await ok(dir, '--noborder', 'useradd', 'bea@pve', '--enable', 'off');
    assert.equal((await user(dir, 'bea@pve'))?.enable, 0);
  });

  it('lists users with --enabled and --full as pveum does', async () => {
    const dir = tempDir();
    await ok(dir, 'useradd', 'on@pve');
    await ok(dir, 'useradd', 'off@pve', '--enable', '0');
    const enabled = await json<UserRow[]>(dir, 'user', 'list', '--enabled', '1');
    assert.deepEqual(enabled.map((u) => u.userid).sort(), ['on@pve', 'root@pam']);
    const disabled = await json<UserRow[]>(dir, 'user', 'list', '--enabled', '0');
    assert.deepEqual(
      disabled.map((u) => u.userid),
      ['off@pve'],
    );
    const brief = await json<UserRow[]>(dir, 'user', 'list', '--full', '0');
    assert.ok(brief.every((u) => u.tokens === undefined));
    const full = await json<UserRow[]>(dir, 'user', 'list', '--full', '1');
    assert.ok(full.every((u) => Array.isArray(u.tokens)));
  });

  it('modifies groups, appends with --append 1, and changes pools with modify/delete', async () => {
    const dir = tempDir();
    await ok(dir, 'useradd', 'joe@pve');
    await ok(dir, 'groupadd', 'ops');
    await ok(dir, 'groupadd', 'dev');
    await ok(dir, 'groupmod', 'ops', '--comment', 'operators');
    const groups = await json<{ groupid: string; comment: string }[]>(dir, 'group', 'list');
    assert.equal(groups.find((g) => g.groupid === 'ops')?.comment, 'operators');
    await ok(dir, 'usermod', 'joe@pve', '--groups', 'ops');
    await ok(dir, 'usermod', 'joe@pve', '--groups', 'dev', '--append', '1');
    assert.equal((await user(dir, 'joe@pve'))?.groups, 'dev,ops');
    await ok(dir, 'usermod', 'joe@pve', '--groups', 'dev', '--append', '0');
    assert.equal((await user(dir, 'joe@pve'))?.groups, 'dev');

    await ok(dir, 'pool', 'add', 'lab');
    await ok(dir, 'pool', 'modify', 'lab', '--comment', 'the lab');
    const pools = await json<{ poolid: string; comment?: string }[]>(dir, 'pool', 'list');
    assert.equal(pools.find((p) => p.poolid === 'lab')?.comment, 'the lab');
    await ok(dir, 'pool', 'delete', 'lab');
    assert.deepEqual(await json(dir, 'pool', 'list'), []);
  });

  it('sets ACL entries with --propagate 0|1, shows token permissions, regenerates a secret', async () => {
    const dir = tempDir();
    await ok(dir, 'useradd', 'joe@pve');
    await ok(dir, 'aclmod', '/', '--roles', 'PVEAuditor', '--users', 'joe@pve');
    const created = await json<{ value: string }>(dir, 'user', 'token', 'add', 'joe@pve', 'ci');
    await ok(dir, 'aclmod', '/vms', '--roles', 'PVEVMUser', '--tokens', 'joe@pve!ci');
    await ok(
      dir,
      'aclmod',
      '/',
      '--roles',
      'PVEAuditor',
      '--tokens',
      'joe@pve!ci',
      '--propagate',
      '0',
    );
    const acl = await json<{ path: string; ugid: string; propagate: number }[]>(dir, 'acl', 'list');
    const entry = (at: string, ugid: string) => acl.find((e) => e.path === at && e.ugid === ugid);
    assert.equal(entry('/', 'joe@pve!ci')?.propagate, 0);
    assert.equal(entry('/vms', 'joe@pve!ci')?.propagate, 1, 'PVE propagates by default');
    assert.equal(entry('/', 'joe@pve')?.propagate, 1);

    // The token is separated: what it holds is its own entries within its user's.
    const tree = await json<Record<string, Record<string, number>>>(
      dir,
      'user',
      'token',
      'permissions',
      'joe@pve',
      'ci',
    );
    assert.equal(tree['/']?.['Sys.Audit'], 0, 'at / only, not propagated');
    assert.equal(tree['/vms']?.['VM.Audit'], 1);
    assert.equal(tree['/vms']?.['VM.PowerMgmt'], undefined, 'PVEVMUser is not the user’s');
    const onePath = await json<Record<string, unknown>>(
      dir,
      'token',
      'permissions',
      'joe@pve!ci',
      '--path',
      '/vms',
    );
    assert.deepEqual(Object.keys(onePath), ['/vms']);

    const regenerated = await json<{ 'full-tokenid': string; value: string }>(
      dir,
      'user',
      'token',
      'modify',
      'joe@pve',
      'ci',
      '--regenerate',
      '1',
      '--comment',
      'rotated',
    );
    assert.equal(regenerated['full-tokenid'], 'joe@pve!ci');
    assert.notEqual(regenerated.value, created.value);
    const info = await json<{ comment: string }>(dir, 'token', 'info', 'joe@pve!ci');
    assert.equal(info.comment, 'rotated');

    await ok(dir, 'acldel', '/vms', '--roles', 'PVEVMUser', '--tokens', 'joe@pve!ci');
    const after = await json<{ path: string }[]>(dir, 'acl', 'list');
    assert.equal(
      after.some((e) => e.path === '/vms'),
      false,
    );
  });

  it('completes option values and ids in bash, and deploy/ ships the generated file', {
    skip: spawnSync('bash', ['--version']).error ? 'bash is not installed' : false,
  }, async () => {
    const dir = tempDir();
    await ok(dir, 'useradd', 'joe@pve');
    await ok(dir, 'user', 'token', 'add', 'joe@pve', 'ci');
    const generated = await ok(dir, 'completion', 'bash');
    assert.equal(
      readFileSync(SHIPPED, 'utf8'),
      generated,
      'deploy/bash-completion/tokenctl is `tokenctl completion bash` (regenerate it)',
    );
    // `tokenctl` on PATH, as the completion script calls it, run by this Node.
    const bin = path.join(dir, 'bin');
    spawnSync('mkdir', ['-p', bin]);
    writeFileSync(
      path.join(bin, 'tokenctl'),
      `#!/bin/sh\nexec "${process.execPath}" "${TOKENCTL}" "$@"\n`,
      { mode: 0o755 },
    );
    const globals = ['--config-dir', path.join(dir, 'etc'), '--runtime-dir', path.join(dir, 'run')];
    const complete = (...words: string[]) => {
      const all = ['tokenctl', ...globals, ...words];
      const result = spawnSync(
        'bash',
        [
          '-c',
          `source "$0"; COMP_WORDS=(${all.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${all.length - 1}; _tokenctl; printf '%s\\n' "\${COMPREPLY[@]}"`,
          SHIPPED,
        ],
        { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } },
      );
      assert.equal(result.status, 0, result.stderr);
      return result.stdout.trim().split('\n').sort();
    };
    assert.deepEqual(complete('--output', ''), ['json', 'json-pretty', 'table', 'text', 'yaml']);
    assert.deepEqual(complete('user', 'modify', 'joe@pve', '--enable', ''), ['0', '1']);
    assert.deepEqual(complete('user', 'modify', 'jo'), ['joe@pve']);
    assert.deepEqual(complete('token', 'info', 'joe'), ['joe@pve!ci']);
    assert.deepEqual(complete('acl', 'modify', '/', '--propagate', ''), ['0', '1']);
  });
});
