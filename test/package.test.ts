/**
 * The packages, for real, as the README says to install them: `npm pack` of
 * this checkout (as a clean clone would pack it) gives token-shadow (the
 * library) and token-shadow-daemons; fresh apps install the tarballs on a
 * supported Node line (this process's when it is 22 or 24, which is how CI
 * runs the suite once on each; else Node 24) with no compiler and no make on
 * their PATH, and:
 *   - the library alone brings its five dependencies and none of the daemons',
 *     installs with every install script skipped (what npm does to scripts an
 *     app has not approved) and verifies, caches and revokes; then without the
 *     addon it still verifies and revokes;
 *   - with npm enforcing install scripts (--strict-allow-scripts) the install
 *     works once the approvals the README names are in the app;
 *   - token-shadow/fastify needs fastify and fastify-plugin; with them it
 *     guards a route;
 *   - both tarballs bring tokenctl and every module the daemons load.
 * Packing changes no file of the checkout, and fails when it cannot ship the
 * prebuilt addon for a platform the README promises.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runChild } from './helpers/children.js';
import { CHECKOUT } from './helpers/package-copy.js';
import { tempDir } from './helpers/tmp.js';

const NPM_CLI = path.join(path.dirname(process.execPath), '../lib/node_modules/npm/bin/npm-cli.js');
const npmCli = existsSync(NPM_CLI) ? NPM_CLI : '/usr/lib/node_modules/npm/bin/npm-cli.js';
const COMPILERS = ['make', 'cc', 'gcc', 'g++', 'c++', 'clang', 'clang++'];
const SUPPORTED_LINES = [22, 24];
const PROMISED_PREBUILDS = ['linux-arm64', 'linux-x64'];
/** What the library declares it needs at run time (package.json "dependencies"). */
const CORE_DEPENDENCIES = [
  'argon2',
  'node-addon-api',
  'node-gyp-build',
  'piscina',
  'proper-lockfile',
];
/** What only the daemons, tokenctl, the fastify plugin or a build need: never in a library install. */
const NOT_IN_CORE = [
  '@fastify/formbody',
  '@grpc/grpc-js',
  'cockatiel',
  'commander',
  'etcd3',
  'fastify',
  'fastify-plugin',
  'ms',
  'pino',
  'prebuildify',
  'prom-client',
  'protobufjs',
  'selfsigned',
  'string-width',
  'yaml',
];

/**
 * Directories the whole file shares (made in a before hook, where tempDir's
 * cleanup would run at the hook's end), removed after the file.
 */
const scratchRoot = mkdtempSync(path.join(tmpdir(), 'token-shadow-package-'));
after(() => rmSync(scratchRoot, { recursive: true, force: true }));
const scratch = (prefix: string) => mkdtempSync(path.join(scratchRoot, prefix));

const majorOf = (version: string) => Number(version.replace(/^v/, '').split('.')[0]);

/**
 * The Node the apps run on: this process's when it is a supported line, else
 * Node 24 (the one .ci/run installed, or node@24 from the registry now).
 */
function appNode(): string | { skip: string } {
  if (SUPPORTED_LINES.includes(majorOf(process.version))) return process.execPath;
  const given = process.env.TOKEN_SHADOW_NODE24;
  if (given && existsSync(given)) return given;
  const prefix = scratch('node24-');
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
function cleanCopy(): { dir: string; files: string[] } {
  const dir = path.join(scratch('pack-'), 'token-shadow');
  const files = checkoutFiles();
  for (const file of files) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    copyFileSync(path.join(CHECKOUT, file), path.join(dir, file));
  }
  execFileSync('cp', ['-al', path.join(CHECKOUT, 'node_modules'), dir]);
  return { dir, files };
}

function checkoutFiles(): string[] {
  return execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: CHECKOUT,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((file) => file !== '' && existsSync(path.join(CHECKOUT, file)));
}

