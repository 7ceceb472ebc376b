/**
 * The last-used interval and the expiry window in the settings file
 * (api.json), which both daemons read at start and again on SIGHUP: the same
 * durations the options take, the same refusals, and applied by a reload
 * without a restart (real manager and API processes).
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type Api,
  call,
  type Deployment,
  type LogLine,
  type LogWatcher,
  startDeployment,
} from '../harness/daemons.js';
import { UserConfigStore } from '../src/access/user-info.js';
import { addUser } from '../src/config/users.js';
import { readSettingsFile } from '../src/daemon/settings-file.js';
import { ConfigError } from '../src/errors.js';
import { LAST_USED_FILE, parseLastUsed } from '../src/usage/file.js';
import { createRootToken } from './helpers/daemons.js';
import { waitForFile } from './helpers/files.js';
import { tempDir } from './helpers/tmp.js';

/** What a loaded 2-core machine may add (timers late, processes descheduled). */
const LOAD_ALLOWANCE_MS = 2500;

/** The first line from now on that matches. */
function next(log: LogWatcher, match: (line: LogLine) => boolean): Promise<LogLine> {
  const mark = log.lines.length;
  return log.waitFor((l) => log.lines.indexOf(l) >= mark && match(l));
}

describe('the settings file: lastUsedInterval and expiryWindow', () => {
  it('takes the durations the options take, and refuses what they refuse, naming the key', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'api.json');
    writeFileSync(file, JSON.stringify({ lastUsedInterval: '2s', expiryWindow: '3d', ttlMs: 5 }));
    assert.deepEqual(await readSettingsFile(file), {
      lastUsedIntervalMs: 2000,
      expiryWindowSeconds: 3 * 86_400,
      ttlMs: 5,
    });
    for (const bad of [
      { lastUsedInterval: '10' }, // bare digits: no unit
      { lastUsedInterval: 10_000 }, // not a duration text
      { expiryWindow: 'soon' },
      { expiryWindow: '-1d' },
    ]) {
      writeFileSync(file, JSON.stringify(bad));
      const key = Object.keys(bad)[0] as string;
      await assert.rejects(readSettingsFile(file), (error: Error) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, new RegExp(`${key}: expected a duration`));
        return true;
      });
    }
  });

  describe('with real daemons', () => {
    const dir = tempDir();
    const etc = path.join(dir, 'etc');
    const settingsFile = path.join(etc, 'api.json');
    const lastUsed = path.join(etc, LAST_USED_FILE);
    const expire = Math.floor(Date.now() / 1000) + 2 * 86_400;
    let d: Deployment;
    let api: Api;

    before(async () => {
      mkdirSync(etc, { recursive: true });
      // A user expiring in two days: outside a 1d window, inside 3d.
      const store = new UserConfigStore({ path: path.join(etc, 'user.cfg'), page: null });
      await store.mutate((config) => addUser(config, 'ann@pve', { expire }));
      writeFileSync(settingsFile, JSON.stringify({ lastUsedInterval: '1h', expiryWindow: '1d' }));
      d = await startDeployment(dir);
      api = await d.startApi('api', ['--workers', '1']);
    });
    after(() => d?.stop());

    it('both daemons start with the file and apply a changed one on SIGHUP', {
      timeout: 60_000,
    }, async () => {
      const ready = await d.managerLog.waitFor((l) => l.msg === 'manager ready');
      assert.equal(ready.lastUsedIntervalMs, 3_600_000);
      const quiet = await d.managerLog.waitFor((l) => l.msg === 'nothing expires soon');
      assert.equal(quiet.windowSeconds, 86_400);

      writeFileSync(settingsFile, JSON.stringify({ lastUsedInterval: '1s', expiryWindow: '3d' }));
      const reloaded = next(d.managerLog, (l) => String(l.msg).startsWith('reloaded: last-used'));
      const expiring = next(d.managerLog, (l) => l.msg === 'expiring soon');
      d.manager.kill('SIGHUP');
      assert.equal((await reloaded).lastUsedIntervalMs, 1000);
      assert.equal((await reloaded).expiryWindowSeconds, 3 * 86_400);
      assert.deepEqual((await expiring).users, [{ id: 'ann@pve', expire }]);
      const rolled = next(api.log, (l) => l.msg === 'reload done' || l.msg === 'reload failed');
      api.child.kill('SIGHUP');
      assert.equal((await rolled).msg, 'reload done');

      // An hour apart, this use would reach the file only when the worker stops; now within 1 s.
      const token = await createRootToken(d, 'seen');
      const reply = await call(api, 'GET', '/version', { auth: token.header });
      assert.equal(reply.status, 200, reply.raw);
      const answered = Date.now();
      await waitForFile(lastUsed, (text) => parseLastUsed(lastUsed, text).tokens.get(token.id));
      const elapsed = Date.now() - answered;
      assert.ok(elapsed <= 1000 + 100 + LOAD_ALLOWANCE_MS, `took ${elapsed} ms`);
    });

    it('a bad value fails the reload of either daemon, which keeps running', async () => {
      writeFileSync(settingsFile, JSON.stringify({ lastUsedInterval: '10' }));
      const managerFailed = next(d.managerLog, (l) => l.msg === 'reload failed');
      d.manager.kill('SIGHUP');
      assert.match(String((await managerFailed).err), /lastUsedInterval: expected a duration/);
      const apiFailed = next(api.log, (l) => l.msg === 'reload failed' || l.msg === 'reload done');
      api.child.kill('SIGHUP');
      const line = await apiFailed;
      assert.equal(line.msg, 'reload failed');
      assert.match(String(line.err), /lastUsedInterval: expected a duration/);
      assert.equal(d.manager.exitCode, null);
      await createRootToken(d, 'after'); // the manager still serves
    });
  });
});
