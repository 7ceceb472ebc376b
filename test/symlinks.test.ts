/**
 * Issue 22, case 2: nothing root does follows a symlink in a directory another
 * user can write. The page's directory (run/shmem, 0770) is writable by the
 * deployment's group, so the API's user can put a symlink where the page
 * belongs at any moment: root's `doctor --fix`, the manager's page repair and
 * every page open act on what they opened (O_NOFOLLOW, then fstat, fchmod,
 * fchown on the descriptor), never on what the path names a moment later.
 */
import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { startDeployment } from '../harness/daemons.js';
import { fixDeployment } from '../src/cli/doctor.js';
import { main } from '../src/cli/tokenctl.js';
import { GenerationPageError } from '../src/errors.js';
import { GenerationPage } from '../src/generations/page.js';
import { pagePathIn } from '../src/generations/paths.js';
import { Slot } from '../src/generations/slots.js';
import { resolveSettings } from '../src/service/settings.js';
import { startChild } from './helpers/children.js';
import { nobodysCopy } from './helpers/nobody.js';
import { tempDir } from './helpers/tmp.js';
import { unitLayout } from './helpers/units.js';

/** Rounds of `doctor --fix` against the swapping group member (before the fix: hit within a few). */
const ROUNDS = 300;

interface Deployed {
  dir: string;
  etc: string;
  run: string;
  page: string;
  args: string[];
}

/** A deployment made by root's tokenctl (a token, so every file exists), in a directory nobody can search. */
async function deployed(gid?: number): Promise<Deployed> {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const etc = path.join(dir, 'etc');
  const run = path.join(dir, 'run');
  const args = ['--config-dir', etc, '--runtime-dir', run, '--noborder'];
  if (gid !== undefined) args.push('--group', String(gid));
  assert.equal(await tokenctl(args, 'token', 'add', 'root@pam!d').then((r) => r.code), 0);
  return { dir, etc, run, page: pagePathIn(run), args };
}

async function tokenctl(args: string[], ...more: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main([...args, ...more], {
    stdout: (text) => {
      stdout += text;
    },
    stderr: (text) => {
      stderr += text;
    },
  });
  return { code, stdout, stderr };
}

const modeOf = (file: string) => statSync(file).mode & 0o7777;

/** Resolves with the inode at `file` once it is not `before`: the swapping child has moved on. */
async function swappedSince(file: string, before: bigint): Promise<bigint> {
  for (;;) {
    try {
      const ino = lstatSync(file, { bigint: true }).ino;
      if (ino !== before) return ino;
    } catch {
      // between two renames nothing is missing, but be patient anyway
    }
    await turn();
  }
}

