/**
 * The configuration directory's record of its generation page
 * (src/generations/record.ts): processes given different runtime directories
 * for the same files all map the recorded page, and a process that cannot
 * know which page is in force does not cache (one warning saying why). The
 * same with real processes (the README's app and tokenctl): readme.test.ts.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { addToken, addUser, openTokenShadow } from '../src/index.js';
import { openDeployment } from '../src/service/deployment.js';
import { resolveSettings } from '../src/service/settings.js';
import { tempDir } from './helpers/tmp.js';

function collect(): { warn: (m: string) => void; lines: string[] } {
  const lines: string[] = [];
  return { warn: (m) => lines.push(m), lines };
}

describe('the page record', () => {
  it('the first process records its page; one given another runtime dir maps it and sees its revocations', async () => {
    const root = tempDir('token-shadow-record-');
    const configDir = path.join(root, 'config');
    const app = collect();
    const first = openTokenShadow({
      configDir,
      runtimeDir: path.join(root, 'run-app'),
      hashThreads: 1,
      warn: app.warn,
    });
    const recorded = path.join(root, 'run-app', 'shmem', 'config-versions');
    assert.deepEqual(app.lines, []);
    assert.equal(first.page?.path, recorded);
    assert.equal(readFileSync(path.join(configDir, 'generation-page'), 'utf8'), `${recorded}\n`);

    const other = collect();
    const writer = openDeployment(
      resolveSettings({ configDir, runtimeDir: path.join(root, 'run-ctl'), hashThreads: 1 }),
      'cli',
      { warn: other.warn },
    );
    assert.equal(writer.page?.path, recorded);
    assert.equal(writer.settings.pagePath, recorded);
    assert.equal(other.lines.length, 1);
    assert.match(other.lines[0] ?? '', /using .*run-app.* records for these files, not .*run-ctl/);

    await writer.users.mutate((config) => {
      addUser(config, 'joe@pve', {});
      addToken(config, 'joe@pve!ci', {});
    });
    const secret = await writer.shadow.generateAndSetSecret('joe@pve!ci');
    assert.equal(await first.shadow.verifySecret('joe@pve!ci', secret), true);
    assert.equal(first.shadow.verifyCached('joe@pve!ci', secret), true);
    await writer.shadow.deleteSecret('joe@pve!ci');
    // Refused on the next request, not after the stat check's TTL.
    assert.equal(first.shadow.verifyCached('joe@pve!ci', secret), undefined);
    assert.equal(await first.shadow.verifySecret('joe@pve!ci', secret), false);
    await writer.close();
    await first.close();
  });

  it('a reader with no record (no writer ran yet) does not cache, and says why once', async () => {
    const configDir = tempDir('token-shadow-record-');
    const sink = collect();
    const worker = openDeployment(
      resolveSettings({ configDir, runtimeDir: path.join(configDir, 'run'), hashThreads: 1 }),
      'worker',
      { warn: sink.warn },
    );
    assert.equal(worker.page, null);
    assert.equal(sink.lines.length, 1);
    assert.match(sink.lines[0] ?? '', /caching disabled: .*generation-page does not exist/);
    await worker.close();
  });

  it('a process that cannot write the record when there is none does not cache', async () => {
    const root = tempDir('token-shadow-record-');
    const sink = collect();
    // A configuration directory that does not exist: the record cannot be written.
    const cli = openDeployment(
      resolveSettings({
        configDir: path.join(root, 'absent'),
        runtimeDir: path.join(root, 'run'),
        hashThreads: 1,
      }),
      'cli',
      { warn: sink.warn },
    );
    assert.equal(cli.page, null);
    assert.equal(sink.lines.length, 1);
    assert.match(sink.lines[0] ?? '', /caching disabled: cannot record .* \(ENOENT\)/);
    await cli.close();
  });

  it('a record others could rewrite, or that is not one path, is not trusted', async () => {
    const configDir = tempDir('token-shadow-record-');
    const record = path.join(configDir, 'generation-page');
    const cases: Array<[string, number, RegExp]> = [
      [`${path.join(configDir, 'page')}\n`, 0o662, /cannot be trusted \(writable by others/],
      [`${path.join(configDir, 'page')}\n`, 0o660, /cannot be trusted \(writable by its group/],
      ['relative/page\n', 0o640, /cannot be trusted \(does not hold one absolute/],
      ['/a/page\n/b/page\n', 0o640, /cannot be trusted \(does not hold one absolute/],
    ];
    for (const [text, mode, why] of cases) {
      writeFileSync(record, text);
      chmodSync(record, mode);
      const sink = collect();
      const d = openDeployment(
        resolveSettings({ configDir, runtimeDir: path.join(configDir, 'run'), hashThreads: 1 }),
        'cli',
        { warn: sink.warn },
      );
      assert.equal(d.page, null, text);
      assert.equal(sink.lines.length, 1, text);
      assert.match(sink.lines[0] ?? '', why);
      await d.close();
    }
  });

  it('a record that changes: readers of the old page stop caching, its writers refuse', async () => {
    const root = tempDir('token-shadow-record-');
    const configDir = path.join(root, 'config');
    const runA = path.join(root, 'run-a');
    const readerSink = collect();
    // ttlMs 0: the reader checks its page's health (and the record) on every verify.
    const reader = openTokenShadow({
      configDir,
      runtimeDir: runA,
      hashThreads: 1,
      ttlMs: 0,
      warn: readerSink.warn,
    });
    const oldWriter = openDeployment(
      resolveSettings({ configDir, runtimeDir: runA, hashThreads: 1 }),
      'cli',
      { warn: () => undefined },
    );
    await oldWriter.users.mutate((config) => {
      addUser(config, 'joe@pve', {});
      addToken(config, 'joe@pve!ci', {});
    });
    const secret = await oldWriter.shadow.generateAndSetSecret('joe@pve!ci');
    assert.equal(await reader.shadow.verifySecret('joe@pve!ci', secret), true);
    assert.equal(reader.shadow.stats().entries, 1);

    // An administrator removes the record; a process given another runtime dir claims its own page.
    rmSync(path.join(configDir, 'generation-page'));
    mkdirSync(path.join(root, 'run-b'));
    const newWriter = openDeployment(
      resolveSettings({ configDir, runtimeDir: path.join(root, 'run-b'), hashThreads: 1 }),
      'cli',
      { warn: () => undefined },
    );
    assert.equal(newWriter.page?.path, path.join(root, 'run-b', 'shmem', 'config-versions'));
    await newWriter.shadow.deleteSecret('joe@pve!ci'); // bumps run-b's page only

    assert.equal(await reader.shadow.verifySecret('joe@pve!ci', secret), false);
    assert.equal(
      readerSink.lines.filter((l) =>
        /no longer the page the configuration directory records/.test(l),
      ).length,
      1,
      readerSink.lines.join('\n'),
    );
    await assert.rejects(oldWriter.shadow.generateAndSetSecret('joe@pve!ci'), (error: Error) => {
      assert.match(error.message, /generation-page names .*run-b.*not this page/);
      return true;
    });
    await Promise.all([reader.close(), oldWriter.close(), newWriter.close()]);
  });
});
