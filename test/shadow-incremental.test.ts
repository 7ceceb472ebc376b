import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ABSENT } from '../src/files/stamp.js';
import { BusyError, ShadowFileError } from '../src/index.js';
import {
  parseChanges,
  parseShadow,
  type ShadowSnapshot,
  serializeShadow,
} from '../src/shadow/file.js';
import { setup } from './helpers/shadow.js';

const ID = 'joe@pve!ci';

const id = fc.oneof(
  fc.stringMatching(/^[a-z]{1,6}@pve![a-z0-9]{1,4}$/),
  fc.string({ maxLength: 8 }), // anything: quotes, backslashes, control characters, "__proto__"
);
const hash = fc.oneof(
  fc.stringMatching(/^\$argon2id\$[A-Za-z0-9+/]{4,12}$/),
  fc.string({ minLength: 1, maxLength: 6 }),
);
// A snapshot is of a file the full parse accepted (so no key needing an escape).
const entries = fc
  .array(fc.tuple(id, hash), { maxLength: 12 })
  .map((list) => new Map(list))
  .filter((map) => full(Buffer.from(serializeShadow(map))) !== 'error');

function snapshotOf(map: Map<string, string>): ShadowSnapshot {
  return { entries: map, stamp: ABSENT, bytes: Buffer.from(serializeShadow(map)) };
}

/** What a full parse says, or the error it throws. */
function full(bytes: Buffer): Map<string, string> | 'error' {
  try {
    return parseShadow('token.shadow', bytes.toString('utf8'));
  } catch {
    return 'error';
  }
}

describe('token.shadow: parsing only what changed', () => {
  it('gives exactly the full parse after any set of writes, and names what changed', () => {
    const edit = fc.record({
      set: fc.array(fc.tuple(id, hash), { maxLength: 4 }),
      remove: fc.array(fc.nat(), { maxLength: 4 }),
    });
    fc.assert(
      fc.property(entries, edit, (before, { set, remove }) => {
        const after = new Map(before);
        const keys = [...before.keys()];
        for (const k of remove) if (keys.length > 0) after.delete(keys[k % keys.length] as string);
        for (const [k, v] of set) after.set(k, v);
        const bytes = Buffer.from(serializeShadow(after));
        const delta = parseChanges(snapshotOf(before), bytes);
        if (delta === null) return; // falling back to the full parse is always allowed
        assert.deepEqual([...delta.entries].sort(), [...parseShadow('x', bytes.toString())].sort());
        const changed = [...new Set([...before.keys(), ...after.keys()])].filter(
          (k) => before.get(k) !== after.get(k),
        );
        assert.deepEqual([...delta.changed].sort(), changed.sort());
      }),
      { numRuns: 2000 },
    );
  });

  it('never disagrees with the full parse after arbitrary byte edits (hand edits)', () => {
    const byteEdit = fc.record({
      at: fc.nat(),
      cut: fc.nat({ max: 12 }),
      insert: fc.oneof(
        fc.constantFrom(',', '\n', '"', ' "a": "b",\n', ' "a": "b"\n', '}', '{', '\\', ': '),
        fc.string({ maxLength: 6 }),
      ),
    });
    fc.assert(
      fc.property(entries, byteEdit, (before, { at, cut, insert }) => {
        const text = serializeShadow(before);
        const where = at % (text.length + 1);
        const edited = text.slice(0, where) + insert + text.slice(where + cut);
        const bytes = Buffer.from(edited);
        const delta = parseChanges(snapshotOf(before), bytes);
        if (delta === null) return;
        const expected = full(bytes);
        assert.notEqual(
          expected,
          'error',
          `accepted what JSON.parse refuses: ${JSON.stringify(edited)}`,
        );
        assert.deepEqual([...delta.entries].sort(), [...(expected as Map<string, string>)].sort());
      }),
      { numRuns: 5000 },
    );
  });

  it('refuses keys that need an escape, whichever way V8 reads them back (nodejs/node#63785)', () => {
    // Once a `\\` key has been parsed, Node 24's JSON.parse can read the key `\"` back as `\\`;
    // no token id needs an escape, so both files are refused and the incremental parse defers.
    const backslash = serializeShadow(new Map([['\\', '$argon2id$a']]));
    const quote = serializeShadow(
      new Map([
        ['"', '$argon2id$a'],
        ['" ', '$argon2id$b'],
      ]),
    );
    assert.throws(() => parseShadow('token.shadow', backslash), ShadowFileError);
    assert.throws(() => parseShadow('token.shadow', quote), ShadowFileError);
    const before = snapshotOf(new Map([[ID, '$argon2id$a']]));
    const after = new Map([
      [ID, '$argon2id$a'],
      ['"', '$argon2id$b'],
    ]);
    assert.equal(parseChanges(before, Buffer.from(serializeShadow(after))), null);
  });

  it('parses one changed line of 100,000 without parsing the rest', () => {
    const big = new Map<string, string>();
    for (let i = 0; i < 100_000; i++) big.set(`u${i}@pve!t`, `$argon2id$v=19$m=19456,t=2,p=1$${i}`);
    const before = snapshotOf(big);
    const after = new Map(big);
    after.set('u500@pve!t', '$argon2id$new');
    after.delete('u70000@pve!t');
    const delta = parseChanges(before, Buffer.from(serializeShadow(after)));
    assert.ok(delta !== null);
    assert.deepEqual([...delta.changed].sort(), ['u500@pve!t', 'u70000@pve!t']);
    assert.equal(delta.entries.size, 99_999);
    assert.equal(delta.entries.get('u500@pve!t'), '$argon2id$new');
  });
});