/** Every file a clean copy had when made, with its digest ('missing' once gone). */
function fingerprint(dir: string, names: readonly string[]): Map<string, string> {
  const files = new Map<string, string>();
  for (const file of names) {
    const full = path.join(dir, file);
    files.set(file, existsSync(full) ? sha256(readFileSync(full)) : 'missing');
  }
  return files;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A PATH with the app's Node and a shell, and nothing that compiles. */
function compilerFreePath(node: string, root: string): string {
  const tools = path.join(root, 'tools');
  mkdirSync(tools);
  for (const tool of ['sh', 'env']) symlinkSync(`/bin/${tool}`, path.join(tools, tool));
  return `${path.dirname(node)}:${tools}`;
}

interface Packed {
  filename: string;
  names: string[];
}

function pack(source: string, destination: string, ...args: string[]) {
  return spawnSync(
    process.execPath,
    [npmCli, 'pack', '--pack-destination', destination, '--loglevel=error', '--json', ...args],
    { cwd: source, encoding: 'utf8', timeout: 600_000 },
  );
}

function packed(run: ReturnType<typeof pack>): Packed {
  assert.equal(run.status, 0, run.stderr);
  const [{ filename, files }] = JSON.parse(run.stdout.slice(run.stdout.indexOf('[')));
  return { filename, names: (files as Array<{ path: string }>).map((f) => f.path) };
}

/** Installed packages of an app (node_modules/... paths its lock file lists and the disk has). */
function installedPackages(app: string): string[] {
  const lock = JSON.parse(readFileSync(path.join(app, 'package-lock.json'), 'utf8'));
  return Object.keys(lock.packages).filter(
    (key) =>
      key !== '' &&
      existsSync(path.join(app, key)) &&
      !/^node_modules\/token-shadow(-daemons)?$/.test(key),
  );
}

const packageName = (key: string) => key.slice(key.lastIndexOf('node_modules/') + 13);
const sizeMB = (dir: string) =>
  Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0]) / 1024;

