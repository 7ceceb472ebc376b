import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Api, call, type Deployment, pveHeader, startDeployment } from '../harness/daemons.js';
import { UserConfigStore } from '../src/access/user-info.js';
import { addUser } from '../src/config/users.js';
import { LAST_USED_FILE, parseLastUsed } from '../src/usage/file.js';
import { waitForFile } from './helpers/files.js';
import { tempDir } from './helpers/tmp.js';

const INTERVAL_MS = 2000;
/** The manager writes a tenth of the interval after each boundary. */
const SETTLE_MS = INTERVAL_MS / 10;
/** What a loaded 2-core machine may add (timers late, processes descheduled). */
const LOAD_ALLOWANCE_MS = 1500;
const interval = ['--last-used-interval', `${INTERVAL_MS}ms`];
/** An epoch second `days` from when this file was loaded. */
const base = Math.floor(Date.now() / 1000);
function soon(days: number): number {
  return base + days * 86_400;
}
const tokenctl = fileURLToPath(new URL('../src/cli/tokenctl.js', import.meta.url));

describe('last use per token, across real processes', () => {
  let d: Deployment;
  let first: Api;
  let second: Api;
  const secrets = new Map<string, string>();
  const dir = tempDir();
  chmodSync(dir, 0o755);
  const file = path.join(dir, 'etc', LAST_USED_FILE);
  /** Token id -> second, as the file has it. */
  const recorded = (text: string) =>
    new Map([...parseLastUsed(file, text).tokens].map(([id, use]) => [id, use.seconds]));
  const header = (name: string) => pveHeader(`root@pam!${name}`, secrets.get(name) as string);
  const use = async (api: { url: string; ca: Buffer }, name: string, localAddress?: string) => {
    const reply = await call(api, 'GET', '/version', {
      auth: header(name),
      ...(localAddress ? { localAddress } : {}),
    });
    assert.equal(reply.status, 200, reply.raw);
  };

  before(async () => {
    // A user expiring in two days, there before the manager starts: its first expiry check sees it.
    mkdirSync(path.join(dir, 'etc'), { recursive: true });
    const store = new UserConfigStore({ path: path.join(dir, 'etc', 'user.cfg'), page: null });
    await store.mutate((config) => addUser(config, 'ann@pve', { expire: soon(2) }));
    d = await startDeployment(dir, { managerArgs: interval });
    // Two API daemons of one worker each: two worker processes, each known for sure.
    first = await d.startApi('first', ['--workers', '1', ...interval], { metrics: true });
    second = await d.startApi('second', ['--workers', '1', ...interval]);
    for (const name of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'never', 'soon']) {
      // 'soon' expires in three days: within --expiring-within 14d, unlike the others.
      const expire = name === 'soon' ? soon(3) : 0;
      const created = await d.asRoot('token.create', {
        userid: 'root@pam',
        tokenName: name,
        fields: { privsep: false, expire },
      });
      assert.equal(created.ok, true, JSON.stringify(created));
      secrets.set(name, (created.data as { value: string }).value);
    }
  });
  after(() => d?.stop());

  it('the manager logs what expires within the window, and the metrics count it', async () => {
    const line = await d.managerLog.waitFor((l) => l.msg === 'expiring soon');
    assert.deepEqual(line.users, [{ id: 'ann@pve', expire: soon(2) }]);
    assert.equal(line.windowSeconds, 14 * 86_400);
    await use(first, 'a');
    await use(first, 'a');
    const metrics = await first.metrics();
    assert.ok((metrics.get('token_shadow_token_uses_total') as number) >= 2);
    assert.equal(metrics.get('token_shadow_expiring{kind="user"}'), 1);
    assert.equal(metrics.get('token_shadow_expiring{kind="token"}'), 1); // root@pam!soon
    for (const name of metrics.keys()) assert.ok(!name.includes('root@pam!'), name);
  });

  it('uses on two workers reach the manager file within one batch interval', async () => {
    const startSecond = Math.floor(Date.now() / 1000);
    await use(first, 'a'); // the first API daemon's only worker
    await use(second, 'b'); // the second's
    const answered = Date.now();
    const tokens = await waitForFile(file, (text) => {
      const t = recorded(text);
      return t.has('root@pam!a') && t.has('root@pam!b') ? t : undefined;
    });
    const elapsed = Date.now() - answered;
    assert.ok(
      elapsed <= INTERVAL_MS + SETTLE_MS + LOAD_ALLOWANCE_MS,
      `took ${elapsed} ms for a ${INTERVAL_MS} ms interval`,
    );
    for (const id of ['root@pam!a', 'root@pam!b']) {
      const second = tokens.get(id) as number;
      assert.ok(second >= startSecond - 1 && second <= Math.ceil(answered / 1000) + 1, id);
    }
    assert.equal(tokens.has('root@pam!never'), false);

    // The API shows it: an additional field, absent for never.
    const list = await call(first, 'GET', '/access/users/root@pam/token', { auth: header('a') });
    const rows = list.body.data as Array<{ tokenid: string; 'last-used'?: number }>;
    const byName = new Map(rows.map((r) => [r.tokenid, r]));
    assert.equal(byName.get('b')?.['last-used'], tokens.get('root@pam!b'));
    assert.equal(byName.get('never')?.['last-used'], undefined);
    // The request itself was a use of 'a': this worker's own note is newer than or equal to the file.
    assert.ok((byName.get('a')?.['last-used'] as number) >= (tokens.get('root@pam!a') as number));
    const one = await call(first, 'GET', '/access/users/root@pam/token/b', { auth: header('a') });
    assert.equal(
      (one.body.data as { 'last-used'?: number })['last-used'],
      tokens.get('root@pam!b'),
    );
    assert.equal((one.body.data as { enable: number }).enable, 1);

    // tokenctl reads the same file: epoch in JSON, relative time in the table.
    const run = promisify(execFile);
    const dirs = ['--config-dir', path.join(dir, 'etc'), '--runtime-dir', path.join(dir, 'run')];
    // Tables without borders (pveum's --noborder), so the rows match as plain text.
    const ctl = (...args: string[]) =>
      run(process.execPath, [tokenctl, ...dirs, '--noborder', ...args]);
    const json = async (...args: string[]) =>
      JSON.parse((await ctl('--output', 'json', ...args)).stdout) as Array<{
        tokenid: string;
        'last-used'?: number;
      }>;
    // The harness's own root@pam token (it authenticates to the manager) is not one of ours.
    const names = (rows: Array<{ tokenid: string }>) =>
      rows
        .map((r) => r.tokenid)
        .filter((t) => !t.startsWith('harness'))
        .sort();
    const listed = await json('token', 'list', 'root@pam');
    assert.equal(listed.find((t) => t.tokenid === 'b')?.['last-used'], tokens.get('root@pam!b'));
    const table = await ctl('token', 'list', 'root@pam');
    assert.match(table.stdout, /LAST-USED/);
    assert.match(table.stdout, /root@pam!never .*never/);
    assert.match(table.stdout, /root@pam!b .*(just now|\ds ago)/);
    const info = await ctl('--output', 'json', 'token', 'info', 'root@pam!b');
    assert.equal(JSON.parse(info.stdout)['last-used'], tokens.get('root@pam!b'));
    assert.match((await ctl('token', 'info', 'root@pam!never')).stdout, /last-used\s+never/);

    // Finding tokens to revoke: none of these was used within the hour but a and b.
    const unused = await ctl('--output', 'json', 'token', 'list', '--unused-since', '1h');
    assert.deepEqual(names(JSON.parse(unused.stdout)), [
      'c',
      'd',
      'e',
      'f',
      'g',
      'h',
      'never',
      'soon',
    ]);
    assert.match(unused.stderr, /uses are recorded only since/); // the record is younger than 1h
    assert.deepEqual(names(await json('token', 'list', '--expiring-within', '14d')), ['soon']);
    assert.deepEqual(names(await json('token', 'list', '--expiring-within', '1d')), []);
  });

  it('last use keeps the source address: the API and tokenctl show where from', async () => {
    // 'g' is used only here: from 127.0.0.2 (the daemon listens on 127.0.0.1, both loopback).
    await use(first, 'g', '127.0.0.2');
    await use(first, 'g', '127.0.0.2'); // a second connection from the same address
    const where = await waitForFile(file, (text) => {
      const use = parseLastUsed(file, text).tokens.get('root@pam!g');
      return use?.source === undefined ? undefined : use;
    });
    assert.equal(where.source, '127.0.0.2');
    assert.equal(where.host, undefined, 'single-host mode names no host');
    // The API, from the other daemon (the file alone) and from 127.0.0.3.
    const list = await call(second, 'GET', '/access/users/root@pam/token', {
      auth: header('h'),
      localAddress: '127.0.0.3',
    });
    const rows = list.body.data as Array<Record<string, unknown>>;
    const g = rows.find((r) => r.tokenid === 'g');
    assert.equal(g?.['last-used'], where.seconds);
    assert.equal(g?.['last-used-source'], '127.0.0.2');
    assert.equal('last-used-host' in (g ?? {}), false);
    assert.equal('last-used-source' in (rows.find((r) => r.tokenid === 'never') ?? {}), false);
    const info = await call(second, 'GET', '/access/users/root@pam/token/g', { auth: header('h') });
    assert.equal((info.body.data as Record<string, unknown>)['last-used-source'], '127.0.0.2');
    // The request was itself a use of 'h', from 127.0.0.3: this worker's own note says so.
    const h = rows.find((r) => r.tokenid === 'h');
    assert.equal(h?.['last-used-source'], '127.0.0.3');

    // tokenctl: the table's FROM column, info's lines, and the fields in JSON and YAML.
    const run = promisify(execFile);
    const dirs = ['--config-dir', path.join(dir, 'etc'), '--runtime-dir', path.join(dir, 'run')];
    const ctl = async (...args: string[]) =>
      (await run(process.execPath, [tokenctl, ...dirs, '--noborder', ...args])).stdout;
    const table = await ctl('token', 'list', 'root@pam');
    assert.match(table, /LAST-USED +FROM/);
    // The last column (COMMENT) is empty for these rows: the line ends after FROM.
    assert.match(table, /^root@pam!g .*(just now|\d+s ago) +127\.0\.0\.2$/m);
    assert.match(table, /^root@pam!never .*never +-$/m);
    const text = await ctl('token', 'info', 'root@pam!g');
    assert.match(text, /last-used-source\s+127\.0\.0\.2/);
    assert.match(text, /last-used-host\s+-/);
    const json = JSON.parse(await ctl('--output', 'json', 'token', 'info', 'root@pam!g'));
    assert.equal(json['last-used-source'], '127.0.0.2');
    assert.equal(json['last-used'], where.seconds);
    const listed = JSON.parse(await ctl('--output', 'json', 'token', 'list', 'root@pam')) as Array<
      Record<string, unknown>
    >;
    assert.equal(listed.find((t) => t.tokenid === 'g')?.['last-used-source'], '127.0.0.2');
    const yaml = await ctl('--output', 'yaml', 'token', 'info', 'root@pam!g');
    assert.match(yaml, /last-used-source: 127\.0\.0\.2/);
  });

  it('a worker crash loses at most its last batch', async () => {
    const [pid] = second.workerPids as [number];
    await use(second, 'c');
    const before = await waitForFile(file, (text) => recorded(text).get('root@pam!c'));
    await use(second, 'd'); // noted in the worker's memory only, until its next batch
    process.kill(pid, 'SIGKILL');
    await second.log.waitFor((l) => String(l.msg).startsWith('worker died') && l.worker === pid);
    const replaced = await second.log.waitFor(
      (l) => l.msg === 'worker listening' && l.worker !== pid,
    );
    // The only worker died, so the primary's listening socket went with it: a new port.
    second.url = second.url.replace(/:\d+\//, `:${replaced.port}/`);
    await use(second, 'e'); // the replacement worker reports as before
    const tokens = await waitForFile(file, (text) => {
      const t = recorded(text);
      return t.has('root@pam!e') ? t : undefined;
    });
    // What an earlier batch delivered survives the crash unchanged; only 'd' may be lost.
    assert.equal(tokens.get('root@pam!c'), before);
    assert.ok(tokens.has('root@pam!a') && tokens.has('root@pam!b'));
  });

  it('a worker stopping hands over its last batch, whatever the interval', async () => {
    // An hour between batches: only the shutdown batch can bring this use to the manager.
    const third = await d.startApi('third', ['--workers', '1', '--last-used-interval', '1h']);
    await use(third, 'f');
    await third.stop();
    assert.equal(third.child.exitCode, 0);
    const second = await waitForFile(file, (text) => recorded(text).get('root@pam!f'));
    assert.ok(second > 0);
  });

  it('a deleted token leaves the record', async () => {
    const removed = await d.asRoot('token.delete', { userid: 'root@pam', tokenName: 'c' });
    assert.equal(removed.ok, true);
    await use(first, 'a'); // something to write
    await waitForFile(file, (text) => (recorded(text).has('root@pam!c') ? undefined : true));
  });
  it("a bulk revocation takes the tokens not used since a time, as the manager's ledger has it", async () => {
    const made = new Map<string, string>();
    for (const name of ['used1', 'idle1']) {
      const created = await d.asRoot('token.create', {
        userid: 'root@pam',
        tokenName: name,
        fields: { privsep: false, comment: 'bulk-by-use' },
      });
      assert.equal(created.ok, true, JSON.stringify(created));
      made.set(name, pveHeader(`root@pam!${name}`, (created.data as { value: string }).value));
    }
    const since = Math.floor(Date.now() / 1000) - 10;
    const used = made.get('used1') as string;
    assert.equal((await call(first, 'GET', '/version', { auth: used })).status, 200);
    await waitForFile(file, (text) => recorded(text).get('root@pam!used1'));
    const revoke = (before: number) =>
      call(first, 'POST', '/access/tokens/revoke', {
        auth: header('a'),
        form: { comment: 'bulk-by-use', 'last-used-before': before },
      });
    // Closer to now than two report intervals: a use since may not have reached the ledger.
    const early = await revoke(Math.floor(Date.now() / 1000));
    assert.equal(early.status, 400, early.raw);
    const taken = await revoke(since);
    assert.equal(taken.status, 200, taken.raw);
    assert.deepEqual(taken.body.data, { revoked: ['root@pam!idle1'] });
    assert.equal((await call(first, 'GET', '/version', { auth: used })).status, 200);
    const idle = made.get('idle1') as string;
    assert.equal((await call(second, 'GET', '/version', { auth: idle })).status, 401);
  });
});
