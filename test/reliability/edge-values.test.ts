/**
 * Values at the edges of what each format allows, where the reliability work
 * found bugs in src/ (RELIABILITY.md, "Findings in src/" 3 to 6): a NUL decoded into
 * a secret checked against a crypt hash, generations above 2^53, a
 * `__proto__` entry of token.shadow, a lone surrogate in an id. Each test
 * failed before its fix. An open bug found this way would be a failing
 * reproduction marked `todo` until its fix lands. The header-slice leaks are
 * covered by secrets.test.ts and the legacy-hash timing weakness by
 * timing.test.ts.
 */

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { makeLegacyHash } from '../../src/hashing/legacy.js';
import {
  AuthenticationError,
  Authenticator,
  addToken,
  addUser,
  GenerationPage,
  HashPool,
  InvalidIdError,
  parseAuthid,
  Slot,
  TokenShadow,
  UserConfigStore,
} from '../../src/index.js';
import { loadAddon } from '../../src/native.js';
import { parseShadow, serializeShadow } from '../../src/shadow/file.js';
import { tokenShadowForTests } from '../../src/shadow/token-shadow.js';
import { ownCopy } from '../../src/strings.js';
import { tempDir } from '../helpers/tmp.js';
import { FAST_ARGON2 } from './common.js';

const MAGIC = [0xea, 0xf3, 0xca, 0x65, 0xeb, 0x46, 0x00, 0x5a];

describe('values at the edges of each format', () => {
  const pool = new HashPool({ threads: 1, maxQueue: 16, argon2: FAST_ARGON2 });
  after(() => pool.close());

  it('a secret followed by %00 and anything does not verify against an imported crypt hash', async () => {
    const dir = tempDir();
    const id = 'imported@pve!legacy';
    const secret = randomUUID();
    const hash = makeLegacyHash(secret, 'sha256-crypt');
    const shadowPath = path.join(dir, 'token.shadow');
    writeFileSync(shadowPath, serializeShadow(new Map([[id, hash]])));
    const users = new UserConfigStore({ path: path.join(dir, 'user.cfg'), page: null });
    await users.mutate((config) => {
      addUser(config, 'imported@pve', {});
      addToken(config, id, { privsep: false });
    });
    const shadow = new TokenShadow({ path: shadowPath, page: null, pool });
    const auth = new Authenticator({ users, shadow });
    const right = await auth.authenticate({ authorization: `PBSAPIToken ${id}:${secret}` });
    assert.equal(right.authid, id);
    await assert.rejects(
      auth.authenticate({ authorization: `PBSAPIToken ${id}:${secret}%00anything` }),
      AuthenticationError,
      'a different secret was accepted',
    );
    // The crypt path itself, below the header parser: crypt_r would stop at the NUL.
    assert.equal(await shadow.verifySecret(id, `${secret}\u0000anything`), false);
    assert.equal(loadAddon().cryptVerify(`${secret}\u0000anything`, hash), false);
  });

  it('above 2^53 a generation bump stays visible and a rotated secret is refused', async () => {
    const dir = tempDir();
    const pagePath = path.join(dir, 'config-versions');
    const bytes = Buffer.alloc(4096);
    Buffer.from(MAGIC).copy(bytes);
    bytes.writeBigUInt64LE(2n ** 60n, 8 + 8 * Slot.TOKEN_SHADOW);
    writeFileSync(pagePath, bytes, { mode: 0o660 });
    const shadowPath = path.join(dir, 'token.shadow');
    const reader = GenerationPage.open(pagePath);
    const writerPage = GenerationPage.open(pagePath);
    after(() => {
      reader.close();
      writerPage.close();
    });
    const clock = () => 0; // the TTL never passes: only the generation can invalidate
    const a = tokenShadowForTests({ path: shadowPath, page: reader, pool, clock });
    const b = tokenShadowForTests({ path: shadowPath, page: writerPage, pool, clock });
    const old = await b.generateAndSetSecret('joe@pve!ci');
    assert.equal(await a.verifySecret('joe@pve!ci', old), true);
    const before = reader.load(Slot.TOKEN_SHADOW);
    await b.generateAndSetSecret('joe@pve!ci'); // rotation: old must be refused from now on
    assert.equal(await a.verifySecret('joe@pve!ci', old), false, 'the rotated secret still works');
    assert.notEqual(reader.load(Slot.TOKEN_SHADOW), before, 'the bump is not visible');
  });

  it('every entry token.shadow accepted is written back by the next mutation', () => {
    const entries = parseShadow('token.shadow', '{"__proto__": "$argon2id$x", "a@pve!t": "h"}');
    assert.equal(entries.size, 2);
    assert.deepEqual(parseShadow('token.shadow', serializeShadow(entries)), entries);
  });

  // Fixed: ownCopy copies UTF-16 code units (it went through UTF-8 before). Since issue 22
  // (case 7) such an id is refused: user.cfg, in UTF-8, could not hold it.
  it('an id with a lone surrogate is never parsed into another id', () => {
    const value = 'a\ud800@pve';
    assert.equal(ownCopy(value), value);
    assert.throws(() => parseAuthid(value), InvalidIdError);
  });
});
