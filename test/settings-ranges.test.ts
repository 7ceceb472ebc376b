/**
 * Issue 22, case 6: settings that overflow timers or make no sense. Node's
 * timers take at most 2^31-1 ms; `lastUsedInterval` 1000d became 1 ms and the
 * manager and every worker looped ~900 times a second. Every number a daemon
 * runs with is checked against its range, at start (the daemon refuses to
 * start, saying which setting) and at a reload (refused, the old settings
 * stay).
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Api, type Deployment, type LogLine, startDeployment } from '../harness/daemons.js';
import { ConfigError } from '../src/errors.js';
import { resolveSettings, type SettingsInput } from '../src/service/settings.js';
import { tempDir } from './helpers/tmp.js';

const DAY_MS = 86_400_000;

/** The next matching line after now (waitFor would also find one seen before). */
function next(log: Deployment['managerLog'], match: (line: LogLine) => boolean) {
  const seen = log.lines.length;
  return log.waitFor((line) => log.lines.indexOf(line) >= seen && match(line));
}

/** Starts a manager with `args`; resolves with its stderr if it refused to start, else fails. */
async function refusedManager(args: string[]): Promise<string> {
  const transcript: string[] = [];
  const started = await startDeployment(tempDir(), { managerArgs: args, transcript }).then(
    (d) => d,
    (error: Error) => error,
  );
  if (!(started instanceof Error)) {
    const ready = started.managerLog.lines.find((l) => l.msg === 'manager ready');
    await started.stop();
    assert.fail(`the manager started with ${args.join(' ')}: ${JSON.stringify(ready)}`);
  }
  return transcript.filter((line) => line.includes('(stderr)')).join('\n');
}

describe('settings out of range (issue 22, case 6)', () => {
  it('resolveSettings refuses each number outside its range, naming the setting', () => {
    const refused: Array<[SettingsInput, RegExp]> = [
      [{ lastUsedIntervalMs: 1000 * DAY_MS }, /lastUsedInterval .* from 1s to 1d, not 1000d/],
      [{ lastUsedIntervalMs: 1 }, /lastUsedInterval/],
      [{ expiryWindowSeconds: 100_000 * 86_400 }, /expiryWindow/],
      [{ ttlMs: 2 ** 31 }, /ttlMs/],
      [{ ttlMs: Number.NaN }, /ttlMs .* not NaN/],
      [{ rpcDeadlineMs: 30 * DAY_MS }, /--rpc-deadline/],
      [{ penalties: { holdMs: 30 * DAY_MS } }, /--penalty-hold/],
      [{ penalties: { budget: -1 } }, /--penalty-budget/],
      [{ penalties: { decayPerSecond: Number.POSITIVE_INFINITY } }, /--penalty-decay/],
      [{ workers: 0 }, /workers/],
      [{ workers: 1.5 }, /workers/],
      [{ hashThreads: 100_000 }, /hashThreads/],
      [{ hashQueue: -1 }, /hashQueue/],
      [{ hashNice: 20 }, /--hash-nice/],
      [{ port: 70_000 }, /--port/],
      [{ metricsPort: -1 }, /--metrics-port/],
    ];
    for (const [input, message] of refused) {
      assert.throws(
        () => resolveSettings({ configDir: '/x', runtimeDir: '/y', ...input }),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
        JSON.stringify(input),
      );
    }
    const edges = resolveSettings({
      lastUsedIntervalMs: 1000,
      ttlMs: 0,
      hashQueue: 0,
      hashNice: 0,
      penalties: { budget: 0, holdMs: 0 },
    });
    assert.equal(edges.lastUsedIntervalMs, 1000);
  });

  it('a manager given --last-used-interval 1000d refuses to start, and says why', async () => {
    const stderr = await refusedManager(['--last-used-interval', '1000d']);
    assert.match(stderr, /lastUsedInterval \(--last-used-interval\) must be .* not 1000d/);
  });

  it('a manager whose settings file says lastUsedInterval 1000d refuses to start', async () => {
    const dir = tempDir();
    const settingsFile = path.join(dir, 'api.json');
    writeFileSync(settingsFile, JSON.stringify({ lastUsedInterval: '1000d' }));
    const stderr = await refusedManager(['--settings-file', settingsFile]);
    assert.match(stderr, /lastUsedInterval .* not 1000d/);
  });

  describe('at a reload', () => {
    const dir = tempDir();
    const etc = path.join(dir, 'etc');
    const settingsFile = path.join(etc, 'api.json');
    let d: Deployment;
    let api: Api;

    before(async () => {
      mkdirSync(etc, { recursive: true });
      writeFileSync(settingsFile, JSON.stringify({ lastUsedInterval: '10s', ttlMs: 1000 }));
      d = await startDeployment(dir);
      api = await d.startApi('api', ['--workers', '1', '--hash-threads', '1']);
    });
    after(() => d?.stop());

    it('both daemons refuse a file with lastUsedInterval 1000d and keep their settings', async () => {
      writeFileSync(settingsFile, JSON.stringify({ lastUsedInterval: '1000d', ttlMs: 1000 }));
      const managerReload = next(d.managerLog, (l) => /^reload/.test(String(l.msg)));
      d.manager.kill('SIGHUP');
      const managerLine = await managerReload;
      assert.equal(managerLine.msg, 'reload failed', JSON.stringify(managerLine));
      assert.match(String(managerLine.err), /lastUsedInterval .* not 1000d/);
      assert.equal(managerLine.settings, 'unchanged');

      const apiReload = next(api.log, (l) => l.msg === 'reload done' || l.msg === 'reload failed');
      api.child.kill('SIGHUP');
      const apiLine = await apiReload;
      assert.equal(apiLine.msg, 'reload failed', JSON.stringify(apiLine));
      assert.match(String(apiLine.err), /lastUsedInterval .* not 1000d/);
      // The same worker serves on, with the old interval.
      const workers = api.log.lines.filter((l) => l.msg === 'worker listening');
      assert.equal(workers.length, 1);

      // A good file is applied again: the manager kept the old settings, not a broken state.
      writeFileSync(settingsFile, JSON.stringify({ lastUsedInterval: '20s', ttlMs: 1000 }));
      const reloaded = next(d.managerLog, (l) => /^reload/.test(String(l.msg)));
      d.manager.kill('SIGHUP');
      assert.equal((await reloaded).lastUsedIntervalMs, 20_000);
    });

    it('an API started with an --rpc-deadline of 30 days refuses to start', async () => {
      await assert.rejects(
        d.startApi('bad', ['--workers', '1', '--rpc-deadline', String(30 * DAY_MS)]),
        /exited \(1\)/,
      );
    });
  });
});
