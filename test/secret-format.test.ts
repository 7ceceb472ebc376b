/**
 * Scannable secrets: new secrets are `tsk_` + a public reference to the
 * token + 256 random bits + a CRC32, all base62 (and the 53-character form
 * made before references still passes); a regular expression (the README's, deploy/'s gitleaks rule) finds
 * them and nothing else in samples of look-alikes; a secret whose checksum
 * fails is refused (401) before any lookup or hash, for a known and an
 * unknown token id alike; Proxmox-style UUID secrets keep working, and
 * `secretFormat: "uuid"` makes them for clients that insist.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { type Api, call, type Deployment, pveHeader, startDeployment } from '../harness/daemons.js';
import {
  newSecret,
  plausibleSecret,
  referenceOf,
  SECRET_LENGTH,
  SECRET_PATTERN,
  secretReference,
  UNREFERENCED_SECRET_LENGTH,
} from '../src/secret-format.js';
import { tempDir } from './helpers/tmp.js';

const GITLEAKS = fileURLToPath(
  new URL('../../deploy/secret-scanning/gitleaks.toml', import.meta.url),
);

/** The rule's regex as gitleaks reads it (a TOML literal string), compiled the same in JS. */
function gitleaksPattern(): RegExp {
  const match = /^regex = '''(.+)'''$/m.exec(readFileSync(GITLEAKS, 'utf8'));
  assert.ok(match?.[1], 'the rule has a regex');
  return new RegExp(match[1], 'g');
}

const ID = 'alice@pve!ci';

/** A secret in the 53-character form made before references (tsk_ + 43 random + CRC32). */
function unreferenced(): string {
  const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  let body = 'tsk_';
  for (const byte of randomBytes(43)) body += alphabet[byte % 62];
  // The checksum as secret-format computes it: 6 base62 digits of CRC32 over the body.
  let rest = crc32(body);
  let check = '';
  for (let i = 0; i < 6; i++) {
    check = alphabet[rest % 62] + check;
    rest = Math.floor(rest / 62);
  }
  return body + check;
}

/** Strings a scanner must not flag: UUIDs, hex digests, base64, near misses of the form. */
function lookAlikes(): string[] {
  const samples: string[] = [];
  for (let i = 0; i < 500; i++) {
    samples.push(randomUUID());
    samples.push(randomBytes(32).toString('hex'));
    samples.push(randomBytes(36).toString('base64url'));
    samples.push(`tsk_${randomBytes(30).toString('base64url').replace(/[-_]/g, 'x').slice(0, 40)}`);
    samples.push(`tsk-${newSecret(ID, 'scannable').slice(4)}`);
    samples.push(`${newSecret(ID, 'scannable')}0`); // one character too long: not a whole word of the form
    samples.push(`${unreferenced()}0`);
    samples.push(newSecret(ID, 'scannable').slice(0, -4)); // between the two lengths
  }
  return samples;
}

