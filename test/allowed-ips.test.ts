/**
 * A token's allowed-ips (issue 27): canonical forms, matching for IPv4, IPv6
 * and IPv4-mapped peers, what counts as narrowing, and user.cfg's reading of
 * the field: written only where set, read back the same, and a line cut
 * inside it never grants more (the token is dropped).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  canonicalAllowedIps,
  MAX_ALLOWED_IPS,
  onlyNarrows,
  sourceRestrictionOf,
} from '../src/config/allowed-ips.js';
import { parseUserConfig } from '../src/config/parse.js';
import { createUserConfig } from '../src/config/types.js';
import { addToken, addUser, setGrace } from '../src/config/users.js';
import { writeUserConfig } from '../src/config/write.js';

describe('allowed-ips', () => {
  it('canonicalises: networks masked, IPv4-mapped as IPv4, duplicates and blanks dropped', () => {
    assert.equal(
      canonicalAllowedIps(' 10.1.2.3/8, ::ffff:192.0.2.7 ,,2001:DB8:0::5/32, 10.0.0.0/8'),
      '10.0.0.0/8,192.0.2.7,2001:db8::/32',
    );
    assert.equal(canonicalAllowedIps('127.0.0.1/32'), '127.0.0.1');
    assert.equal(canonicalAllowedIps(''), '');
    for (const bad of ['127.0.0.300', '10.0.0.0/33', 'example.org', '0x7f.1', '1.2.3', '::1/129']) {
      assert.throws(() => canonicalAllowedIps(bad), /allowed-ips/, bad);
    }
    const many = Array.from({ length: MAX_ALLOWED_IPS + 1 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
    assert.throws(() => canonicalAllowedIps(many.join(',')), /more than/);
  });

  it('matches IPv4, IPv6 and IPv4-mapped peers, and nothing else', () => {
    const list = sourceRestrictionOf('10.0.0.0/8,192.0.2.7,2001:db8::/32');
    assert.ok(list);
    for (const yes of [
      '10.255.1.1',
      '::ffff:10.0.0.1',
      '192.0.2.7',
      '2001:db8::1',
      '2001:db8:ffff::9',
    ]) {
      assert.equal(list.allows(yes), true, yes);
    }
    for (const no of [
      '11.0.0.1',
      '192.0.2.8',
      '2001:db9::1',
      '::1',
      '',
      undefined,
      'garbage',
      '10.0.0',
    ]) {
      assert.equal(list.allows(no), false, String(no));
    }
    assert.equal(sourceRestrictionOf(''), null, 'no list: anywhere, and no check');
  });

  it('narrowing: only addresses taken away', () => {
    assert.equal(onlyNarrows('', '10.0.0.0/8'), true);
    assert.equal(onlyNarrows('10.0.0.0/8', '10.1.0.0/16,10.2.3.4'), true);
    assert.equal(onlyNarrows('10.0.0.0/8', ''), false);
    assert.equal(onlyNarrows('10.0.0.0/8', '10.0.0.0/7'), false);
    assert.equal(onlyNarrows('10.0.0.0/8', '10.0.0.1,11.0.0.1'), false);
    assert.equal(onlyNarrows('2001:db8::/32', '2001:db8:1::/48'), true);
    assert.equal(onlyNarrows('10.0.0.0/8', '2001:db8::1'), false, 'another family');
    assert.equal(onlyNarrows('10.0.0.0/8', '::ffff:a00:1'), true, 'IPv4-mapped is IPv4');
  });

  it('user.cfg keeps it (and a grace) on the token line only where set, and reads it back', () => {
    const config = createUserConfig();
    addUser(config, 'joe@pve');
    addToken(config, 'joe@pve!plain', { privsep: false });
    addToken(config, 'joe@pve!fenced', { allowedIps: '2001:db8::/32, 10.0.0.0/8' });
    setGrace(config, 'joe@pve!fenced', 1_900_000_000);
    const text = writeUserConfig(config);
    assert.match(
      text,
      /^token:joe@pve!plain:1:0:0::$/m,
      'a plain token stays as Proxmox writes it',
    );
    assert.match(
      text,
      /^token:joe@pve!fenced:1:0:1::2001%3Adb8%3A%3A\/32,10\.0\.0\.0\/8:1900000000:$/m,
    );
    const back = parseUserConfig(text);
    assert.deepEqual(back.warnings, []);
    const token = back.config.users.get('joe@pve')?.tokens.get('fenced');
    assert.equal(token?.allowedIps, '2001:db8::/32,10.0.0.0/8');
    assert.equal(token?.graceUntil, 1_900_000_000);
  });

  it('a line cut inside the list drops the token; one cut in the grace keeps no grace', () => {
    const line = 'token:joe@pve!fenced:1:0:1::10.0.0.0/8,192.0.2.0/24:1900000000:';
    const head = 'user:joe@pve:1:0:::::\n';
    for (const cut of [line.indexOf(',') + 3, line.lastIndexOf('24') + 1]) {
      const parsed = parseUserConfig(head + line.slice(0, cut));
      assert.equal(
        parsed.config.users.get('joe@pve')?.tokens.has('fenced'),
        false,
        `cut at ${cut}`,
      );
      assert.match(parsed.warnings.map((w) => w.message).join('\n'), /allowed-ips cut/);
    }
    const graceCut = parseUserConfig(head + line.slice(0, line.length - 3));
    const token = graceCut.config.users.get('joe@pve')?.tokens.get('fenced');
    assert.equal(token?.allowedIps, '10.0.0.0/8,192.0.2.0/24');
    assert.equal(token?.graceUntil, undefined);
  });
});
