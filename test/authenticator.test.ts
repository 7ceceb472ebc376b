/**
 * The Authenticator's fast path for tokens it accepted before: answered from
 * the header's two slices, the verified-secret cache and what it remembered
 * under the current config. Each test checks that the shortcut decides as the
 * full path does: a config change, an expiry, a disabled scheme, a malformed
 * header or another secret for a remembered id all end where they would
 * without it.
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { userConfigStoreForTests } from '../src/access/user-info.js';
import { authenticateTimed, CacheMiss } from '../src/http/authenticate.js';
import {
  AuthenticationError,
  Authenticator,
  addToken,
  addUser,
  updateToken,
  updateUser,
} from '../src/index.js';
import { setup } from './helpers/shadow.js';

async function fixture(options: { expire?: number } = {}) {
  const s = setup();
  const users = userConfigStoreForTests({
    path: path.join(s.dir, 'user.cfg'),
    page: s.page,
    clock: () => s.now.ms,
    ttlMs: 1000,
  });
  await users.mutate((config) => {
    addUser(config, 'alice@pve');
    addToken(config, 'alice@pve!ci', {
      privsep: false,
      ...(options.expire ? { expire: options.expire } : {}),
    });
  });
  const shadow = s.make();
  const secret = await shadow.generateAndSetSecret('alice@pve!ci');
  const clock = { seconds: 1_000 };
  const make = (extra: { schemes?: Array<'PVEAPIToken' | 'PBSAPIToken'> } = {}) =>
    new Authenticator({ users, shadow, now: () => clock.seconds, ...extra });
  /** An Authenticator on a TokenShadow of its own, whose cache has not seen the secret yet. */
  const cold = () => {
    const own = s.make();
    return {
      auth: new Authenticator({ users, shadow: own, now: () => clock.seconds }),
      shadow: own,
    };
  };
  return {
    users,
    shadow,
    secret,
    clock,
    make,
    cold,
    header: `PVEAPIToken=alice@pve!ci=${secret}`,
  };
}

function refused(reason: string) {
  return (error: unknown) => error instanceof AuthenticationError && error.reason === reason;
}

describe('Authenticator: the fast path for a token accepted before', () => {
  it('answers the same frozen identity from the cache, in both header forms', async () => {
    const f = await fixture();
    const auth = f.make();
    const first = await auth.authenticate(f.header);
    assert.deepEqual(first, { authid: 'alice@pve!ci', userid: 'alice@pve', tokenName: 'ci' });
    assert.ok(Object.isFrozen(first));
    assert.equal(auth.authenticateCached(f.header), first);
    assert.equal(auth.authenticateCached(`PVEAPIToken alice@pve!ci=${f.secret}`), first);
    assert.equal(await auth.authenticate(f.header), first);
  });

  it('another secret for a remembered id is decided by the full path', async () => {
    const f = await fixture();
    const auth = f.make();
    await auth.authenticate(f.header);
    assert.equal(auth.authenticateCached('PVEAPIToken=alice@pve!ci=not-the-secret'), undefined);
    await assert.rejects(
      auth.authenticate('PVEAPIToken=alice@pve!ci=not-the-secret'),
      refused('bad-secret'),
    );
    // A malformed header around the right id and secret is still malformed.
    assert.throws(
      () => auth.authenticateCached(`PVEAPIToken=alice@pve!ci=${f.secret}\u0001`),
      refused('malformed-header'),
    );
  });

  it('a config change (the token disabled) is seen at once, never answered from memory', async () => {
    const f = await fixture();
    const auth = f.make();
    await auth.authenticate(f.header);
    await f.users.mutate((config) => updateToken(config, 'alice@pve!ci', { enable: false }));
    // A new config object: what was remembered under the old one is not used.
    assert.throws(() => auth.authenticateCached(f.header), refused('inactive'));
    await assert.rejects(auth.authenticate(f.header), refused('inactive'));
    await f.users.mutate((config) => updateToken(config, 'alice@pve!ci', { enable: true }));
    assert.equal((await auth.authenticate(f.header)).authid, 'alice@pve!ci');
  });

  it('an expiry is checked on every request, at the second it falls', async () => {
    const f = await fixture({ expire: 2_000 });
    const auth = f.make();
    await auth.authenticate(f.header);
    f.clock.seconds = 1_999;
    assert.ok(auth.authenticateCached(f.header));
    f.clock.seconds = 2_000; // expiry is inclusive
    assert.throws(() => auth.authenticateCached(f.header), refused('inactive'));
    await assert.rejects(auth.authenticate(f.header), refused('inactive'));
  });

  it("the user's expiry counts as well as the token's", async () => {
    const f = await fixture();
    await f.users.mutate((config) => updateUser(config, 'alice@pve', { expire: 1_500 }));
    const auth = f.make();
    await auth.authenticate(f.header);
    assert.ok(auth.authenticateCached(f.header));
    f.clock.seconds = 1_500;
    assert.throws(() => auth.authenticateCached(f.header), refused('inactive'));
  });

  it('a disabled PVEAPIToken scheme is refused even for a remembered token', async () => {
    const f = await fixture();
    await f.make().authenticate(f.header); // cached by another Authenticator
    const pbsOnly = f.make({ schemes: ['PBSAPIToken'] });
    assert.throws(() => pbsOnly.authenticateCached(f.header), refused('disabled-scheme'));
    assert.ok(pbsOnly.authenticateCached(`PBSAPIToken alice@pve!ci:${f.secret}`));
  });
});

