import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { SLOT_COUNT } from '../src/generations/slots.js';
import {
  defaultPagePath,
  GenerationPage,
  GenerationPageError,
  openGenerationPageOrNull,
  Slot,
} from '../src/index.js';
import { fixture, raceChildren, runChild } from './helpers/children.js';
import { AS_NOBODY, nobodysCopy } from './helpers/nobody.js';
import { tempDir } from './helpers/tmp.js';

const child = fixture('page-child');

function expectProblem(fn: () => unknown, problem: string, pathPart: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof GenerationPageError, `not a GenerationPageError: ${error}`);
    assert.equal(error.problem, problem);
    assert.ok(error.message.includes(pathPart), error.message);
    return true;
  });
}

describe('generation page', () => {
  it('8 processes x 10,000 increments end at exactly 80,000; other slots stay 0', async () => {
    const file = path.join(tempDir(), 'config-versions');
    GenerationPage.open(file).close();
    const results = (await raceChildren(8, child, () => [
      'increment',
      file,
      String(Slot.TOKEN_SHADOW),
      '10000',
    ])) as Array<{ last: number }>;
    const page = GenerationPage.open(file);
    assert.equal(page.load(Slot.TOKEN_SHADOW), 80_000);
    assert.equal(page.load(Slot.USER_AND_ACL), 0);
    assert.equal(page.load(Slot.REMOTE_MAPPING), 0);
    // Each child's last increment returned a distinct value, the largest 80,000.
    const lasts = results.map((r) => r.last);
    assert.equal(new Set(lasts).size, 8);
    assert.equal(Math.max(...lasts), 80_000);
    page.close();
  });

  it('8 processes racing to create a missing page all map one page', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'sub', 'config-versions');
    mkdirSync(path.dirname(file));
    const results = (await raceChildren(8, child, () => ['create', file, '7'])) as Array<{
      ino: number;
      value: number;
    }>;
    const inodes = new Set(results.map((r) => r.ino));
    assert.equal(inodes.size, 1);
    assert.equal(statSync(file).ino, results[0]?.ino);
    assert.deepEqual(
      results.map((r) => r.value).sort((a, b) => a - b),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.equal(statSync(file).mode & 0o7777, 0o660);
    assert.equal(statSync(file).size, 4096);
  });

  it('creates the parent directory (0770) when asked', () => {
    const file = path.join(tempDir(), 'run', 'shmem', 'config-versions');
    expectProblem(() => GenerationPage.open(file), 'not-found', file);
    mkdirSync(path.dirname(path.dirname(file)));
    const page = GenerationPage.open(file, { mkdir: true, mode: 0o640 });
    assert.equal(statSync(path.dirname(file)).mode & 0o7777, 0o770);
    assert.equal(statSync(file).mode & 0o7777, 0o640);
    page.close();
  });

  it('rejects a file of the wrong size, without SIGBUS', () => {
    const dir = tempDir();
    const short = path.join(dir, 'short');
    writeFileSync(short, Buffer.alloc(100));
    expectProblem(() => GenerationPage.open(short), 'wrong-size', short);
    const long = path.join(dir, 'long');
    writeFileSync(long, Buffer.alloc(8192));
    expectProblem(() => GenerationPage.open(long), 'wrong-size', long);
    const empty = path.join(dir, 'empty');
    writeFileSync(empty, '');
    expectProblem(() => GenerationPage.open(empty), 'wrong-size', empty);
  });

  it('rejects a 4096-byte file with the wrong magic', () => {
    const file = path.join(tempDir(), 'zeros');
    writeFileSync(file, Buffer.alloc(4096));
    expectProblem(() => GenerationPage.open(file), 'wrong-magic', file);
  });

  it('rejects something that is not a regular file', () => {
    const dir = tempDir();
    expectProblem(() => GenerationPage.open(dir, { readOnly: true }), 'not-regular-file', dir);
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expectProblem(() => GenerationPage.open(fifo), 'not-regular-file', fifo);
  });

  it('reports permission denied to an unprivileged process', async (t) => {
    const nobody = nobodysCopy();
    if (typeof nobody === 'string') return t.skip(nobody);
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const file = path.join(dir, 'config-versions');
    GenerationPage.open(file, { mode: 0o600 }).close();
    const out = await runChild(
      nobody.file('dist/test/fixtures/page-child.js'),
      ['open', file, '0'],
      {
        prefix: AS_NOBODY,
      },
    );
    assert.equal(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout);
    assert.equal(result.ok, false);
    assert.equal(result.name, 'GenerationPageError');
    assert.equal(result.problem, 'permission-denied');
    assert.ok(result.message.includes(file));
  });

  it('a read-only mapping loads but refuses to increment', () => {
    const file = path.join(tempDir(), 'config-versions');
    const writer = GenerationPage.open(file);
    writer.increment(Slot.USER_AND_ACL);
    const reader = GenerationPage.open(file, { readOnly: true });
    assert.equal(reader.load(Slot.USER_AND_ACL), 1);
    expectProblem(() => reader.increment(Slot.USER_AND_ACL), 'read-only', file);
    writer.increment(Slot.USER_AND_ACL);
    assert.equal(reader.load(Slot.USER_AND_ACL), 2);
    writer.close();
    reader.close();
  });

  it('a slot out of range is a RangeError', () => {
    const page = GenerationPage.open(path.join(tempDir(), 'config-versions'));
    for (const slot of [-1, SLOT_COUNT, 1.5, Number.NaN, 1e20]) {
      assert.throws(() => page.load(slot), RangeError, `load(${slot})`);
      assert.throws(() => page.increment(slot), RangeError, `increment(${slot})`);
    }
    assert.equal(page.load(SLOT_COUNT - 1), 0);
    assert.equal(page.increment(SLOT_COUNT - 1), 1);
    page.close();
  });

  it('values survive close and reopen; a closed page throws', () => {
    const file = path.join(tempDir(), 'config-versions');
    const page = GenerationPage.open(file);
    for (let i = 0; i < 5; i++) page.increment(Slot.REMOTE_MAPPING);
    page.close();
    page.close();
    expectProblem(() => page.load(0), 'closed', file);
    const again = GenerationPage.open(file, { create: false });
    assert.equal(again.load(Slot.REMOTE_MAPPING), 5);
    again.close();
  });

  it('openGenerationPageOrNull returns null with one warning naming the reason', () => {
    const file = path.join(tempDir(), 'zeros');
    writeFileSync(file, Buffer.alloc(4096));
    const warnings: string[] = [];
    assert.equal(
      openGenerationPageOrNull(file, {}, (m) => warnings.push(m)),
      null,
    );
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /caching disabled.*wrong magic/);
    const good = path.join(path.dirname(file), 'good');
    const page = openGenerationPageOrNull(good, {}, (m) => warnings.push(m));
    assert.ok(page instanceof GenerationPage);
    assert.equal(warnings.length, 1);
    page.close();
  });

  it('resolves the default path from the environment', () => {
    assert.equal(
      defaultPagePath('/etc/x', { RUNTIME_DIRECTORY: '/run/a:/run/b' }, 1000),
      '/run/a/shmem/config-versions',
    );
    assert.equal(defaultPagePath('/etc/x', {}, 0), '/run/token-shadow/shmem/config-versions');
    assert.equal(
      defaultPagePath('/etc/x', { XDG_RUNTIME_DIR: '/run/user/1000' }, 1000),
      '/run/user/1000/token-shadow/config-versions',
    );
    assert.equal(defaultPagePath('/etc/x', {}, 1000), '/etc/x/config-versions');
  });
});