describe('symlinks where the page belongs (issue 22, case 2)', () => {
  it('doctor --fix as root against a group member swapping the page for symlinks: no target changes', async (t) => {
    const layout = unitLayout();
    if (typeof layout === 'string') return t.skip(layout);
    const copy = nobodysCopy();
    if (typeof copy === 'string') return t.skip(copy);
    const d = await deployed(layout.gid);
    const shmem = statSync(path.dirname(d.page));
    assert.equal(shmem.mode & 0o777, 0o770, 'the page directory is group-writable, as deployed');
    assert.equal(shmem.gid, layout.gid);
    const userCfg = path.join(d.etc, 'user.cfg');
    const rootOnly = path.join(d.dir, 'root-only');
    writeFileSync(rootOnly, 'root only\n', { mode: 0o600 });
    const userCfgText = readFileSync(userCfg, 'utf8');
    assert.equal(modeOf(userCfg), 0o640);

    const flipper = startChild(
      copy.file('dist/test/fixtures/symlink-flipper.js'),
      ['flip', d.page, userCfg, rootOnly],
      { prefix: layout.asApiUser },
    );
    assert.equal(await flipper.nextLine(), 'ready', flipper.stderr());
    const settings = resolveSettings({ configDir: d.etc, runtimeDir: d.run, gid: layout.gid });
    let rounds = 0;
    let failures = 0;
    let seen = -1n;
    for (; rounds < ROUNDS; rounds++) {
      seen = await swappedSince(d.page, seen);
      try {
        const changes = await fixDeployment(settings);
        failures += changes.filter((c) => c.failed === true).length;
      } catch {
        failures++; // before the fix a failed target aborted the whole repair; the race goes on
      }
      if (modeOf(userCfg) !== 0o640 || modeOf(rootOnly) !== 0o600) break;
    }
    flipper.process.stdin?.end();
    const result = JSON.parse(await flipper.nextLine()) as { swaps: number; appended: boolean };
    t.diagnostic(`${rounds} rounds, ${result.swaps} swaps, ${failures} targets not fixed`);
    assert.ok(result.swaps >= rounds, 'a swap between any two rounds');
    assert.equal(
      rounds,
      ROUNDS,
      `round ${rounds}: user.cfg ${modeOf(userCfg).toString(8)}, root-only ` +
        `${modeOf(rootOnly).toString(8)}; the group appended a grant to user.cfg: ${result.appended}`,
    );
    assert.equal(result.appended, false, 'the group could not append a grant to user.cfg');
    assert.equal(readFileSync(userCfg, 'utf8'), userCfgText);
    assert.equal(statSync(userCfg).uid, 0);
    assert.equal(statSync(rootOnly).gid, 0);
  });

  for (const [kind, target] of [
    ['a symlink to a root-only file', (dir: string) => path.join(dir, 'root-only')],
    ['a dangling symlink', (dir: string) => path.join(dir, 'nothing-here')],
  ] as const) {
    it(`doctor with ${kind} as the page: FAIL, --fix leaves it and still repairs the rest`, async () => {
      const d = await deployed();
      const aim = target(d.dir);
      if (aim.endsWith('root-only')) writeFileSync(aim, 'root only\n', { mode: 0o600 });
      rmSync(d.page);
      symlinkSync(aim, d.page);
      const shadow = path.join(d.etc, 'token.shadow');
      chmodSync(shadow, 0o666);

      const checked = await tokenctl(d.args, 'doctor');
      assert.equal(checked.code, 1);
      assert.match(checked.stdout, /^FAIL\s+generation page\s.*not a regular file \(a symlink\)$/m);

      const fixed = await tokenctl(d.args, 'doctor', '--fix');
      assert.equal(fixed.stderr, '', 'the repair ran to its end');
      assert.match(fixed.stdout, /^fixed token\.shadow \S+: mode 0666 -> 0600$/m);
      assert.doesNotMatch(fixed.stdout, /^fixed generation page/m);
      assert.match(fixed.stdout, /^FAIL\s+generation page\s.*\(a symlink\)$/m);
      assert.equal(modeOf(shadow), 0o600);
      assert.ok(lstatSync(d.page).isSymbolicLink(), 'the symlink is neither followed nor replaced');
      assert.equal(readlinkSync(d.page), aim);
      if (aim.endsWith('root-only')) {
        assert.equal(modeOf(aim), 0o600);
        assert.equal(readFileSync(aim, 'utf8'), 'root only\n');
      }
    });
  }

  it('the manager under its unit never maps a page through a symlink', async (t) => {
    const layout = unitLayout();
    if (typeof layout === 'string') return t.skip(layout);
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const run = path.join(dir, 'run');
    const page = pagePathIn(run);
    for (const [d, mode] of [
      [run, 0o750],
      [path.dirname(page), 0o770],
    ] as const) {
      mkdirSync(d, { mode });
      chmodSync(d, mode);
      chownSync(d, 0, layout.gid);
    }
    // A good page elsewhere, which a group member links in where the page belongs.
    const elsewhere = path.join(dir, 'elsewhere', 'config-versions');
    GenerationPage.open(elsewhere, { mkdir: true, pin: false }).close();
    const bytes = readFileSync(elsewhere);
    symlinkSync(elsewhere, page);

    const deployment = await startDeployment(dir, layout.harness);
    try {
      // Said before 'manager ready', which startDeployment waited for.
      const warned = deployment.managerLog.lines.filter((l) =>
        /generation page unavailable/.test(String(l.msg)),
      );
      assert.equal(warned.length, 1, JSON.stringify(deployment.managerLog.lines));
      assert.match(String(warned[0]?.msg), /symbolic link, not followed/);
      const created = await deployment.asRoot('token.create', {
        userid: 'root@pam',
        tokenName: 'after',
        fields: { privsep: false },
      });
      assert.equal(created.ok, true, JSON.stringify(created));
    } finally {
      await deployment.stop();
    }
    assert.deepEqual(readFileSync(elsewhere), bytes, 'the linked page was never mapped nor bumped');
    assert.ok(lstatSync(page).isSymbolicLink());
  });

  it('the addon refuses a symlinked page, and a writer never follows a planted pin', () => {
    const dir = tempDir();
    const elsewhere = path.join(dir, 'elsewhere', 'config-versions');
    GenerationPage.open(elsewhere, { mkdir: true, pin: false }).close();
    const bytes = readFileSync(elsewhere);
    const page = path.join(dir, 'shmem', 'config-versions');
    mkdirSync(path.dirname(page));
    symlinkSync(elsewhere, page);
    assert.throws(
      () => GenerationPage.open(page),
      (error: unknown) =>
        error instanceof GenerationPageError &&
        error.problem === 'not-regular-file' &&
        /symbolic link/.test(error.message),
    );
    rmSync(page);
    const writer = GenerationPage.open(page);
    symlinkSync(elsewhere, path.join(dir, 'shmem', 'config-versions.mapped-1'));
    assert.equal(writer.prepareWrite(), true);
    writer.increment(Slot.TOKEN_SHADOW);
    writer.close();
    assert.deepEqual(readFileSync(elsewhere), bytes, 'the pin was removed, its target untouched');
    assert.deepEqual(
      readdirSync(path.dirname(page)).filter((n) => n.includes('.mapped-1')),
      [],
    );
  });
});
