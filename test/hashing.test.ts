import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashCostProblem } from '../src/hashing/cost.js';
import { makeLegacyHash } from '../src/hashing/legacy.js';
import { hashKind } from '../src/hashing/params.js';
import { BusyError, HashPool } from '../src/index.js';
import { FAST_ARGON2 } from './helpers/shadow.js';

describe('HashPool', () => {
  it('hashes with argon2id and verifies argon2 and crypt hashes', async () => {
    const pool = new HashPool({ threads: 1, argon2: FAST_ARGON2 });
    try {
      const hash = await pool.hash('s3cret');
      assert.equal(hashKind(hash), 'argon2');
      assert.match(hash, /^\$argon2id\$v=19\$m=512,p=1,t=1\$/);
      assert.equal(await pool.verify(hash, 's3cret'), true);
      assert.equal(await pool.verify(hash, 'other'), false);
      assert.equal(await pool.verify('$argon2id$garbage', 's3cret'), false);
      assert.equal(
        await pool.verify('plaintext?', 's3cret'),
        false,
        'unknown formats verify nothing',
      );
      const legacy = makeLegacyHash('s3cret', 'yescrypt');
      assert.equal(await pool.verify(legacy, 's3cret'), true);
      assert.deepEqual(
        {
          hashes: pool.stats().hashes,
          verifies: pool.stats().verifies,
          refusedCostly: pool.stats().refusedCostly,
        },
        { hashes: 1, verifies: 4, refusedCostly: 1 },
      );
    } finally {
      await pool.close();
    }
  });

  it('an AbortSignal cancels a queued task; the running one completes', async () => {
    const pool = new HashPool({ threads: 1, maxQueue: 4 });
    try {
      const running = pool.hash('first'); // default parameters: tens of ms
      const controller = new AbortController();
      const queued = pool.verify(
        '$argon2id$v=19$m=512,t=1,p=1$c2FsdHNhbHQ$aGFzaA',
        'x',
        controller.signal,
      );
      controller.abort();
      await assert.rejects(queued, (e: Error) => e.name === 'AbortError');
      assert.match(await running, /^\$argon2id\$/);
    } finally {
      await pool.close();
    }
  });

  it('refuses work at once when full, and after close', async () => {
    const pool = new HashPool({ threads: 1, maxQueue: 1 });
    const first = pool.hash('a');
    const second = pool.hash('b');
    await assert.rejects(pool.hash('c'), BusyError);
    assert.equal(pool.stats().busyRejections, 1);
    await Promise.all([first, second]);
    await pool.close();
    await assert.rejects(pool.verify('$5$x', 'y'), BusyError);
  });

  it('warns when the pool has more threads than libuv', async () => {
    const warnings: string[] = [];
    const listener = (w: Error & { code?: string }) => {
      if (w.code === 'TOKEN_SHADOW_UV_THREADPOOL') warnings.push(w.message);
    };
    process.on('warning', listener);
    const previous = process.env.UV_THREADPOOL_SIZE;
    process.env.UV_THREADPOOL_SIZE = '2';
    const pool = new HashPool({ threads: 3, argon2: FAST_ARGON2 });
    await new Promise((resolve) => setImmediate(resolve));
    process.off('warning', listener);
    if (previous === undefined) delete process.env.UV_THREADPOOL_SIZE;
    else process.env.UV_THREADPOOL_SIZE = previous;
    await pool.close();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /3 threads but UV_THREADPOOL_SIZE is 2/);
  });
});

describe('hash cost limits', () => {
  it('refuses, at once and without hashing, stored hashes that would cost too much', async () => {
    const pool = new HashPool({ threads: 1, argon2: FAST_ARGON2 });
    try {
      const costly = [
        '$y$/Hk/$abcdefghijklmnop$',
        '$y$jTT$abcdefghijklmnop$abcdefghijklmnopqrstuvwxyz0123456789ABC',
        '$5$rounds=2000000$saltsalt$abcdefghijklmnopqrstuvwxyz0123456789ABCDE',
        '$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo',
        '$argon2id$v=19$m=512,t=100,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo',
      ];
      for (const hash of costly) {
        assert.notEqual(hashCostProblem(hash), null, hash);
        assert.equal(await pool.verify(hash, 'x'), false);
      }
      assert.equal(pool.stats().refusedCostly, costly.length);
      assert.equal(pool.stats().verifies, 0, 'nothing reached a thread');
      for (const kind of ['sha256-crypt', 'sha512-crypt', 'yescrypt'] as const) {
        assert.equal(hashCostProblem(makeLegacyHash('x', kind)), null, `${kind} defaults pass`);
      }
      assert.equal(hashCostProblem(await pool.hash('x')), null);
    } finally {
      await pool.close();
    }
  });
});
