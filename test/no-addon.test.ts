/**
 * Without the native addon the library and tokenctl still work: tokens verify
 * and revoke with caching off (one warning), legacy crypt hashes fail with
 * AddonUnavailableError, and tokenctl reads, and writes where no page exists.
 * The addon is hidden honestly: the package runs from a copy that has neither
 * build/ nor prebuilds/, so the loader finds nothing (as after a failed build).
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { makeLegacyHash } from '../src/hashing/legacy.js';
import { GenerationPage } from '../src/index.js';
import { runChild } from './helpers/children.js';
import { packageCopy } from './helpers/package-copy.js';
import { tempDir } from './helpers/tmp.js';

const copy = packageCopy({ addon: false });
const env = { TOKEN_SHADOW_ADDON: '' };

describe('without the native addon', () => {
  it('verifies and revokes with caching off, one warning; legacy hashes name the addon', async () => {
    const dir = tempDir();
    writeFileSync(
      path.join(dir, 'token.shadow'),
      `${JSON.stringify({ 'root@pam!old': makeLegacyHash('s3cret', 'sha512-crypt') })}\n`,
      { mode: 0o600 },
    );
    const out = await runChild(
      copy.file('dist/test/fixtures/library-walk.js'),
      ['../../src/index.js', dir, 'root@pam!old'],
      { env },
    );
    assert.equal(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout);
    assert.equal(result.caching, false);
    assert.equal(result.right, true);
    assert.equal(result.rightAgain, true);
    assert.equal(result.hits, 0, 'nothing is cached');
    assert.equal(result.wrong, false);
    assert.equal(result.deleted, true);
    assert.equal(result.afterDelete, false);
    assert.equal(result.legacy.name, 'AddonUnavailableError');
    assert.equal(result.legacy.code, 'ERR_ADDON_UNAVAILABLE');
    assert.match(result.legacy.message, /\$6\$ \(sha512-crypt\).*token_shadow\.node/);
    assert.equal(result.warnings.length, 1, result.warnings.join('\n'));
    assert.match(result.warnings[0], /^TOKEN_SHADOW_NO_GENERATION_PAGE: .*caching disabled/);
  });

  it('the same walk in the checkout caches (the copy really lacks only the addon)', async () => {
    const withAddon = packageCopy({ addon: true });
    const out = await runChild(withAddon.file('dist/test/fixtures/library-walk.js'), [
      '../../src/index.js',
      tempDir(),
    ]);
    assert.equal(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout);
    assert.equal(result.caching, true);
    assert.equal(result.hits, 2, 'setSecret cached it, both verifies hit');
    assert.equal(result.afterDelete, false);
    assert.deepEqual(result.warnings, []);
  });

  it('tokenctl lists, and changes a deployment that has no page', async () => {
    const root = tempDir();
    const args = [
      '--config-dir',
      path.join(root, 'etc'),
      '--runtime-dir',
      path.join(root, 'run'),
      '--noborder',
    ];
    const tokenctl = (...rest: string[]) =>
      runChild(copy.file('dist/src/cli/tokenctl.js'), [...args, ...rest], { env });
    const added = await tokenctl('token', 'add', 'root@pam!ci');
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^value\s+tsk_[0-9A-Za-z]{57}$/m);
    const list = await tokenctl('--output', 'json', 'token', 'list');
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      JSON.parse(list.stdout).map((t: { 'full-tokenid': string }) => t['full-tokenid']),
      ['root@pam!ci'],
    );
    const users = await tokenctl('user', 'list');
    assert.equal(users.code, 0, users.stderr);
    assert.match(users.stdout, /root@pam/);
    assert.match(users.stderr, /caching disabled/);
  });

  it('tokenctl refuses to change a deployment whose page it cannot bump', async () => {
    const root = tempDir();
    const args = ['--config-dir', path.join(root, 'etc'), '--runtime-dir', path.join(root, 'run')];
    mkdirSync(path.join(root, 'run', 'shmem'), { recursive: true });
    GenerationPage.open(path.join(root, 'run', 'shmem', 'config-versions')).close();
    const out = await runChild(
      copy.file('dist/src/cli/tokenctl.js'),
      [...args, 'token', 'add', 'root@pam!ci'],
      { env },
    );
    assert.equal(out.code, 1, out.stderr);
    assert.match(out.stderr, /token_shadow\.node.*refusing to change anything/);
    assert.equal(out.stdout, '');
  });
});
