import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { settingsFromOptions } from '../src/cli/context.js';
import { settingsFrom } from '../src/daemon/cli-options.js';
import { DEFAULT_CONFIG_DIR, DEFAULT_RUNTIME_DIR } from '../src/service/settings.js';
import { tempDir } from './helpers/tmp.js';

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));
const UNITS = ['token-shadow-manager.service', 'token-shadow-api.service'];

function unitText(name: string): string {
  return readFileSync(path.join(DEPLOY, name), 'utf8');
}

/** Every value of `key` in the unit, in order. */
function values(text: string, key: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1));
}

function only(text: string, key: string): string {
  const found = values(text, key);
  assert.equal(found.length, 1, `${key}= once`);
  return found[0] as string;
}

/** Why a systemd tool cannot be used here, or false when it can. */
function unavailable(tool: string, args: string[] = ['--version']): string | false {
  const result = spawnSync(tool, args, { encoding: 'utf8' });
  if (result.error) return `${tool} is not installed`;
  if (result.status !== 0) return `${tool} ${args.join(' ')} failed: ${result.stderr.trim()}`;
  return false;
}

/**
 * Copies of the units, ExecStart pointing at this node when /usr/bin/node does
 * not exist (verify checks that the executable exists), plus `extra` files.
 */
function copyUnits(extra: Record<string, string> = {}): string {
  const dir = tempDir('token-shadow-units-');
  for (const name of UNITS) {
    let text = unitText(name);
    if (!existsSync('/usr/bin/node')) text = text.replaceAll('/usr/bin/node', process.execPath);
    writeFileSync(path.join(dir, name), text);
  }
  for (const [name, text] of Object.entries(extra)) writeFileSync(path.join(dir, name), text);
  return dir;
}

/** `systemd-analyze verify` of both units: its status and the lines about our units. */
function verify(dir: string) {
  const result = spawnSync('systemd-analyze', ['verify', ...UNITS.map((n) => path.join(dir, n))], {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_LOG_COLOR: '0' },
  });
  // Unknown keys are only warnings (exit 0); lines naming our files are what matters.
  const problems = result.stderr
    .split('\n')
    .filter((line) => line.includes(dir) || line.includes('token-shadow'));
  return { status: result.status, problems, stderr: result.stderr };
}

