import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  renameSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { call, pveHeader, startDaemons } from '../harness/daemons.js';
import {
  GenerationPage,
  GenerationPageError,
  openGenerationPageOrNull,
  Slot,
} from '../src/index.js';
import { setup } from './helpers/shadow.js';
import { tempDir } from './helpers/tmp.js';

function expectInsecure(fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => e instanceof GenerationPageError && e.problem === 'insecure');
}

describe('faults around the generation page', () => {
  it('a page truncated while mapped faults into a private page, not SIGBUS', () => {
    const file = path.join(tempDir(), 'config-versions');
    const page = GenerationPage.open(file);
    page.increment(Slot.TOKEN_SHADOW);
    truncateSync(file, 0);
    const after = page.load(Slot.TOKEN_SHADOW); // would be SIGBUS without the guard
    assert.notEqual(after, 1);
    assert.equal(page.health(), 'faulted');
    const warnings: string[] = [];
    assert.equal(
      page.degraded((m) => warnings.push(m)),
      true,
    );
    assert.equal(
      page.degraded((m) => warnings.push(m)),
      true,
    );
    assert.equal(warnings.length, 1, 'one clear line');
    assert.match(warnings[0] as string, /truncated while mapped.*caching disabled/);
    page.close();
  });

  it('TokenShadow keeps verifying, uncached, once its page is truncated', async () => {
    const s = setup();
    const warnings: string[] = [];
    const shadow = s.make({ onWarning: (m) => warnings.push(m) });
    const secret = await shadow.generateAndSetSecret('joe@pve!ci');
    assert.equal(shadow.verifyCached('joe@pve!ci', secret), true);
    truncateSync(s.pagePath, 0);
    assert.equal(
      shadow.verifyCached('joe@pve!ci', secret),
      undefined,
      'the faulted page reads 2^64-1: the fast path no longer matches',
    );
    assert.equal(await shadow.verifySecret('joe@pve!ci', secret), true);
    assert.equal(await shadow.verifySecret('joe@pve!ci', 'wrong'), false);
    assert.equal(shadow.caching, false);
    assert.equal(warnings.filter((w) => /caching disabled/.test(w)).length, 1);
    const rotated = await shadow.generateAndSetSecret('joe@pve!ci');
    assert.equal(await shadow.verifySecret('joe@pve!ci', secret), false);
    assert.equal(await shadow.verifySecret('joe@pve!ci', rotated), true);
  });

  it('a page cut short (but not below the slots) is noticed at the next TTL check', async () => {
    const s = setup();
    const warnings: string[] = [];
    const shadow = s.make({ onWarning: (m) => warnings.push(m) });
    const secret = await shadow.generateAndSetSecret('joe@pve!ci');
    truncateSync(s.pagePath, 100); // slot 3 survives in the first 100 bytes: no fault
    assert.equal(shadow.verifyCached('joe@pve!ci', secret), true);
    s.now.ms += 1001;
    assert.equal(await shadow.verifySecret('joe@pve!ci', secret), true);
    assert.equal(shadow.caching, false);
    assert.match(warnings.join('\n'), /changed size while mapped/);
  });

  it('a page replaced while mapped is noticed at the next check, and the new one mapped', async () => {
    const s = setup();
    const warnings: string[] = [];
    const shadow = s.make({ onWarning: (m) => warnings.push(m) });
    const secret = await shadow.generateAndSetSecret('joe@pve!ci');
    const other = path.join(s.dir, 'other-page');
    GenerationPage.open(other).close();
    renameSync(other, s.pagePath);
    assert.equal(s.page.health(), 'replaced');
    const mapping = s.page.mapping;
    s.now.ms += 1001; // the TTL check looks at the page too
    assert.equal(await shadow.verifySecret('joe@pve!ci', secret), true);
    assert.equal(s.page.mapping, mapping + 1, 'remapped');
    assert.equal(s.page.health(), null);
    assert.equal(shadow.caching, true);
    assert.match(warnings.join('\n'), /replaced by another file while mapped: now using the page/);
    assert.equal(shadow.verifyCached('joe@pve!ci', secret), true, 'cached again on the new page');

    const file = path.join(tempDir(), 'config-versions');
    const page = GenerationPage.open(file);
    rmSync(file);
    assert.equal(page.health(), 'missing');
    page.close();
  });

  it('refuses a page others can write or someone else owns', () => {
    const dir = tempDir();
    const file = path.join(dir, 'config-versions');
    GenerationPage.open(file).close();
    chmodSync(file, 0o666);
    expectInsecure(() => GenerationPage.open(file));
    const warnings: string[] = [];
    assert.equal(
      openGenerationPageOrNull(file, {}, (m) => warnings.push(m)),
      null,
    );
    assert.match(warnings[0] as string, /writable by others/);
    chmodSync(file, 0o660);
    chownSync(file, 65534, 65534);
    expectInsecure(() => GenerationPage.open(file));
    chownSync(file, 0, 0);
    const page = GenerationPage.open(file);
    assert.equal(page.health(), null);
    chmodSync(file, 0o662);
    assert.equal(page.health(), 'insecure');
    page.close();
  });

  it('a missing directory means no page, one warning, and no caching', () => {
    const file = path.join(tempDir(), 'missing', 'shmem', 'config-versions');
    const warnings: string[] = [];
    assert.equal(
      openGenerationPageOrNull(file, {}, (m) => warnings.push(m)),
      null,
    );
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /caching disabled.*No such file/);
  });

  it('a full tmpfs fails page creation with a clear error', (t) => {
    const mountPoint = tempDir();
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4k', 'tmpfs', mountPoint], {
        stdio: 'ignore',
      });
    } catch {
      t.skip('cannot mount a tmpfs here');
      return;
    }
    try {
      writeFileSync(path.join(mountPoint, 'filler'), Buffer.alloc(4096));
      const file = path.join(mountPoint, 'config-versions');
      assert.throws(
        () => GenerationPage.open(file),
        (e: unknown) => e instanceof GenerationPageError && /No space left/.test(e.message),
      );
      const warnings: string[] = [];
      assert.equal(
        openGenerationPageOrNull(file, {}, (m) => warnings.push(m)),
        null,
      );
      assert.equal(warnings.length, 1);
    } finally {
      execFileSync('umount', [mountPoint]);
    }
  });

  it('the API keeps serving when its page is truncated, with one line per worker', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    mkdirSync(path.join(dir, 'run'), { recursive: true });
    const d = await startDaemons(dir);
    try {
      const created = await d.asRoot('token.create', {
        userid: 'root@pam',
        tokenName: 'test',
        fields: { privsep: false },
      });
      const auth = pveHeader('root@pam!test', (created.data as { value: string }).value);
      for (let i = 0; i < 4; i++)
        assert.equal((await call(d, 'GET', '/version', { auth })).status, 200);
      truncateSync(path.join(dir, 'run', 'shmem', 'config-versions'), 0);
      for (let i = 0; i < 8; i++)
        assert.equal((await call(d, 'GET', '/version', { auth })).status, 200);
      const bad = await call(d, 'GET', '/version', { auth: pveHeader('root@pam!test', 'wrong') });
      assert.equal(bad.status, 401);
      const warned = d.apiLog.lines.filter((l) => /caching disabled/.test(String(l.msg)));
      assert.ok(warned.length >= 1 && warned.length <= 2, JSON.stringify(warned));
      assert.equal(
        d.apiLog.lines.filter((l) => l.msg === 'worker died, starting a new one').length,
        0,
      );
    } finally {
      await d.stop();
    }
  });
});
