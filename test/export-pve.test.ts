/**
 * `tokenctl export-pve` (issue 27): our user.cfg written in Proxmox VE's
 * dialect, read back by `import-pve`: what PVE cannot hold is left out with a
 * warning per token and field, and nothing is widened (a disabled token is
 * written as expired, so PVE refuses it too).
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { tokenctlIn } from '../harness/tokenctl.js';
import { parseUserConfig } from '../src/config/parse.js';
import { tempDir } from './helpers/tmp.js';

async function ok(dir: string, ...args: string[]) {
  const run = await tokenctlIn(dir, ...args);
  assert.equal(run.code, 0, `tokenctl ${args.join(' ')}: ${run.stderr}`);
  return run;
}

describe('tokenctl export-pve', () => {
  it('writes PVE token lines, warns once per token and field it leaves out, widens nothing', async () => {
    const dir = tempDir();
    await ok(dir, 'user', 'add', 'joe@pve');
    await ok(dir, 'token', 'add', 'joe@pve!plain', '--privsep', '0', '--comment', 'a: b');
    await ok(dir, 'token', 'add', 'joe@pve!off', '--disabled');
    await ok(dir, 'token', 'add', 'joe@pve!fenced', '--allowed-ips', '2001:db8::/32,10.0.0.0/8');
    await ok(dir, 'token', 'rotate', 'joe@pve!fenced', '--grace', '1h');
    const run = await ok(dir, 'export-pve');
    const text = run.stdout;
    assert.match(text, /^token:joe@pve!plain:0:0:a%3A%20b:$/m);
    assert.match(text, /^token:joe@pve!off:1:1::$/m, 'disabled: expired since 1970');
    assert.match(text, /^token:joe@pve!fenced:0:1::$/m);
    assert.doesNotMatch(text, /10\.0\.0\.0|2001/, 'no allowed-ips in PVE dialect');
    const warnings = run.stderr.split('\n').filter((line) => line.includes('user.cfg:'));
    assert.equal(warnings.length, 3, run.stderr);
    assert.match(run.stderr, /joe@pve!off is disabled: written as expired/);
    assert.match(run.stderr, /joe@pve!fenced: allowed-ips 2001:db8::\/32,10\.0\.0\.0\/8 left out/);
    assert.match(run.stderr, /joe@pve!fenced: the rotation grace left out/);

    // PVE's reading of it: the same tokens, the disabled one unusable.
    const pve = parseUserConfig(text, { dialect: 'pve' });
    assert.deepEqual(pve.warnings, []);
    const tokens = pve.config.users.get('joe@pve')?.tokens;
    assert.deepEqual([...(tokens?.keys() ?? [])].sort(), ['fenced', 'off', 'plain']);
    assert.equal(tokens?.get('off')?.expire, 1);
    assert.equal(tokens?.get('plain')?.comment, 'a: b');

    // Into a file: created 0600, never over an existing one; import-pve takes it back.
    const file = path.join(dir, 'pve-user.cfg');
    await ok(dir, 'export-pve', file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(readFileSync(file, 'utf8'), text);
    writeFileSync(path.join(dir, 'taken'), 'keep');
    const refused = await tokenctlIn(dir, 'export-pve', path.join(dir, 'taken'));
    assert.notEqual(refused.code, 0);
    assert.equal(readFileSync(path.join(dir, 'taken'), 'utf8'), 'keep');
    const other = tempDir();
    await ok(other, 'import-pve', file);
    const listed = JSON.parse((await ok(other, '--output', 'json', 'token', 'list')).stdout) as {
      'full-tokenid': string;
    }[];
    assert.deepEqual(listed.map((t) => t['full-tokenid']).sort(), [
      'joe@pve!fenced',
      'joe@pve!off',
      'joe@pve!plain',
    ]);
  });
});