describe('TokenShadow: revalidation and misses at scale', () => {
  it('after another process rotates one token, drops exactly that entry', async () => {
    const s = setup();
    const writer = s.make();
    const secrets = new Map<string, string>();
    for (const name of ['a', 'b', 'c', 'd']) {
      secrets.set(`joe@pve!${name}`, await writer.generateAndSetSecret(`joe@pve!${name}`));
    }
    const reader = s.make();
    for (const [tokenid, secret] of secrets)
      assert.equal(await reader.verifySecret(tokenid, secret), true);
    await writer.generateAndSetSecret('joe@pve!b');
    assert.equal(await reader.verifySecret('joe@pve!a', secrets.get('joe@pve!a') as string), true);
    const stats = reader.stats();
    assert.equal(stats.invalidationsByGeneration, 1);
    assert.equal(stats.entries, 3);
    assert.equal(reader.verifyCached('joe@pve!c', secrets.get('joe@pve!c') as string), true);
    assert.equal(await reader.verifySecret('joe@pve!b', secrets.get('joe@pve!b') as string), false);
  });

  it('a full hashing queue refuses a miss with BusyError before the pool or the file is touched', async () => {
    const s = setup({ threads: 1, maxQueue: 1 });
    const shadow = s.make();
    const secret = await shadow.generateAndSetSecret(ID);
    // Two hashes in flight fill the pool (1 running + 1 queued); they cannot settle before the
    // verify below reaches the queue check, which happens within microtasks.
    const busy = [s.pool.hash('x'), s.pool.hash('y')];
    const poolRefusals = s.pool.stats().busyRejections;
    await assert.rejects(shadow.verifySecret(ID, 'wrong'), BusyError);
    await assert.rejects(shadow.verifySecret('nobody@pve!x', 'wrong'), BusyError);
    assert.equal(shadow.stats().busyRejections, 2);
    assert.equal(s.pool.stats().busyRejections, poolRefusals, 'refused before the pool');
    assert.equal(shadow.verifyCached(ID, secret), true, 'cached tokens are unaffected');
    await Promise.all(busy);
  });

  it('a miss right after a write uses the parse of the current generation, not a re-read', async () => {
    const s = setup();
    const shadow = s.make();
    const secret = await shadow.generateAndSetSecret(ID);
    // Garbled behind its back with no bump (within the racy window of the write): a miss that
    // re-read the file would throw ShadowFileError; the generation says nothing changed.
    writeFileSync(s.shadowPath, 'not json');
    assert.equal(await shadow.verifySecret(ID, 'wrong'), false);
    assert.equal(await shadow.verifySecret(ID, secret), true);
    // The TTL check still finds it.
    s.now.ms += 2000;
    await assert.rejects(shadow.verifySecret(ID, 'wrong'), ShadowFileError);
  });
});
