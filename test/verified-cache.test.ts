import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VerifiedSecretCache } from '../src/shadow/verified-cache.js';

describe('VerifiedSecretCache: slots, second chance, revalidation', () => {
  it('answers true, false or unknown, and never keeps the secret', () => {
    const cache = new VerifiedSecretCache(4);
    cache.set('a@pve!t', '$h1', 'secret-a');
    assert.equal(cache.matches('a@pve!t', 'secret-a'), true);
    assert.equal(cache.matches('a@pve!t', 'secret-b'), false);
    assert.equal(cache.matches('b@pve!t', 'secret-a'), undefined);
    cache.set('a@pve!t', '$h2', 'secret-b');
    assert.equal(cache.matches('a@pve!t', 'secret-a'), false, 'a new secret replaces the old');
    assert.equal(cache.size, 1);
  });

  it('evicts an entry not hit since the hand last passed, sparing the ones that were', () => {
    const cache = new VerifiedSecretCache(3);
    for (const id of ['a', 'b', 'c']) cache.set(id, `$${id}`, `s-${id}`);
    assert.equal(cache.matches('a', 's-a'), true); // a gets its second chance
    cache.set('d', '$d', 's-d');
    assert.equal(cache.evictions, 1);
    assert.deepEqual(
      ['a', 'b', 'c', 'd'].map((id) => cache.matches(id, `s-${id}`) !== undefined),
      [true, false, true, true],
    );
    // The hand moves on from where it stopped: c, never hit, is next.
    cache.set('e', '$e', 's-e');
    assert.equal(
      cache.matches('c', 's-c') !== undefined,
      false,
      'the hand moves on from where it stopped',
    );
    assert.equal(cache.matches('d', 's-d'), true);
    assert.equal(cache.matches('e', 's-e'), true);
    assert.equal(cache.size, 3);
  });

  it('revalidation drops exactly the entries whose hash moved, reusing their slots', () => {
    const cache = new VerifiedSecretCache(8);
    for (const id of ['a', 'b', 'c', 'd']) cache.set(id, `$${id}`, `s-${id}`);
    const current = new Map([
      ['a', '$a'],
      ['b', '$B'],
      ['d', '$d'],
    ]);
    assert.equal(cache.retainChanged(['b', 'x'], current), 1);
    assert.equal(cache.matches('b', 's-b') !== undefined, false);
    assert.equal(
      cache.matches('c', 's-c') !== undefined,
      true,
      'not listed as changed: left alone',
    );
    assert.equal(cache.retainMatching(current), 1, 'c is gone from the file');
    assert.deepEqual(
      ['a', 'b', 'c', 'd'].map((id) => cache.matches(id, `s-${id}`) !== undefined),
      [true, false, false, true],
    );
    for (const id of ['e', 'f', 'g', 'h', 'i', 'j']) cache.set(id, `$${id}`, `s-${id}`);
    assert.equal(cache.size, 8);
    assert.equal(cache.evictions, 0, 'freed slots were reused before evicting');
    assert.equal(cache.matches('j', 's-j'), true);
    assert.equal(cache.clear(), 8);
    assert.equal(cache.matches('a', 's-a'), undefined);
  });
});
