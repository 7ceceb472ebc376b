/**
 * Issue 10, case 1: the generation page replaced, removed or truncated under
 * running daemons. Real manager, real API workers, real tokenctl; every case
 * checks invariant I1 (no process accepts a secret once the call that removed
 * it has returned) right after the call, not after a TTL.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
} from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  call,
  type Daemons,
  type HarnessOptions,
  pveHeader,
  startDaemons,
} from '../harness/daemons.js';
import { GenerationPage } from '../src/generations/page.js';
import { runChild, startChild } from './helpers/children.js';
import { AS_NOBODY, NOBODY, nobodysCopy } from './helpers/nobody.js';
import { tempDir } from './helpers/tmp.js';
import { unitLayout } from './helpers/units.js';

const run = promisify(execFile);
const TOKENCTL = fileURLToPath(new URL('../src/cli/tokenctl.js', import.meta.url));

/** `cp -p page page.new && mv page.new page`: what a restore, tmpfiles or an admin does. */
function replacePage(page: string): void {
  const copy = `${page}.new`;
  copyFileSync(page, copy);
  const st = statSync(page);
  chownSync(copy, st.uid, st.gid);
  chmodSync(copy, st.mode & 0o7777);
  renameSync(copy, page);
}

interface Fixture {
  d: Daemons;
  admin: string;
  victim: { id: string; header: string };
  page: string;
}

async function deploy(dir: string, harness: HarnessOptions = {}): Promise<Fixture> {
  const d = await startDaemons(dir, [], harness);
  const admin = await d.asRoot('token.create', {
    userid: 'root@pam',
    tokenName: 'admin',
    fields: { privsep: false },
  });
  assert.equal(admin.ok, true, JSON.stringify(admin));
  const header = pveHeader('root@pam!admin', (admin.data as { value: string }).value);
  const created = await call(d, 'POST', '/access/users/root@pam/token/victim', {
    auth: header,
    form: { privsep: 0 },
  });
  assert.equal(created.status, 200, created.raw);
  const victim = {
    id: 'root@pam!victim',
    header: pveHeader('root@pam!victim', (created.body.data as { value: string }).value),
  };
  // New connections go round-robin: every worker verifies and caches the secret.
  for (let i = 0; i < 8; i++) {
    assert.equal((await call(d, 'GET', '/version', { auth: victim.header })).status, 200);
  }
  return { d, admin: header, victim, page: path.join(dir, 'run', 'shmem', 'config-versions') };
}

async function accepted(f: Fixture, requests = 12): Promise<number> {
  let ok = 0;
  for (let i = 0; i < requests; i++) {
    if ((await call(f.d, 'GET', '/version', { auth: f.victim.header })).status === 200) ok++;
  }
  return ok;
}