describe('the packed tarballs in fresh apps', () => {
  let node = '';
  let skip = '';
  let root = '';
  let env: NodeJS.ProcessEnv = {};
  let source = '';
  let copied: string[] = [];
  let before_: Map<string, string> = new Map();
  let core: Packed = { filename: '', names: [] };
  let daemons: Packed = { filename: '', names: [] };

  before(() => {
    const found = appNode();
    if (typeof found !== 'string') {
      skip = found.skip;
      return;
    }
    node = found;
    root = scratch('app-');
    env = { ...process.env, PATH: compilerFreePath(node, root) };
    for (const tool of COMPILERS) {
      const which = spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: env.PATH } });
      assert.notEqual(which.status, 0, `${tool} is on the test PATH`);
    }
    ({ dir: source, files: copied } = cleanCopy());
    before_ = fingerprint(source, copied);
    core = packed(pack(source, root));
    daemons = packed(pack(source, root, '--workspace', 'packages/daemons'));
  });

  /** npm install in a fresh app on the app's Node, without a compiler. */
  function install(
    name: string,
    specs: string[],
    options: { manifest?: object; flags?: string[] } = {},
  ) {
    const app = path.join(root, name);
    mkdirSync(app);
    const manifest = { type: 'module', private: true, ...options.manifest };
    writeFileSync(path.join(app, 'package.json'), `${JSON.stringify(manifest)}\n`);
    const run = spawnSync(
      node,
      [
        npmCli,
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        ...(options.flags ?? []),
        ...specs,
      ],
      { cwd: app, env, encoding: 'utf8', timeout: 600_000 },
    );
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    return { app, output: `${run.stdout}${run.stderr}` };
  }

  const tarball = (p: Packed) => path.join(root, p.filename);

  it('packing changes no file of the checkout; the tarball holds dist, every promised prebuild, no tests', (t) => {
    if (skip) return t.skip(skip);
    assert.deepEqual(
      fingerprint(source, copied),
      before_,
      'a file of the checkout changed while packing',
    );
    const { names } = core;
    assert.ok(names.includes('LICENSE') && names.includes('dist/src/index.js'));
    assert.ok(names.includes('CHANGELOG.md') && names.includes('SECURITY.md'));
    assert.ok(names.includes('dist/src/fastify.js') && names.includes('dist/src/index.d.ts'));
    for (const platform of PROMISED_PREBUILDS) {
      assert.ok(names.includes(`prebuilds/${platform}/token-shadow.node`), platform);
    }
    for (const name of names) {
      assert.doesNotMatch(
        name,
        /^(dist\/(test|bench|harness|demo)|test|bench|\.ci|src|packages)\/|\.map$/,
        name,
      );
    }
    assert.deepEqual(daemons.names.sort(), [
      'LICENSE',
      'README.md',
      'bin/tokenctl.js',
      'package.json',
    ]);
    const version = JSON.parse(readFileSync(path.join(CHECKOUT, 'package.json'), 'utf8')).version;
    assert.equal(core.filename, `token-shadow-${version}.tgz`);
    assert.equal(daemons.filename, `token-shadow-daemons-${version}.tgz`);
  });

  it('packing fails, naming the platform, when a promised prebuild is missing or stale', (t) => {
    if (skip) return t.skip(skip);
    const copy = cleanCopy().dir;
    const out = tempDir('token-shadow-nopack-');
    rmSync(path.join(copy, 'prebuilds', 'linux-arm64'), { recursive: true });
    const missing = pack(copy, out);
    assert.notEqual(missing.status, 0, 'packed without the linux-arm64 prebuild');
    assert.match(missing.stderr, /prebuild linux-arm64: missing/);
    assert.deepEqual(readdirSync(out), [], 'a tarball was written');

    execFileSync('cp', [
      '-R',
      path.join(source, 'prebuilds', 'linux-arm64'),
      path.join(copy, 'prebuilds'),
    ]);
    writeFileSync(path.join(copy, 'native', 'page.cc'), '// changed\n', { flag: 'a' });
    const stale = pack(copy, out);
    assert.notEqual(stale.status, 0, 'packed prebuilds built from other sources');
    assert.match(stale.stderr, /prebuild linux-x64: built from other sources/);
    assert.match(stale.stderr, /prebuild linux-arm64: built from other sources/);
    assert.deepEqual(readdirSync(out), []);
  });

  it('the library: its five dependencies, install scripts skipped, no compiler; verifies, caches, revokes; and without the addon', async (t) => {
    if (skip) return t.skip(skip);
    const { app } = install('library', [tarball(core)], { flags: ['--ignore-scripts'] });
    const installed = path.join(app, 'node_modules', 'token-shadow');
    const manifest = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8'));
    assert.deepEqual(Object.keys(manifest.dependencies).sort(), CORE_DEPENDENCIES);
    assert.deepEqual(manifest.engines, { node: '>=22' });
    const packages = installedPackages(app);
    for (const name of NOT_IN_CORE) {
      assert.ok(
        !packages.some((key) => packageName(key) === name),
        `${name} came with the library`,
      );
    }
    assertReadmeFigure('`token-shadow`', packages.length);
    t.diagnostic(
      `Node ${majorOf(execFileSync(node, ['--version'], { encoding: 'utf8' }))}: the library brings ` +
        `${packages.length} packages, ${sizeMB(path.join(app, 'node_modules')).toFixed(1)} MB`,
    );
    assert.equal(existsSync(path.join(installed, 'build')), false, 'nothing was compiled');
    assert.deepEqual(readdirSync(path.join(installed, 'prebuilds')).sort(), PROMISED_PREBUILDS);

    copyFileSync(
      path.join(CHECKOUT, 'dist/test/fixtures/library-walk.js'),
      path.join(app, 'walk.js'),
    );
    const walk = async () => {
      const run = await runChild(path.join(app, 'walk.js'), ['token-shadow', tempDir()], {
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

    // The plugin's entry point names what it misses rather than pulling it in.
    writeFileSync(path.join(app, 'plugin.js'), "await import('token-shadow/fastify');\n");
    const plugin = await runChild(path.join(app, 'plugin.js'), [], { node, cwd: app, env });
    assert.notEqual(plugin.code, 0);
    assert.match(plugin.stderr, /ERR_MODULE_NOT_FOUND|Cannot find package 'fastify-plugin'/);
  });

  it('with npm enforcing install scripts, installs once the approvals the README names are in the app', (t) => {
    if (skip) return t.skip(skip);
    const npm = (app: string, ...args: string[]) =>
      spawnSync(node, [npmCli, ...args], { cwd: app, env, encoding: 'utf8', timeout: 600_000 });
    const { app } = install('enforced', [tarball(core)], { flags: ['--ignore-scripts'] });
    const unapproved = npm(app, 'install-scripts', 'ls');
    assert.match(unapproved.stdout, /token-shadow@/);
    assert.match(unapproved.stdout, /argon2@/);
    // The README's command, then the same install.
    const approved = npm(app, 'install-scripts', 'approve', 'token-shadow', 'argon2');
    rmSync(path.join(app, 'node_modules'), { recursive: true });
    assert.equal(approved.status, 0, approved.stderr);
    const manifest = JSON.parse(readFileSync(path.join(app, 'package.json'), 'utf8'));
    assert.deepEqual(Object.values(manifest.allowScripts), [true, true]);
    const enforced = npm(
      app,
      ...['install', '--prefer-offline', '--no-audit', '--no-fund', '--strict-allow-scripts'],
      '--foreground-scripts',
    );
    assert.equal(enforced.status, 0, `${enforced.stdout}\n${enforced.stderr}`);
    const output = `${enforced.stdout}${enforced.stderr}`;
    assert.doesNotMatch(output, /not yet covered by allowScripts/);
    assert.match(output, /token-shadow@[^ ]+ install/, 'its install script ran');
    assert.match(output, /argon2@[^ ]+ install/, "argon2's install script ran");
    assert.equal(existsSync(path.join(app, 'node_modules', 'token-shadow', 'build')), false);
    assert.equal(existsSync(path.join(app, 'node_modules', 'argon2', 'build')), false);

    // Without the approvals, npm enforcing them refuses the install: the check above is a real one.
    const bare = path.join(root, 'unapproved');
    mkdirSync(bare);
    writeFileSync(path.join(bare, 'package.json'), '{ "type": "module", "private": true }\n');
    const refused = npm(
      bare,
      'install',
      '--prefer-offline',
      '--no-audit',
      '--strict-allow-scripts',
      tarball(core),
    );
    assert.notEqual(
      refused.status,
      0,
      'npm took unapproved install scripts under --strict-allow-scripts',
    );
  });

  it('token-shadow/fastify with fastify and fastify-plugin installed next to it guards a route', async (t) => {
    if (skip) return t.skip(skip);
    const { app } = install('fastify', [tarball(core), 'fastify@^5', 'fastify-plugin@^6'], {
      flags: ['--ignore-scripts'],
    });
    copyFileSync(
      path.join(CHECKOUT, 'dist/test/fixtures/fastify-walk.js'),
      path.join(app, 'walk.js'),
    );
    const run = await runChild(path.join(app, 'walk.js'), [tempDir()], { node, cwd: app, env });
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout);
    assert.deepEqual(result.right, {
      status: 200,
      body: { authid: 'joe@pve!ci', userid: 'joe@pve', tokenName: 'ci' },
    });
    assert.equal(result.none.status, 401);
    assert.equal(result.wrong.status, 401);
  });

  it('the daemons: both tarballs bring tokenctl and every module the daemons load', async (t) => {
    if (skip) return t.skip(skip);
    const { app } = install('daemons', [tarball(core), tarball(daemons)], {
      manifest: { allowScripts: { protobufjs: false } },
      flags: ['--ignore-scripts'],
    });
    const packages = installedPackages(app);
    const manifest = JSON.parse(
      readFileSync(path.join(app, 'node_modules', 'token-shadow', 'package.json'), 'utf8'),
    );
    for (const name of Object.keys(manifest.peerDependencies)) {
      assert.ok(packages.includes(`node_modules/${name}`), `${name} is missing`);
    }
    assertReadmeFigure('+ `token-shadow-daemons`', packages.length);
    t.diagnostic(
      `the library and the daemons bring ${packages.length} packages, ` +
        `${sizeMB(path.join(app, 'node_modules')).toFixed(1)} MB`,
    );

    const tokenctl = (...args: string[]) =>
      spawnSync(node, [path.join(app, 'node_modules', '.bin', 'tokenctl'), ...args], {
        cwd: app,
        env,
        encoding: 'utf8',
      });
    const version = tokenctl('--version');
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout.trim(), manifest.version);
    const dirs = ['--config-dir', tempDir(), '--runtime-dir', tempDir()];
    const added = tokenctl(...dirs, 'token', 'add', 'root@pam!ci', '--output', 'json');
    assert.equal(added.status, 0, added.stderr);
    assert.match(JSON.parse(added.stdout).value, /^tsk_[0-9A-Za-z]{57}$/);
    const listed = tokenctl(...dirs, 'token', 'list', '--output', 'json');
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /"root@pam!ci"|"ci"/);

    // The daemons' entry points import everything they need (not run: no argv match).
    writeFileSync(
      path.join(app, 'daemons.js'),
      "const at = (f) => new URL('node_modules/token-shadow/dist/src/daemon/' + f, import.meta.url);\n" +
        "await import(at('manager.js'));\nawait import(at('api.js'));\nconsole.log('loaded');\n",
    );
    const loaded = await runChild(path.join(app, 'daemons.js'), [], { node, cwd: app, env });
    assert.equal(loaded.code, 0, loaded.stderr);
    assert.equal(loaded.stdout.trim(), 'loaded');
  });
});

/**
 * The README's table of what each install brings says `count` packages, give
 * or take 3 (a fresh app resolves the newest versions in range, so a
 * dependency of a dependency may come or go without a change here).
 */
function assertReadmeFigure(install: string, count: number): void {
  const readme = readFileSync(path.join(CHECKOUT, 'README.md'), 'utf8');
  const row = readme.split('\n').find((line) => line.startsWith(`| ${install} |`));
  assert.ok(row, `README: no row for ${install}`);
  const stated = Number(row.split('|')[3]);
  assert.ok(
    Math.abs(stated - count) <= 3,
    `README says ${stated} packages for ${install}, now ${count}`,
  );
}
