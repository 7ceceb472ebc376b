/**
 * The clean-package claim, for real: `npm pack` of this checkout (as a clean
 * clone would pack it: prepack builds dist/ and the prebuilds), then a fresh
 * app on Node 24 with no compiler and no make on its PATH installs the tarball
 * and verifies, caches and revokes a token; with the addon removed from the
 * installed package it still verifies and revokes. Skips, saying why, when
 * Node 24 cannot be had from the npm registry.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runChild } from './helpers/children.js';
import { CHECKOUT } from './helpers/package-copy.js';
import { tempDir } from './helpers/tmp.js';

const NPM_CLI = path.join(path.dirname(process.execPath), '../lib/node_modules/npm/bin/npm-cli.js');
const npmCli = existsSync(NPM_CLI) ? NPM_CLI : '/usr/lib/node_modules/npm/bin/npm-cli.js';
const COMPILERS = ['make', 'cc', 'gcc', 'g++', 'c++', 'clang', 'clang++'];

/** Node 24's binary: the one .ci/run installed, or node@24 from the registry now. */
function node24(): string | { skip: string } {
  const given = process.env.TOKEN_SHADOW_NODE24;
  if (given && existsSync(given)) return given;
  const prefix = tempDir('token-shadow-node24-');
  const installed = spawnSync(
    process.execPath,
    [npmCli, 'install', '--prefix', prefix, '--no-save', '--loglevel=error', 'node@24'],
    { encoding: 'utf8', timeout: 300_000 },
  );
  const bin = path.join(prefix, 'node_modules', 'node', 'bin', 'node');
  if (installed.status !== 0 || !existsSync(bin)) {
    return { skip: `node@24 could not be installed from the registry: ${installed.stderr.trim()}` };
  }
  return bin;
}

/** The files a clean clone has (tracked plus new, not ignored), and node_modules as hard links. */
function cleanCopy(): string {
  const dir = path.join(tempDir('token-shadow-pack-'), 'token-shadow');
  const files = execFileSync(
    'git',
    ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
    {
      cwd: CHECKOUT,
      encoding: 'utf8',
    },
  )
    .split('\0')
    .filter((file) => file !== '' && existsSync(path.join(CHECKOUT, file)));
  for (const file of files) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    copyFileSync(path.join(CHECKOUT, file), path.join(dir, file));
  }
  execFileSync('cp', ['-al', path.join(CHECKOUT, 'node_modules'), dir]);
  return dir;
}

/** A PATH with Node 24 and a shell, and nothing that compiles. */
function compilerFreePath(node: string, root: string): string {
  const tools = path.join(root, 'tools');
  mkdirSync(tools);
  for (const tool of ['sh', 'env']) symlinkSync(`/bin/${tool}`, path.join(tools, tool));
  return `${path.dirname(node)}:${tools}`;
}

describe('the packed tarball in a fresh app', () => {
  it('installs on Node 24 without a compiler; verifies, caches, revokes; and without the addon', async (t) => {
    const node = node24();
    if (typeof node !== 'string') return t.skip(node.skip);
    const root = tempDir('token-shadow-app-');
    const PATH = compilerFreePath(node, root);
    for (const tool of COMPILERS) {
      const found = spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH } });
      assert.notEqual(found.status, 0, `${tool} is on the test PATH`);
    }

    const source = cleanCopy();
    const packed = spawnSync(
      process.execPath,
      [npmCli, 'pack', '--pack-destination', root, '--loglevel=error', '--json'],
      { cwd: source, encoding: 'utf8', timeout: 600_000 },
    );
    assert.equal(packed.status, 0, packed.stderr);
    const [{ filename, files }] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[')));
    const names = (files as Array<{ path: string }>).map((f) => f.path);
    assert.ok(names.includes('LICENSE') && names.includes('prebuilds/linux-x64/token-shadow.node'));
    assert.ok(names.includes('dist/src/index.js') && names.includes('dist/src/index.d.ts'));
    for (const name of names) {
      assert.doesNotMatch(name, /^(dist\/(test|bench)|test|bench|\.ci|src)\/|\.map$/, name);
    }

    const app = path.join(root, 'app');
    mkdirSync(app);
    writeFileSync(path.join(app, 'package.json'), '{ "type": "module", "private": true }\n');
    // This environment (registry, CA certificates) with only PATH replaced.
    const env = { ...process.env, PATH };
    const install = spawnSync(
      node,
      [npmCli, 'install', '--prefer-offline', '--no-audit', '--no-fund', path.join(root, filename)],
      { cwd: app, env, encoding: 'utf8', timeout: 600_000 },
    );
    assert.equal(install.status, 0, `${install.stdout}\n${install.stderr}`);
    const installed = path.join(app, 'node_modules', 'token-shadow');
    assert.equal(existsSync(path.join(installed, 'build')), false, 'nothing was compiled');
    assert.deepEqual(
      readdirSync(path.join(installed, 'prebuilds')).sort(),
      expectedPrebuilds(names),
    );

    copyFileSync(
      path.join(CHECKOUT, 'dist/test/fixtures/library-walk.js'),
      path.join(app, 'walk.js'),
    );
    const walk = async () => {
      const data = tempDir();
      const run = await runChild(path.join(app, 'walk.js'), ['token-shadow', data], {
        node,
        cwd: app,
        env,
      });
      assert.equal(run.code, 0, run.stderr);
      return JSON.parse(run.stdout);
    };
    const cached = await walk();
    assert.equal(cached.caching, true);
    assert.equal(cached.right && cached.rightAgain, true);
    assert.equal(cached.hits, 2, 'both verifies answered from the cache');
    assert.equal(cached.wrong, false);
    assert.equal(cached.afterDelete, false, 'revoked');
    assert.deepEqual(cached.warnings, []);

    rmSync(path.join(installed, 'prebuilds'), { recursive: true });
    const bare = await walk();
    assert.equal(bare.caching, false);
    assert.equal(bare.right && bare.rightAgain, true);
    assert.equal(bare.wrong, false);
    assert.equal(bare.afterDelete, false, 'revoked');
    assert.equal(bare.warnings.length, 1);
  });
});

/** linux-x64 always; linux-arm64 when the cross compiler built it (the tarball says). */
function expectedPrebuilds(names: string[]): string[] {
  return ['linux-arm64', 'linux-x64'].filter((platform) =>
    names.some((name) => name.startsWith(`prebuilds/${platform}/`)),
  );
}
