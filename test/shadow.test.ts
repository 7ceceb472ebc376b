import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { makeLegacyHash } from '../src/hashing/legacy.js';
import { BusyError, InvalidIdError, ShadowFileError, Slot } from '../src/index.js';
import { SECRET_PATTERN } from '../src/secret-format.js';
import { setup } from './helpers/shadow.js';

const ID = 'joe@pve!ci';

describe('TokenShadow in one process', () => {
  it('generates a UUID secret, verifies it from the cache, refuses others', async () => {
    const s = setup();
    const shadow = s.make();
    const secret = await shadow.generateAndSetSecret(ID);
    assert.match(secret, SECRET_PATTERN);
    const file = readFileSync(s.shadowPath, 'utf8');
    assert.ok(!file.includes(secret), 'no plaintext on disk');
    assert.match(JSON.parse(file)[ID], /^\$argon2id\$/);
    const before = s.pool.stats().verifies;
    assert.equal(shadow.verifyCached(ID, secret), true);
    assert.equal(await shadow.verifySecret(ID, secret), true);
    assert.equal(s.pool.stats().verifies, before, 'answered from the cache');
    assert.equal(await shadow.verifySecret(ID, 'wrong'), false);
    assert.equal(await shadow.verifySecret('nobody@pve!x', secret), false);
    const stats = shadow.stats();
    assert.equal(stats.hits, 2);
    assert.equal(stats.dummyVerifies, 1, 'unknown id still costs one verify');
  });

  it('a fresh process verifies once through the pool, then caches', async () => {
    const s = setup();
    const secret = await s.make().generateAndSetSecret(ID);
    const other = s.make();
    assert.equal(other.verifyCached(ID, secret), undefined);
    const before = s.pool.stats().verifies;
    assert.equal(await other.verifySecret(ID, secret), true);
    assert.equal(s.pool.stats().verifies, before + 1);
    assert.equal(other.verifyCached(ID, secret), true);
  });

  it('200 concurrent verifies of one uncached secret run one hash verify', async () => {
    const s = setup();
    const secret = await s.make().generateAndSetSecret(ID);
    const shadow = s.make();
    await shadow.verifySecret('warm@pve!up', 'x'); // first sync of the file
    const before = s.pool.stats().verifies;
    const results = await Promise.all(
      Array.from({ length: 200 }, () => shadow.verifySecret(ID, secret)),
    );
    assert.ok(results.every((r) => r === true));
    assert.equal(s.pool.stats().verifies - before, 1);
    assert.equal(shadow.stats().coalescedWaits, 199);
  });

  it('a flood that fills the queue gets Busy at once; a cached token keeps verifying', async () => {
    const s = setup({ threads: 1, maxQueue: 2 });
    const shadow = s.make();
    const secret = await shadow.generateAndSetSecret(ID);
    const flood = Array.from({ length: 40 }, (_, i) =>
      shadow.verifySecret(ID, `wrong-${i}`).then(
        (ok) => (ok ? 'accepted' : 'refused'),
        (error) => (error instanceof BusyError ? 'busy' : `error ${error}`),
      ),
    );
    // While the flood is queued, the cached secret is answered without the pool.
    assert.equal(shadow.verifyCached(ID, secret), true);
    assert.equal(await shadow.verifySecret(ID, secret), true);
    const outcomes = await Promise.all(flood);
    const busy = outcomes.filter((o) => o === 'busy').length;
    const refused = outcomes.filter((o) => o === 'refused').length;
    // At most threads + maxQueue = 3 run at once; a slot freed early may admit a few more.
    assert.equal(busy + refused, 40, outcomes.join(','));
    assert.ok(busy >= 30, `busy ${busy}`);
    assert.equal(shadow.stats().busyRejections, busy);
  });

  it('verifies $5$, $6$ and $y$ hashes made by the system crypt', async () => {
    const s = setup();
    const entries: Record<string, string> = {};
    for (const kind of ['sha256-crypt', 'sha512-crypt', 'yescrypt'] as const) {
      entries[`legacy@pam!${kind}`] = makeLegacyHash(`secret-${kind}`, kind);
    }
    assert.match(entries['legacy@pam!sha256-crypt'] as string, /^\$5\$/);
    assert.match(entries['legacy@pam!sha512-crypt'] as string, /^\$6\$/);
    assert.match(entries['legacy@pam!yescrypt'] as string, /^\$y\$/);
    writeFileSync(s.shadowPath, JSON.stringify(entries));
    const shadow = s.make();
    for (const kind of ['sha256-crypt', 'sha512-crypt', 'yescrypt']) {
      assert.equal(await shadow.verifySecret(`legacy@pam!${kind}`, `secret-${kind}`), true, kind);
      assert.equal(await shadow.verifySecret(`legacy@pam!${kind}`, 'wrong'), false, kind);
    }
  });

  it('upgrades a legacy hash to argon2id after it verified, when asked', async () => {
    const s = setup();
    const legacy = makeLegacyHash('old-secret', 'sha512-crypt');
    writeFileSync(s.shadowPath, JSON.stringify({ [ID]: legacy }));
    const shadow = s.make({ upgradeLegacyHashes: true });
    assert.equal(await shadow.verifySecret(ID, 'old-secret'), true);
    await shadow.idle();
    const stored = JSON.parse(readFileSync(s.shadowPath, 'utf8'))[ID];
    assert.match(stored, /^\$argon2id\$/);
    assert.equal(await s.make().verifySecret(ID, 'old-secret'), true);
  });

  it('a corrupt file is a clear error on verify and is never overwritten', async () => {
    for (const [content, problem] of [
      ['{"joe@pve!ci": "$argon2id$v=19$abc', 'bad-json'],
      ['["a"]', 'bad-shape'],
      ['{"joe@pve!ci": 42}', 'bad-shape'],
      ['null', 'bad-shape'],
    ] as const) {
      const s = setup();
      writeFileSync(s.shadowPath, content);
      const shadow = s.make();
      await assert.rejects(shadow.verifySecret(ID, 'x'), (error: unknown) => {
        assert.ok(error instanceof ShadowFileError);
        assert.equal(error.problem, problem);
        assert.ok(!error.message.includes('argon2'), 'no content in the message');
        return true;
      });
      await assert.rejects(shadow.generateAndSetSecret('new@pve!t'), ShadowFileError);
      await assert.rejects(shadow.deleteSecret(ID), ShadowFileError);
      assert.equal(readFileSync(s.shadowPath, 'utf8'), content);
    }
  });

  it('bad ids are refused before any write', async () => {
    const s = setup();
    const shadow = s.make();
    await assert.rejects(shadow.generateAndSetSecret('no-realm'), InvalidIdError);
    await assert.rejects(shadow.generateAndSetSecret('root@pam'), InvalidIdError);
    assert.equal(await shadow.verifySecret('garbage', 'x'), false);
  });

  it('a hand edit is refused after the TTL: removed entry, equal-length hash', async () => {
    const s = setup();
    const shadow = s.make();
    const a = await shadow.generateAndSetSecret('a@pve!t');
    const b = await shadow.generateAndSetSecret('b@pve!t');
    const other = await s.make().generateAndSetSecret('c@pve!t'); // a hash of another secret
    assert.equal(await shadow.verifySecret('a@pve!t', a), true);
    assert.equal(await shadow.verifySecret('b@pve!t', b), true);
    const entries = JSON.parse(readFileSync(s.shadowPath, 'utf8'));
    delete entries['a@pve!t'];
    assert.equal(entries['c@pve!t'].length, entries['b@pve!t'].length);
    entries['b@pve!t'] = entries['c@pve!t'];
    const generation = s.page.load(Slot.TOKEN_SHADOW);
    writeFileSync(s.shadowPath, JSON.stringify(entries)); // in place, no lock, no bump
    s.now.ms += 1001;
    assert.equal(await shadow.verifySecret('a@pve!t', a), false);
    assert.equal(await shadow.verifySecret('b@pve!t', b), false);
    assert.equal(await shadow.verifySecret('b@pve!t', other), true);
    assert.equal(s.page.load(Slot.TOKEN_SHADOW), generation + 1, 'bumped for other processes');
    assert.ok(shadow.stats().invalidationsByFileChange >= 2);
  });

  it('without a generation page nothing is cached, every verify hashes', async () => {
    const s = setup();
    const shadow = s.make({ page: null });
    const secret = await shadow.generateAndSetSecret(ID);
    const before = s.pool.stats().verifies;
    assert.equal(shadow.verifyCached(ID, secret), undefined);
    assert.equal(await shadow.verifySecret(ID, secret), true);
    assert.equal(await shadow.verifySecret(ID, secret), true);
    assert.equal(s.pool.stats().verifies - before, 2);
    assert.equal(shadow.stats().entries, 0);
    await shadow.deleteSecret(ID);
    assert.equal(await shadow.verifySecret(ID, secret), false);
  });

  it('the cache is bounded: the least recently hit entry goes first', async () => {
    const s = setup();
    const writer = s.make();
    const secrets = new Map<string, string>();
    for (let i = 0; i < 5; i++) {
      const id = `u@pve!t${i}`;
      secrets.set(id, await writer.generateAndSetSecret(id));
    }
    const shadow = s.make({ maxEntries: 3 });
    for (const id of ['u@pve!t0', 'u@pve!t1', 'u@pve!t2']) {
      assert.equal(await shadow.verifySecret(id, secrets.get(id) as string), true);
    }
    assert.equal(shadow.verifyCached('u@pve!t0', secrets.get('u@pve!t0') as string), true);
    await shadow.verifySecret('u@pve!t3', secrets.get('u@pve!t3') as string);
    assert.equal(shadow.stats().entries, 3);
    assert.equal(shadow.stats().evictions, 1);
    assert.equal(shadow.verifyCached('u@pve!t0', secrets.get('u@pve!t0') as string), true);
    assert.equal(shadow.verifyCached('u@pve!t1', secrets.get('u@pve!t1') as string), undefined);
  });
});