describe('deploy/ units', () => {
  it('give both daemons the directories tokenctl uses by default', () => {
    const manager = only(unitText(UNITS[0] as string), 'ExecStart');
    const api = only(unitText(UNITS[1] as string), 'ExecStart');
    for (const exec of [manager, api]) {
      assert.ok(exec.startsWith('/usr/bin/node /opt/token-shadow/dist/src/daemon/'), exec);
      assert.ok(exec.includes(`--config-dir ${DEFAULT_CONFIG_DIR} `), exec);
      assert.ok(exec.includes(`--runtime-dir ${DEFAULT_RUNTIME_DIR} `), exec);
    }
    assert.ok(
      manager.endsWith(
        'manager.js --config-dir /etc/token-shadow --runtime-dir /run/token-shadow --group token-shadow',
      ),
    );
    assert.ok(api.includes('api.js') && api.endsWith('--port 8006'));
  });

  it('run the API unprivileged and the manager with a minimal capability set', () => {
    const manager = unitText(UNITS[0] as string);
    const api = unitText(UNITS[1] as string);
    assert.equal(only(api, 'User'), 'token-shadow');
    assert.equal(only(api, 'Group'), 'token-shadow');
    assert.equal(only(api, 'CapabilityBoundingSet'), '');
    assert.deepEqual(values(manager, 'User'), [], 'the manager runs as root');
    assert.equal(only(manager, 'CapabilityBoundingSet'), 'CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE');
    assert.equal(only(api, 'Requires'), 'token-shadow-manager.service');
    assert.match(only(api, 'After'), /token-shadow-manager\.service/);
    assert.equal(only(manager, 'RuntimeDirectory'), 'token-shadow');
    assert.equal(only(manager, 'RuntimeDirectoryPreserve'), 'yes');
    assert.deepEqual(values(api, 'RuntimeDirectory'), [], 'one owner of /run/token-shadow');
    assert.equal(only(manager, 'ReadWritePaths'), '/etc/token-shadow /run/token-shadow');
    assert.equal(only(api, 'ReadWritePaths'), '/run/token-shadow');
    for (const unit of [manager, api]) {
      assert.equal(only(unit, 'NoNewPrivileges'), 'yes');
      assert.equal(only(unit, 'ProtectSystem'), 'strict');
      assert.equal(only(unit, 'MemoryDenyWriteExecute'), 'no');
      assert.match(unit, /V8's JIT/, 'says why W+X stays allowed');
      assert.equal(only(unit, 'Type'), 'notify');
      assert.equal(only(unit, 'NotifyAccess'), 'all');
      assert.equal(only(unit, 'ExecReload'), '/bin/kill -HUP $MAINPID');
      assert.equal(only(unit, 'ProcSubset'), 'pid');
      assert.equal(only(unit, 'KillSignal'), 'SIGTERM');
      assert.equal(only(unit, 'TimeoutStopSec'), '30');
      assert.equal(only(unit, 'Restart'), 'on-failure');
    }
    assert.ok(values(api, 'Environment').includes('UV_THREADPOOL_SIZE=4'));
    assert.equal(only(api, 'RestrictAddressFamilies'), 'AF_UNIX AF_INET AF_INET6');
    assert.equal(only(manager, 'RestrictAddressFamilies'), 'AF_UNIX');
    assert.deepEqual(values(api, 'SystemCallFilter'), [
      '@system-service',
      '~@privileged @resources',
    ]);
  });

  it('pass systemd-analyze verify', { skip: unavailable('systemd-analyze') }, () => {
    const result = verify(copyUnits());
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(result.problems, [], result.stderr);
  });

  it('the verify check catches broken units', { skip: unavailable('systemd-analyze') }, () => {
    const api = unitText(UNITS[1] as string);
    const typo = verify(
      copyUnits({
        'token-shadow-api.service': api.replace('Restart=on-failure', 'Restartt=on-failure'),
      }),
    );
    assert.match(typo.problems.join('\n'), /Unknown key 'Restartt'/);
    const missing = verify(
      copyUnits({
        'token-shadow-api.service': api.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node'),
      }),
    );
    assert.notEqual(missing.status, 0);
    assert.match(missing.problems.join('\n'), /nonexistent\/node/);
  });

  it('are rated well by systemd-analyze security', {
    skip: unavailable('systemd-analyze', ['security', '--offline=yes', '--help']),
  }, () => {
    const dir = copyUnits();
    for (const [name, limit] of [
      ['token-shadow-api.service', 2.5],
      ['token-shadow-manager.service', 3.5],
    ] as const) {
      const result = spawnSync(
        'systemd-analyze',
        ['security', '--offline=yes', '--no-pager', path.join(dir, name)],
        { encoding: 'utf8' },
      );
      const match = /Overall exposure level for \S+: (\d+\.\d)/.exec(result.stdout);
      assert.ok(match, result.stdout + result.stderr);
      assert.ok(Number(match[1]) <= limit, `${name}: exposure ${match[1]} > ${limit}`);
    }
  });

  it('sysusers.d creates the user and group', { skip: unavailable('systemd-sysusers') }, () => {
    const root = tempDir('token-shadow-sysroot-');
    mkdirSync(path.join(root, 'etc'));
    const result = spawnSync(
      'systemd-sysusers',
      [`--root=${root}`, path.join(DEPLOY, 'sysusers.d', 'token-shadow.conf')],
      { encoding: 'utf8' },
    );
    assert.equal(result.status, 0, result.stderr);
    const passwd = readFileSync(path.join(root, 'etc', 'passwd'), 'utf8');
    const group = readFileSync(path.join(root, 'etc', 'group'), 'utf8');
    const user = /^token-shadow:x:(\d+):(\d+):[^:]*:[^:]*:\/usr\/sbin\/nologin$/m.exec(passwd);
    assert.ok(user, passwd);
    assert.match(group, new RegExp(`^token-shadow:x:${user[2]}:`, 'm'));
  });

  it('ships only the files the README installs', () => {
    const readme = readFileSync(path.join(DEPLOY, 'README.md'), 'utf8');
    for (const name of [...UNITS, 'sysusers.d/token-shadow.conf', 'tmpfiles.d/token-shadow.conf']) {
      assert.ok(existsSync(path.join(DEPLOY, name)), name);
      assert.ok(readme.includes(`deploy/${name}`), `README installs ${name}`);
    }
    const services = readdirSync(DEPLOY).filter((n) => n.endsWith('.service'));
    assert.deepEqual(services.sort(), [...UNITS].sort());
  });
});

describe('tokenctl and the daemons find the same files', () => {
  it('tokenctl and a daemon started without --runtime-dir agree on the page', () => {
    const saved = process.env.RUNTIME_DIRECTORY;
    process.env.RUNTIME_DIRECTORY = '/run/token-shadow'; // what systemd sets for the daemons
    try {
      const daemon = settingsFrom({ configDir: '/etc/token-shadow' });
      delete process.env.RUNTIME_DIRECTORY; // an administrator's shell
      const cli = settingsFromOptions({
        configDir: '/etc/token-shadow',
        runtimeDir: '/run/token-shadow',
        output: 'table',
      });
      assert.equal(daemon.pagePath, cli.pagePath);
      assert.equal(cli.pagePath, '/run/token-shadow/shmem/config-versions');
    } finally {
      if (saved === undefined) delete process.env.RUNTIME_DIRECTORY;
      else process.env.RUNTIME_DIRECTORY = saved;
    }
  });
});