describe('the secret format', () => {
  it('is tsk_ plus 57 base62 characters, unique, and passes its own checksum', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const secret = newSecret(ID, 'scannable');
      assert.equal(secret.length, SECRET_LENGTH);
      assert.equal(SECRET_LENGTH, 61);
      assert.match(secret, /^tsk_[0-9A-Za-z]{57}$/);
      assert.ok(plausibleSecret(secret));
      seen.add(secret);
    }
    assert.equal(seen.size, 2000);
    assert.match(
      newSecret(ID, 'uuid'),
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it('carries the reference of its token id, which only a well-formed secret gives away', () => {
    const secret = newSecret(ID, 'scannable');
    assert.match(secretReference(ID), /^[0-9A-Za-z]{8}$/);
    assert.equal(secretReference(ID), secretReference(ID), 'derived, not stored');
    assert.notEqual(secretReference(ID), secretReference('alice@pve!cd'));
    assert.equal(secret.slice(4, 12), secretReference(ID));
    assert.equal(referenceOf(secret), secretReference(ID));
    assert.equal(referenceOf(`${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`), null);
    assert.equal(referenceOf(unreferenced()), null, 'the old form has none');
    assert.equal(referenceOf(randomUUID()), null);
  });

  it('still accepts the 53-character secrets made before the reference', () => {
    const old = unreferenced();
    assert.equal(old.length, UNREFERENCED_SECRET_LENGTH);
    assert.ok(plausibleSecret(old));
    assert.equal(plausibleSecret(`${old.slice(0, -1)}${old.endsWith('A') ? 'B' : 'A'}`), false);
  });

  it('finds every changed character with the checksum, and does not judge other secrets', () => {
    const secret = newSecret(ID, 'scannable');
    for (let at = 4; at < secret.length; at++) {
      const other = secret[at] === 'A' ? 'B' : 'A';
      const changed = secret.slice(0, at) + other + secret.slice(at + 1);
      assert.equal(plausibleSecret(changed), false, `a change at ${at}`);
    }
    assert.equal(plausibleSecret(secret.slice(0, -1)), false, 'one character short');
    assert.equal(
      plausibleSecret(randomUUID()),
      true,
      "Proxmox's secrets are for the hash to judge",
    );
  });

  it('is found by the README pattern and the gitleaks rule, and nothing else is', () => {
    const rule = gitleaksPattern();
    const secrets = [
      ...Array.from({ length: 200 }, (_, i) => newSecret(`u${i}@pve!t`, 'scannable')),
      ...Array.from({ length: 50 }, unreferenced),
    ];
    const text = secrets.map((s, i) => `line ${i}: export TOKEN="${s}"`).join('\n');
    assert.deepEqual(text.match(rule), secrets, 'each found whole');
    assert.equal(secrets.filter((s) => SECRET_PATTERN.test(` ${s} `)).length, 250);
    const noise = lookAlikes();
    const flagged = noise.filter((s) => SECRET_PATTERN.test(s) || new RegExp(rule).test(s));
    assert.deepEqual(flagged, [], `${flagged.length} false positives in ${noise.length}`);
  });
});

describe('secrets against the real daemons', () => {
  let deployment: Deployment;
  let api: Api;
  const dir = tempDir();

  async function hashes(): Promise<number> {
    return (await api.metrics()).get('token_shadow_hash_verifies_total') ?? 0;
  }

  before(async () => {
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1'], {
      metrics: true,
    });
  });
  after(() => deployment?.stop());

  it('makes scannable secrets that work, and refuses a bad checksum with no hash run', async () => {
    const made = await deployment.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'scan',
      fields: { privsep: false },
    });
    const secret = (made as unknown as { data: { value: string } }).data.value;
    assert.match(secret, SECRET_PATTERN);
    assert.equal(secret.length, SECRET_LENGTH);
    assert.equal(referenceOf(secret), secretReference('root@pam!scan'), 'the manager’s carries it');
    assert.equal(
      (await call(api, 'GET', '/version', { auth: pveHeader('root@pam!scan', secret) })).status,
      200,
    );

    const before = await hashes();
    const corrupt = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A');
    for (const id of ['root@pam!scan', 'nobody@pve!unknown']) {
      for (let i = 0; i < 4; i++) {
        const reply = await call(api, 'GET', '/version', { auth: pveHeader(id, corrupt) });
        assert.equal(reply.status, 401, id);
        assert.equal(reply.raw, '{"data":null}', 'the same bare answer for both');
      }
    }
    assert.equal(await hashes(), before, 'no hash for a secret whose checksum fails');
    // An unknown id with a well-formed secret costs a (dummy) hash: the counter can move.
    await call(api, 'GET', '/version', {
      auth: pveHeader('nobody@pve!unknown', newSecret('nobody@pve!unknown', 'scannable')),
    });
    assert.ok((await hashes()) > before, 'the counter counts');
  });

  it("makes Proxmox's UUID secrets with secretFormat uuid, and both kinds keep working", async () => {
    const scannable = await deployment.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'before',
      fields: { privsep: false },
    });
    const first = (scannable as unknown as { data: { value: string } }).data.value;
    await deployment.stop();
    writeFileSync(path.join(dir, 'etc', 'api.json'), JSON.stringify({ secretFormat: 'uuid' }));
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '1', '--hash-threads', '1'], {
      metrics: true,
    });
    const made = await deployment.asRoot('token.create', {
      userid: 'root@pam',
      tokenName: 'uuid',
      fields: { privsep: false },
    });
    const uuid = (made as unknown as { data: { value: string } }).data.value;
    assert.match(uuid, /^[0-9a-f-]{36}$/);
    assert.equal(
      (await call(api, 'GET', '/version', { auth: pveHeader('root@pam!uuid', uuid) })).status,
      200,
    );
    assert.equal(
      (await call(api, 'GET', '/version', { auth: pveHeader('root@pam!before', first) })).status,
      200,
    );
  });
});
