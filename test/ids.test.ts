import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  InvalidIdError,
  isAuthid,
  isTokenid,
  joinTokenid,
  parseAuthid,
  parseTokenid,
  parseUserid,
  splitTokenid,
} from '../src/index.js';

describe('ids', () => {
  const valid: Array<[string, string, string, string | null]> = [
    ['root@pam', 'root', 'pam', null],
    ['root@pam!ci', 'root', 'pam', 'ci'],
    ['joe@pve!_x.y-z', 'joe', 'pve', '_x.y-z'],
    ['a@b.c@ldap-1!tok', 'a@b.c', 'ldap-1', 'tok'],
    ['we!rd@pve!t', 'we!rd', 'pve', 't'],
    ['ab@cd', 'ab', 'cd', null],
  ];
  for (const [id, name, realm, token] of valid) {
    it(`parses ${id}`, () => {
      const parsed = parseAuthid(id);
      assert.equal(parsed.name, name);
      assert.equal(parsed.realm, realm);
      assert.equal(parsed.tokenName, token);
      assert.equal(parsed.authid, id);
      assert.equal(isTokenid(id), token !== null);
    });
  }

  const invalid: Array<[string, RegExp]> = [
    ['root', /missing "@REALM"/],
    ['a@', /length/],
    ['ro ot@pam', /user name/],
    ['ro:ot@pam', /user name/],
    ['a/b@pam', /user name/],
    ['a\u0001b@pam', /user name/],
    ['root@p', /realm/],
    ['root@1am', /realm/],
    ['root@pam!', /token name/],
    ['root@pam!-x', /token name/],
    ['root@pam!a!b', /more than one/],
    ['root@pam!t k', /token name/],
    [`${'x'.repeat(60)}@pam!tok`, /length/],
    [`root@${'r'.repeat(33)}`, /realm/],
  ];
  for (const [id, reason] of invalid) {
    it(`rejects ${JSON.stringify(id)}`, () => {
      assert.throws(
        () => parseAuthid(id),
        (e: unknown) => e instanceof InvalidIdError && reason.test(e.message),
      );
      assert.equal(isAuthid(id), false);
    });
  }

  it('distinguishes user ids from token ids', () => {
    assert.throws(() => parseUserid('root@pam!ci'), /is a token id/);
    assert.throws(() => parseTokenid('root@pam'), /missing "!TOKEN"/);
    assert.deepEqual(splitTokenid('root@pam!ci'), ['root@pam', 'ci']);
    assert.equal(joinTokenid('root@pam', 'ci'), 'root@pam!ci');
    assert.throws(() => joinTokenid('root@pam', 'c i'), InvalidIdError);
  });

  it('quotes offending values escaped and truncated', () => {
    const evil = `\u001b[31m${'A'.repeat(200)}@pam`;
    try {
      parseAuthid(evil);
      assert.fail('should throw');
    } catch (error) {
      const message = (error as Error).message;
      assert.ok(!message.includes('\u001b'), 'control character escaped');
      assert.ok(message.length < 200, 'truncated');
      assert.ok(message.includes('\\u001b'));
    }
  });

  it('never throws anything but InvalidIdError, and round-trips what it accepts', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80, unit: 'binary' }), (s) => {
        try {
          const id = parseAuthid(s);
          assert.equal(id.tokenName === null ? id.userid : `${id.userid}!${id.tokenName}`, s);
        } catch (error) {
          assert.ok(error instanceof InvalidIdError);
        }
      }),
      { numRuns: 10_000 },
    );
  });
});
