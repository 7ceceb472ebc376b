import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { HashPool } from '../src/index.js';
import { parseShadow } from '../src/shadow/file.js';
import { FAST_ARGON2 } from './helpers/shadow.js';
import { ShadowClient } from './helpers/shadow-client.js';
import { tempDir } from './helpers/tmp.js';

function paths() {
  const dir = tempDir();
  return { shadow: path.join(dir, 'token.shadow'), page: path.join(dir, 'config-versions') };
}

describe('TokenShadow across processes', () => {
  it('B rotates or deletes: A refuses the old secret on its very next verify', async () => {
    const p = paths();
    const a = await ShadowClient.start(p.shadow, p.page);
    const b = await ShadowClient.start(p.shadow, p.page);
    const id = 'joe@pve!ci';
    const { secret: old } = (await b.request('generate', { id })) as { secret: string };
    assert.equal(await a.verify(id, old), true);
    assert.equal(await a.verify(id, old), true);
    assert.equal((await a.stats()).shadow.hits, 1, 'second verify came from the cache');
    const { secret: fresh } = (await b.request('generate', { id })) as { secret: string };
    assert.equal(await a.verify(id, old), false);
    assert.equal(await a.verify(id, fresh), true);
    assert.equal((await b.request('delete', { id })).existed, true);
    assert.equal(await a.verify(id, fresh), false);
    await a.stop();
    await b.stop();
  });

  it('a verify in flight across a rotation does not stay accepted or cached', async () => {
    const p = paths();
    const a = await ShadowClient.start(p.shadow, p.page);
    const b = await ShadowClient.start(p.shadow, p.page);
    const id = 'joe@pve!ci';
    const { secret: old } = (await b.request('generate', { id })) as { secret: string };
    await a.request('hold');
    const pending = a.verify(id, old); // hashes the old hash, then waits in the hook
    assert.deepEqual(await a.nextEvent(), { event: 'held' });
    const { secret: fresh } = (await b.request('generate', { id })) as { secret: string };
    await a.request('release');
    // The rotation returned before A's verify finished: A must not accept the old secret.
    assert.equal(await pending, false);
    assert.equal(await a.verify(id, old), false);
    assert.equal(await a.verify(id, fresh), true);
    const stats = await a.stats();
    assert.equal(stats.shadow.entries, 1);
    await a.stop();
    await b.stop();
  });

  it('a hand edit is refused after the TTL in another process too', async () => {
    const p = paths();
    const a = await ShadowClient.start(p.shadow, p.page);
    const b = await ShadowClient.start(p.shadow, p.page);
    const { secret } = (await a.request('generate', { id: 'x@pve!t' })) as { secret: string };
    assert.equal(await b.verify('x@pve!t', secret), true);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(p.shadow, '{}\n');
    await b.request('advance', { ms: 1001 });
    assert.equal(await b.verify('x@pve!t', secret), false);
    // B bumped the generation, so A revalidates at once, without waiting for its TTL.
    assert.equal(await a.verify('x@pve!t', secret), false);
    assert.equal((await a.stats()).shadow.invalidationsByGeneration, 1);
    await a.stop();
    await b.stop();
  });

  it('with 1,000 tokens cached in A, rotating one in B costs A one hash verify', async () => {
    const p = paths();
    const pool = new HashPool({ threads: 2, argon2: FAST_ARGON2 });
    const secrets = new Map<string, string>();
    const hashes: string[] = [];
    for (let i = 0; i < 1000; i += 10) {
      const batch = Array.from({ length: 10 }, (_, j) => pool.hash(`secret-${i + j}`));
      hashes.push(...(await Promise.all(batch)));
    }
    const entries: Record<string, string> = {};
    hashes.forEach((hash, i) => {
      entries[`u${i}@pve!t`] = hash;
      secrets.set(`u${i}@pve!t`, `secret-${i}`);
    });
    const { writeFileSync } = await import('node:fs');
    writeFileSync(p.shadow, JSON.stringify(entries));
    await pool.close();
    const a = await ShadowClient.start(p.shadow, p.page);
    const b = await ShadowClient.start(p.shadow, p.page);
    for (const [id, secret] of secrets) assert.equal(await a.verify(id, secret), true);
    const before = (await a.stats()).pool.verifies;
    const { secret: rotated } = (await b.request('generate', { id: 'u7@pve!t' })) as {
      secret: string;
    };
    for (const [id, secret] of secrets) {
      assert.equal(await a.verify(id, id === 'u7@pve!t' ? rotated : secret), true);
    }
    const after = await a.stats();
    assert.equal(after.pool.verifies - before, 1, 'only the rotated token was hashed again');
    assert.equal(after.shadow.invalidationsByGeneration, 1);
    await a.stop();
    await b.stop();
  });

  it('4 processes creating and deleting tokens at once lose no acknowledged change', async () => {
    const p = paths();
    const clients = await Promise.all(
      Array.from({ length: 4 }, () => ShadowClient.start(p.shadow, p.page)),
    );
    const expected = new Map<string, string>();
    await Promise.all(
      clients.map(async (client, c) => {
        for (let i = 0; i < 12; i++) {
          const id = `w${c}@pve!t${i}`;
          const { secret } = (await client.request('generate', { id })) as { secret: string };
          expected.set(id, secret);
          if (i % 3 === 2) {
            const gone = `w${c}@pve!t${i - 1}`;
            assert.equal((await client.request('delete', { id: gone })).existed, true);
            expected.delete(gone);
          }
        }
      }),
    );
    const onDisk = parseShadow(p.shadow, readFileSync(p.shadow, 'utf8'));
    assert.deepEqual([...onDisk.keys()].sort(), [...expected.keys()].sort());
    const checker = clients[0] as ShadowClient;
    for (const [id, secret] of expected) assert.equal(await checker.verify(id, secret), true, id);
    await Promise.all(clients.map((c) => c.stop()));
  });

  it('a writer killed with SIGKILL mid-loop keeps every acknowledged secret; its lock is recovered', async () => {
    const p = paths();
    const writer = await ShadowClient.start(p.shadow, p.page);
    const acknowledged = new Map<string, string>();
    const loop = (async () => {
      for (let i = 0; ; i++) {
        const id = `k@pve!t${i}`;
        const reply = await writer.request('generate', { id });
        if (typeof reply.secret !== 'string') return;
        acknowledged.set(id, reply.secret);
        if (acknowledged.size === 25) {
          // Kill while the next mutation is under way (hashing, locking or writing).
          void writer.request('generate', { id: 'k@pve!inflight' });
          setImmediate(() => writer.child.process.kill('SIGKILL'));
        }
      }
    })();
    const exited = new Promise((resolve) => writer.child.process.once('exit', resolve));
    await exited;
    void loop;
    const onDisk = parseShadow(p.shadow, readFileSync(p.shadow, 'utf8'));
    for (const id of acknowledged.keys()) assert.ok(onDisk.has(id), `${id} acknowledged but lost`);
    const next = await ShadowClient.start(p.shadow, p.page);
    for (const [id, secret] of acknowledged) assert.equal(await next.verify(id, secret), true, id);
    const reply = await next.request('generate', { id: 'after@pve!kill' });
    assert.equal(typeof reply.secret, 'string', JSON.stringify(reply));
    await next.stop();
  });

  it('a lock abandoned by a dead holder is taken over after its stale time', async () => {
    const p = paths();
    const { mkdirSync, utimesSync, existsSync } = await import('node:fs');
    mkdirSync(`${p.shadow}.lock`);
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${p.shadow}.lock`, old, old);
    const client = await ShadowClient.start(p.shadow, p.page);
    const reply = await client.request('generate', { id: 'stale@pve!lock' });
    assert.equal(typeof reply.secret, 'string', JSON.stringify(reply));
    assert.equal(existsSync(`${p.shadow}.lock`), false, 'released after the mutation');
    await client.stop();
  });
});
