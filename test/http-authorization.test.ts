import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  AuthenticationError,
  type AuthorizationOptions,
  parseAuthorizationHeader,
  type TokenCredentials,
} from '../src/index.js';

const SECRET = 'c2d5e5a0-1f1c-4b7e-9d2e-0123456789ab';

function expectFailure(
  value: string | string[] | undefined,
  reason: string,
  options?: AuthorizationOptions,
): void {
  assert.throws(
    () => parseAuthorizationHeader(value, options),
    (error: unknown) => {
      assert.ok(error instanceof AuthenticationError, String(error));
      assert.equal(error.code, 'ERR_AUTHENTICATION');
      assert.equal(error.reason, reason);
      assert.equal(error.message, 'authentication failed');
      return true;
    },
  );
}

describe('http: Authorization header', () => {
  const valid: Array<[string, TokenCredentials]> = [
    [
      `PVEAPIToken=joe@pve!ci=${SECRET}`,
      { scheme: 'PVEAPIToken', tokenid: 'joe@pve!ci', secret: SECRET },
    ],
    [
      `PVEAPIToken joe@pve!ci=${SECRET}`,
      { scheme: 'PVEAPIToken', tokenid: 'joe@pve!ci', secret: SECRET },
    ],
    [
      'PVEAPIToken=a=b@pve!t=s3cr%41t',
      { scheme: 'PVEAPIToken', tokenid: 'a=b@pve!t', secret: 's3cr%41t' },
    ],
    [
      `PBSAPIToken root@pam!backup:${SECRET}`,
      { scheme: 'PBSAPIToken', tokenid: 'root@pam!backup', secret: SECRET },
    ],
    [
      `PBSAPIToken=root@pam!backup:${SECRET}`,
      { scheme: 'PBSAPIToken', tokenid: 'root@pam!backup', secret: SECRET },
    ],
    [
      'PDMAPIToken ann@pam!ro:a%3Ab%25c%20d',
      { scheme: 'PDMAPIToken', tokenid: 'ann@pam!ro', secret: 'a:b%c d' },
    ],
    [
      'PDMAPIToken ann@pam!ro:x:y=z',
      { scheme: 'PDMAPIToken', tokenid: 'ann@pam!ro', secret: 'x:y=z' },
    ],
    [
      'PBSAPIToken ann@pam!ro:%C3%A9t%C3%A9',
      { scheme: 'PBSAPIToken', tokenid: 'ann@pam!ro', secret: 'été' },
    ],
  ];
  for (const [header, expected] of valid) {
    it(`accepts ${header}`, () => {
      assert.deepEqual(parseAuthorizationHeader(header), expected);
      assert.deepEqual(parseAuthorizationHeader([header]), expected);
    });
  }

  const invalid: Array<[string | string[] | undefined, string, AuthorizationOptions?]> = [
    [undefined, 'missing-header'],
    ['', 'missing-header'],
    [[], 'missing-header'],
    [[`PBSAPIToken a@pve!t:${SECRET}`, `PBSAPIToken b@pve!t:${SECRET}`], 'malformed-header'],
    [`Bearer ${SECRET}`, 'unknown-scheme'],
    [`pveapitoken=joe@pve!ci=${SECRET}`, 'unknown-scheme'],
    [`PBSAPITOKEN joe@pve!ci:${SECRET}`, 'unknown-scheme'],
    [`PVEAPITokenjoe@pve!ci=${SECRET}`, 'unknown-scheme'],
    [`PVEAPIToken:joe@pve!ci=${SECRET}`, 'unknown-scheme'],
    [`PVEAPIToken`, 'unknown-scheme'],
    [`PVEAPIToken=`, 'malformed-header'],
    [`PVEAPIToken=joe@pve!ci`, 'malformed-header'],
    [`PVEAPIToken=joe@pve!ci=`, 'malformed-header'],
    [`PVEAPIToken==${SECRET}`, 'malformed-header'],
    [`PVEAPIToken=joe@pve!ci:${SECRET}`, 'malformed-header'],
    [`PVEAPIToken  joe@pve!ci=${SECRET}`, 'malformed-header'],
    [`PVEAPIToken=joe@pve!ci=${SECRET} extra`, 'malformed-header'],
    [`PBSAPIToken joe@pve!ci`, 'malformed-header'],
    [`PBSAPIToken joe@pve!ci:`, 'malformed-header'],
    [`PBSAPIToken :${SECRET}`, 'malformed-header'],
    [`PBSAPIToken joe@pve!ci:%zz`, 'malformed-header'],
    [`PBSAPIToken joe@pve!ci:abc%4`, 'malformed-header'],
    [`PBSAPIToken joe@pve!ci:%FF%FE`, 'malformed-header'],
    [`PBSAPIToken joe@pve!ci:s\u00e9cret`, 'malformed-header'],
    [`PBSAPIToken joe@pve!ci:a\tb`, 'malformed-header'],
    [`PBSAPIToken joe@pve:${SECRET}`, 'invalid-id'],
    [`PBSAPIToken joe!ci:${SECRET}`, 'invalid-id'],
    [`PBSAPIToken joe@pve!c%20i:${SECRET}`, 'invalid-id'],
    [`PVEAPIToken=joe@pve!-x=${SECRET}`, 'invalid-id'],
    [`PDMAPIToken joe@pve!ci:${SECRET}`, 'disabled-scheme', { schemes: ['PVEAPIToken'] }],
    [`PVEAPIToken=joe@pve!ci=${SECRET}`, 'disabled-scheme', { schemes: [] }],
    [`PBSAPIToken joe@pve!ci:${'s'.repeat(513)}`, 'too-long'],
    [`PBSAPIToken joe@pve!ci:${'%C3%A9'.repeat(257)}`, 'too-long'],
    [`PBSAPIToken joe@pve!ci:${'s'.repeat(5000)}`, 'too-long'],
    [`PBSAPIToken joe@pve!ci:${SECRET}`, 'too-long', { maxHeaderLength: 20 }],
    [`PBSAPIToken joe@pve!ci:${SECRET}`, 'too-long', { maxSecretBytes: 8 }],
  ];
  for (const [value, reason, options] of invalid) {
    const label = JSON.stringify(value)?.slice(0, 70) ?? 'undefined';
    it(`rejects ${label} (${reason})`, () => expectFailure(value, reason, options));
  }

  it('accepts a secret at the length limit, and a header at its limit', () => {
    const secret = 's'.repeat(512);
    assert.equal(parseAuthorizationHeader(`PBSAPIToken a@pve!t:${secret}`).secret, secret);
    const header = `PVEAPIToken=a@pve!t=${'x'.repeat(4096 - 20)}`;
    assert.equal(header.length, 4096);
    assert.equal(
      parseAuthorizationHeader(header, { maxSecretBytes: 5000 }).secret.length,
      4096 - 20,
    );
    expectFailure(`${header}x`, 'too-long', { maxSecretBytes: 5000 });
  });

  it('never puts the secret in the error', () => {
    const secret = 'TOP-SECRET-VALUE';
    for (const header of [
      `PBSAPIToken bad:${secret}`,
      `PBSAPIToken a@pve!t:${secret}%`,
      `PVEAPIToken=${secret}`,
    ]) {
      try {
        parseAuthorizationHeader(header);
        assert.fail('should throw');
      } catch (error) {
        assert.ok(error instanceof AuthenticationError);
        assert.ok(!String(error.message).includes(secret));
        assert.ok(!JSON.stringify(error).includes(secret));
        assert.equal(error.cause, undefined);
      }
    }
  });

  it('fuzz: only AuthenticationError, and valid results are consistent (10,000 runs)', () => {
    const scheme = fc.constantFrom('PVEAPIToken', 'PBSAPIToken', 'PDMAPIToken', 'pveapitoken', 'X');
    const separator = fc.constantFrom('=', ' ', ':', '');
    const body = fc.oneof(
      fc.string({ maxLength: 80, unit: 'binary' }),
      fc
        .tuple(
          fc.constantFrom('joe@pve!ci', 'a@b', 'root@pam!x', 'x', ''),
          fc.constantFrom('=', ':'),
          fc.string({ maxLength: 30 }),
        )
        .map(([id, split, secret]) => `${id}${split}${secret}`),
    );
    fc.assert(
      fc.property(scheme, separator, body, (name, sep, rest) => {
        const header = `${name}${sep}${rest}`;
        let result: TokenCredentials;
        try {
          result = parseAuthorizationHeader(header);
        } catch (error) {
          assert.ok(error instanceof AuthenticationError, String(error));
          return;
        }
        assert.ok(header.startsWith(result.scheme));
        assert.ok(result.tokenid.includes('!'));
        assert.ok(result.secret.length > 0);
        if (result.scheme === 'PVEAPIToken') {
          assert.equal(
            header.slice(result.scheme.length + 1),
            `${result.tokenid}=${result.secret}`,
          );
        } else {
          const encoded = header.slice(result.scheme.length + 1 + result.tokenid.length + 1);
          assert.equal(decodeURIComponent(encoded), result.secret);
        }
      }),
      { numRuns: 10_000 },
    );
  });
});