describe('a replaced, removed or truncated generation page (issue 10, case 1)', () => {
  let current: Daemons | undefined;
  afterEach(async () => {
    await current?.stop();
    current = undefined;
  });

  for (const [name, fault] of [
    ['replaced (cp -p && mv)', replacePage],
    ['removed', (page: string) => rmSync(page)],
  ] as const) {
    it(`page ${name}: a token deleted through the API is refused by every worker at once`, async () => {
      const dir = tempDir();
      chmodSync(dir, 0o755);
      const f = await deploy(dir);
      current = f.d;
      fault(f.page);
      const removed = await call(f.d, 'DELETE', '/access/users/root@pam/token/victim', {
        auth: f.admin,
      });
      assert.equal(removed.status, 200, removed.raw);
      assert.equal(await accepted(f), 0, 'no worker accepts the deleted secret');
      // The admin token keeps working (the daemons still serve after the swap).
      assert.equal((await call(f.d, 'GET', '/version', { auth: f.admin })).status, 200);
    });
  }

  it('page replaced, then a token deleted with tokenctl: refused by every worker at once', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const f = await deploy(dir);
    current = f.d;
    replacePage(f.page);
    await run(process.execPath, [
      TOKENCTL,
      '--config-dir',
      path.join(dir, 'etc'),
      '--runtime-dir',
      path.join(dir, 'run'),
      'token',
      'remove',
      'root@pam!victim',
    ]);
    assert.equal(await accepted(f), 0, 'no worker accepts the secret tokenctl deleted');
  });

  it('page replaced twice, a worker restarted in between: every worker refuses at once', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const f = await deploy(dir);
    current = f.d;
    replacePage(f.page);
    // A worker that dies is re-forked and maps the page now at the path.
    const isListening = (l: Record<string, unknown>) => l.msg === 'worker listening';
    const before = new Set(f.d.apiLog.lines.filter(isListening).map((l) => l.worker));
    process.kill(Number([...before][0]), 'SIGKILL');
    await f.d.apiLog.waitFor((l) => isListening(l) && !before.has(l.worker));
    assert.ok((await accepted(f)) > 0, 'the restarted worker caches the secret too');
    replacePage(f.page);
    const removed = await call(f.d, 'DELETE', '/access/users/root@pam/token/victim', {
      auth: f.admin,
    });
    assert.equal(removed.status, 200, removed.raw);
    assert.equal(await accepted(f), 0, 'no worker accepts the deleted secret');
  });

  it('a writer that cannot reach a page some process still maps changes nothing', async (t) => {
    // nobody runs the fixture from a package copy it can read (the clone may be in a 0700 dir).
    const nobody = nobodysCopy();
    if (typeof nobody === 'string') return t.skip(nobody);
    const child = nobody.file('dist/test/fixtures/page-swap-child.js');
    // Readers of another user than the writer's, holding a page it may not open for writing.
    const dir = tempDir();
    chmodSync(dir, 0o755);
    chownSync(dir, NOBODY, NOBODY);
    const page = path.join(dir, 'config-versions');
    const shadow = path.join(dir, 'token.shadow');
    GenerationPage.open(page, { mode: 0o644 }).close(); // root's, read-only for the others
    const asNobody = { prefix: AS_NOBODY };
    const holder = startChild(child, ['hold', page], asNobody);
    assert.equal(await holder.nextLine(), 'ready', holder.stderr());
    replacePage(page);
    chownSync(page, NOBODY, NOBODY);
    chmodSync(page, 0o660);
    const refused = await runChild(child, ['write', page, shadow], asNobody);
    assert.deepEqual(JSON.parse(refused.stdout), {
      ok: false,
      name: 'GenerationPageError',
      problem: 'unreachable',
    });
    assert.equal(existsSync(shadow), false, 'nothing was written');
    holder.process.stdin?.end();
    await once(holder.process, 'close');
    const done = await runChild(child, ['write', page, shadow], asNobody);
    assert.deepEqual(JSON.parse(done.stdout), { ok: true }, done.stderr);
  });

  it('a page truncated to 0 bytes is recreated by the manager at start, with one log line', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const f = await deploy(dir);
    await f.d.stop();
    truncateSync(f.page, 0);
    const d = await startDaemons(dir);
    current = d;
    assert.equal(statSync(f.page).size, 4096);
    const repaired = d.managerLog.lines.filter((l) => /recreated/.test(String(l.msg)));
    assert.equal(repaired.length, 1, JSON.stringify(d.managerLog.lines));
    // Caching works again: the metrics of a worker would show hits; here, the
    // page's TOKEN_SHADOW slot moves when a token is created.
    const created = await call(d, 'POST', '/access/users/root@pam/token/again', {
      auth: f.admin,
      form: { privsep: 0 },
    });
    assert.equal(created.status, 200, created.raw);
  });
});

describe('page swaps under the units of deploy/ (issue 22, case 1)', () => {
  let current: Daemons | undefined;
  afterEach(async () => {
    await current?.stop();
    current = undefined;
  });

  it("manager with its unit's capabilities, API as nobody: a token deleted after a swap is refused by every worker", async (t) => {
    const layout = unitLayout();
    if (typeof layout === 'string') return t.skip(layout);
    const dir = tempDir();
    chmodSync(dir, 0o755);
    // The manager trusts a stat for no time: it looks at the page at its next request, as
    // one running for longer than its TTL (60 s) does; the workers keep the default TTL.
    const f = await deploy(dir, {
      ...layout.harness,
      managerArgs: [...(layout.harness.managerArgs ?? []), '--ttl', '0'],
    });
    current = f.d;
    assert.equal(statSync(f.page).gid, layout.gid, 'the page belongs to the shared group');
    replacePage(f.page);
    const removed = await call(f.d, 'DELETE', '/access/users/root@pam/token/victim', {
      auth: f.admin,
    });
    assert.equal(removed.status, 200, removed.raw);
    assert.equal(await accepted(f, 20), 0, 'no worker accepts the deleted secret');
    assert.equal((await call(f.d, 'GET', '/version', { auth: f.admin })).status, 200);
  });
});