describe('Authenticator: one driver, the cached attempt then the slow path from what it parsed', () => {
  /** Counts the cache look-ups the Authenticator (and verifySecret inside it) makes. */
  function countLookups(shadow: {
    verifyCached(tokenid: string, secret: string): true | undefined;
  }) {
    const real = shadow.verifyCached.bind(shadow);
    const counter = { calls: 0 };
    shadow.verifyCached = (tokenid, secret) => {
      counter.calls++;
      return real(tokenid, secret);
    };
    return counter;
  }

  it('a miss asks the cache once in the attempt, then only the slow verify does', async () => {
    const f = await fixture();
    const { auth, shadow } = f.cold();
    const lookups = countLookups(shadow);
    const miss = auth.attempt(f.header);
    assert.ok(miss instanceof CacheMiss, 'a secret never verified is not in the cache');
    assert.equal(miss.id.authid, 'alice@pve!ci');
    assert.equal(lookups.calls, 1);
    // The secret stays out of anything that could be logged.
    assert.ok(!JSON.stringify(miss).includes(f.secret));
    const identity = await auth.afterCacheMiss(miss);
    assert.equal(identity.authid, 'alice@pve!ci');
    // verifySecret's own first look, nothing more (authenticateCached then authenticate: 3).
    assert.equal(lookups.calls, 2);
    assert.equal(auth.attempt(f.header), identity);
    assert.equal(lookups.calls, 3);
  });

  it('another secret for a remembered id: the memo asked the cache, the parse does not ask again', async () => {
    const f = await fixture();
    const auth = f.make();
    await auth.authenticate(f.header);
    const lookups = countLookups(f.shadow);
    const miss = auth.attempt('PVEAPIToken=alice@pve!ci=not-the-secret');
    assert.ok(miss instanceof CacheMiss);
    assert.equal(lookups.calls, 1);
    await assert.rejects(auth.afterCacheMiss(miss), refused('bad-secret'));
  });

  it('authenticateTimed answers a cached token without a promise and times only the slow path', async () => {
    const f = await fixture();
    const { auth } = f.cold();
    const timed: Array<[number, string]> = [];
    const observe = (seconds: number, outcome: string) => timed.push([seconds, outcome]);
    const slow = authenticateTimed(auth, f.header, observe);
    assert.ok(slow instanceof Promise);
    const identity = await slow;
    assert.equal(timed.length, 1);
    assert.equal(timed[0]?.[1], 'ok');
    assert.ok((timed[0]?.[0] ?? -1) > 0);
    assert.equal(authenticateTimed(auth, f.header, observe), identity);
    assert.equal(timed.length, 1, 'the fast path is not timed');
    await assert.rejects(
      authenticateTimed(
        auth,
        'PVEAPIToken=alice@pve!ci=not-the-secret',
        observe,
      ) as Promise<unknown>,
      refused('bad-secret'),
    );
    assert.deepEqual(
      timed.map(([, outcome]) => outcome),
      ['ok', 'refused'],
    );
    assert.throws(() => authenticateTimed(auth, 'Bearer x', observe), refused('unknown-scheme'));
    assert.equal(timed.length, 2, 'a malformed header is refused before any slow path');
  });
});
