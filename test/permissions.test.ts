import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, ShadowFileError, UserConfigStore } from '../src/index.js';
import { setup } from './helpers/shadow.js';
import { tempDir } from './helpers/tmp.js';

const NOGROUP = 65534;
const mode = (file: string) => statSync(file).mode & 0o7777;

describe('file permissions', () => {
  it('creates token.shadow 0600, or 0640 for a configured group', async () => {
    const s = setup();
    await s.make().generateAndSetSecret('a@pve!t');
    assert.equal(mode(s.shadowPath), 0o600);
    const g = setup();
    await g.make({ gid: NOGROUP }).generateAndSetSecret('a@pve!t');
    assert.equal(mode(g.shadowPath), 0o640);
    assert.equal(statSync(g.shadowPath).gid, NOGROUP);
  });

  it('creates user.cfg 0640', async () => {
    const file = path.join(tempDir(), 'user.cfg');
    await new UserConfigStore({ path: file, page: null, gid: NOGROUP }).mutate(() => undefined);
    assert.equal(mode(file), 0o640);
    assert.equal(statSync(file).gid, NOGROUP);
    assert.match(readFileSync(file, 'utf8'), /^user:root@pam:/m);
  });

  it('refuses a token.shadow that its group or others can write, or a stranger owns', async () => {
    for (const [fileMode, owner, pattern] of [
      [0o666, 0, /writable by others \(mode 0666\)/],
      [0o620, 0, /writable by its group/],
      [0o600, 65534, /owned by uid 65534/],
    ] as const) {
      const s = setup();
      const shadow = s.make();
      await shadow.generateAndSetSecret('a@pve!t');
      const before = readFileSync(s.shadowPath, 'utf8');
      chmodSync(s.shadowPath, fileMode);
      chownSync(s.shadowPath, owner, owner);
      const refused = (e: unknown) =>
        e instanceof ShadowFileError && e.problem === 'insecure' && pattern.test(e.message);
      await assert.rejects(s.make().verifySecret('a@pve!t', 'x'), refused);
      await assert.rejects(shadow.generateAndSetSecret('b@pve!t'), refused);
      assert.equal(readFileSync(s.shadowPath, 'utf8'), before, 'not rewritten');
    }
  });

  it('refuses a user.cfg that others can write', async () => {
    const file = path.join(tempDir(), 'user.cfg');
    writeFileSync(file, 'user:root@pam:1:0::::::\n');
    chmodSync(file, 0o646);
    const store = new UserConfigStore({ path: file, page: null });
    await assert.rejects(
      store.get(),
      (e: unknown) => e instanceof ConfigError && e.problem === 'insecure',
    );
    await assert.rejects(
      store.mutate(() => undefined),
      ConfigError,
    );
  });

  it("the manager's socket is 0600, or 0660 for its group", async () => {
    const manager = fileURLToPath(new URL('../src/daemon/manager.js', import.meta.url));
    for (const group of [null, String(NOGROUP)]) {
      const dir = tempDir();
      const args = ['--config-dir', path.join(dir, 'etc'), '--runtime-dir', path.join(dir, 'run')];
      if (group) args.push('--group', group);
      const child = spawn(process.execPath, [manager, ...args], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      try {
        for await (const line of createInterface({ input: child.stdout })) {
          if (line.includes('manager ready')) break;
        }
        const socket = path.join(dir, 'run', 'manager.sock');
        assert.equal(mode(socket), group ? 0o660 : 0o600);
        if (group) assert.equal(statSync(socket).gid, NOGROUP);
        assert.equal(mode(path.join(dir, 'run', 'shmem', 'config-versions')), 0o660);
        assert.equal(mode(path.join(dir, 'etc', 'user.cfg')), 0o640);
        assert.equal(mode(path.join(dir, 'etc', 'api-ssl.key')), group ? 0o640 : 0o600);
      } finally {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
    }
  });
});
