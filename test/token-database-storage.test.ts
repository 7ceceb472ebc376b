/**
 * DatabaseStorage and StoredTokens (issue 25): a deployment whose tokens are
 * in access.db, opened twice as two processes would (each its own
 * connections, the same page): what one changes the other sees on its next
 * look; a change costs only the users it looked at; a change that throws
 * stores nothing; a deleted or replaced user's tokens and secrets go. And
 * the move itself: no journal of an earlier database is rolled back into the
 * new one, and two moves at once make one database, not an empty second.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setAcl } from '../src/config/acl.js';
import { createUserConfig } from '../src/config/types.js';
import { addToken, addUser, removeToken, removeUser } from '../src/config/users.js';
import { ConfigError } from '../src/errors.js';
import { previousSecretId } from '../src/ids.js';
import type { DatabaseStorage } from '../src/service/database-storage.js';
import { type Deployment, openDeployment } from '../src/service/deployment.js';
import { resolveSettings } from '../src/service/settings.js';
import { openStorageMode } from '../src/service/storage-mode.js';
import {
  moveTokensToDatabase,
  moveTokensToFiles,
} from '../src/service/token-database-migration.js';
import { readShadow, serializeShadow } from '../src/shadow/file.js';
import { MAX_LOADED_TOKENS, StoredTokens } from '../src/store/stored-tokens.js';
import {
  TokenDatabaseReader,
  TokenDatabaseWriter,
  tokenDatabaseAvailable,
} from '../src/store/token-database.js';
import { fixture, runChild } from './helpers/children.js';
import { tempDir } from './helpers/tmp.js';

const skip = tokenDatabaseAvailable() ? false : `node:sqlite is not in Node ${process.version}`;

/** A deployment on `dir` with its tokens in access.db (migrated from `userCfg`), opened as tokenctl. */
async function opened(dir: string, userCfg = 'user:joe@pve:1:0::::::\n') {
  const settings = resolveSettings({
    configDir: path.join(dir, 'etc'),
    runtimeDir: path.join(dir, 'run'),
    workers: 1,
    hashThreads: 1,
  });
  const open = async (): Promise<{ deployment: Deployment; storage: DatabaseStorage }> => {
    const deployment = openDeployment(settings, 'cli');
    after(() => deployment.close());
    assert.ok(deployment.page !== null, 'the page: changes are announced on it');
    const mode = await openStorageMode(deployment, 'cli');
    return { deployment, storage: mode.storage as DatabaseStorage };
  };
  mkdirSync(settings.configDir, { recursive: true });
  mkdirSync(settings.runtimeDir, { recursive: true });
  writeFileSync(settings.userCfgPath, userCfg, { mode: 0o640 });
  const first = openDeployment(settings, 'cli'); // creates the page the migration announces on
  await moveTokensToDatabase(settings, first.page);
  await first.close();
  return { settings, open };
}

function rowsOf(file: string, userid: string): string[] {
  const reader = new TokenDatabaseReader(file);
  try {
    return reader.rowsOf(userid).map((row) => row.id);
  } finally {
    reader.close();
  }
}

describe('DatabaseStorage', { skip }, () => {
  it('what one process changes, another sees on its next look, in a config it read before', async () => {
    const { open } = await opened(tempDir());
    const a = await open();
    const b = await open();
    const seen = await b.storage.readConfig();
    assert.ok(seen.users.get('joe@pve')?.tokens instanceof StoredTokens);
    assert.equal(seen.users.get('joe@pve')?.tokens.size, 0);
    await a.storage.mutateTokens((config) => addToken(config, 'joe@pve!ci', { comment: 'x' }));
    // The config object read before the change sees it: its user's tokens follow the page.
    assert.equal(seen.users.get('joe@pve')?.tokens.get('ci')?.comment, 'x');
    const again = seen;
    await a.storage.mutateTokens((config) => removeToken(config, 'joe@pve!ci'));
    assert.equal(again.users.get('joe@pve')?.tokens.has('ci'), false);
  });

  it('a change that throws stores nothing, and leaves no trace in the process that ran it', async () => {
    const { open, settings } = await opened(tempDir());
    const { storage } = await open();
    await storage.mutateTokens((config) => addToken(config, 'joe@pve!keep', {}));
    await assert.rejects(
      storage.mutateTokens((config) => {
        removeToken(config, 'joe@pve!keep');
        addToken(config, 'joe@pve!half', {});
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    const config = await storage.readConfig();
    assert.deepEqual([...(config.users.get('joe@pve')?.tokens.keys() ?? [])], ['keep']);
    assert.deepEqual(rowsOf(settings.tokenDatabasePath, 'joe@pve'), ['joe@pve!keep']);
  });

  it("a new token's secret is stored with its row, in one transaction", async () => {
    const { open, settings } = await opened(tempDir());
    const { storage, deployment } = await open();
    const secret = await storage.newSecret('joe@pve!new');
    assert.deepEqual(rowsOf(settings.tokenDatabasePath, 'joe@pve'), [], 'nothing before the row');
    await storage.mutateTokens((config) => addToken(config, 'joe@pve!new', {}));
    assert.equal(await deployment.secrets.verifySecret('joe@pve!new', secret), true);
    assert.equal(await deployment.secrets.verifySecret('joe@pve!new', `${secret}x`), false);
  });

  it("deleting a user takes its tokens; replacing one (an import) drops the old tokens' secrets", async () => {
    const { open, settings } = await opened(tempDir());
    const { storage, deployment } = await open();
    await storage.mutateConfig((config) => addUser(config, 'ann@pve', {}));
    for (const id of ['joe@pve!a', 'joe@pve!b', 'ann@pve!a']) {
      await storage.newSecret(id);
      await storage.mutateTokens((config) => addToken(config, id, {}));
    }
    const old = await storage.newSecret('ann@pve!a'); // now the stored one
    await storage.mutateConfig((config) => removeUser(config, 'joe@pve'));
    assert.deepEqual(rowsOf(settings.tokenDatabasePath, 'joe@pve'), []);
    assert.doesNotMatch(readFileSync(settings.userCfgPath, 'utf8'), /joe@pve|^token:/m);
    // An import replaces ann@pve with a plain user whose token has the same name and no secret.
    await storage.mutateConfig((config) => {
      const fresh = {
        ...(config.users.get('ann@pve') as NonNullable<ReturnType<typeof config.users.get>>),
      };
      fresh.tokens = new Map([
        ['a', { enable: true, expire: 0, privsep: true, comment: 'imported' }],
      ]);
      config.users.set('ann@pve', fresh);
    });
    assert.deepEqual(rowsOf(settings.tokenDatabasePath, 'ann@pve'), ['ann@pve!a']);
    assert.equal(await deployment.secrets.verifySecret('ann@pve!a', old), false, 'no old secret');
  });

  it("a token delete that also removes the token's ACL entries writes user.cfg", async () => {
    const { open, settings } = await opened(
      tempDir(),
      'user:joe@pve:1:0::::::\nrole:R:Sys.Audit:\n',
    );
    const { storage } = await open();
    await storage.mutateTokens((config) => addToken(config, 'joe@pve!acl', {}));
    await storage.mutateConfig((config) =>
      setAcl(config, '/', { roles: ['R'], tokens: ['joe@pve!acl'] }),
    );
    assert.match(readFileSync(settings.userCfgPath, 'utf8'), /joe@pve!acl/);
    const { hasTokenAclEntries } = await import('../src/config/acl.js');
    await storage.mutateTokens((config) => removeToken(config, 'joe@pve!acl'), {
      changesMoreThanTokens: (config) => hasTokenAclEntries(config, new Set(['joe@pve!acl'])),
    });
    assert.doesNotMatch(readFileSync(settings.userCfgPath, 'utf8'), /joe@pve!acl/);
    assert.deepEqual(rowsOf(settings.tokenDatabasePath, 'joe@pve'), []);
  });

  it(`a process holds at most ${MAX_LOADED_TOKENS} tokens, whole users at a time`, async () => {
    const perUser = 64;
    const users = MAX_LOADED_TOKENS / perUser + 10;
    let text = '';
    for (let i = 0; i < users; i++) text += `user:u${i}@pve:1:0::::::\n`;
    const { open } = await opened(tempDir(), text);
    const { storage } = await open();
    await storage.mutateTokens((config) => {
      for (let i = 0; i < users; i++) {
        for (let t = 0; t < perUser; t++) addToken(config, `u${i}@pve!t${t}`, {});
      }
    });
    const config = await storage.readConfig();
    for (let i = 0; i < users; i++)
      assert.equal(config.users.get(`u${i}@pve`)?.tokens.size, perUser);
    let holding = 0;
    for (const user of config.users.values()) holding += (user.tokens as StoredTokens).peek().size;
    assert.ok(holding <= MAX_LOADED_TOKENS, `${holding} tokens held`);
    assert.ok(holding > MAX_LOADED_TOKENS - 2 * perUser, `${holding} tokens held`);
    assert.equal(config.users.get('u0@pve')?.tokens.has('t0'), true, 'an emptied one loads again');
  });

  it('what expires soon comes from the database, not from every token looked at', async () => {
    const now = Math.floor(Date.now() / 1000);
    const { open } = await opened(
      tempDir(),
      `user:joe@pve:1:0::::::\nuser:ann@pve:1:${now + 3600}::::::\n`,
    );
    const { storage, deployment } = await open();
    await storage.mutateTokens((config) => {
      addToken(config, 'joe@pve!soon', { expire: now + 600 });
      addToken(config, 'joe@pve!later', { expire: now + 90 * 86400 });
      addToken(config, 'joe@pve!off', { expire: now + 600, enable: false });
      addToken(config, 'ann@pve!inherits', {});
    });
    const { expiringWithin } = await import('../src/config/expiring.js');
    const config = await storage.readConfig();
    const found = expiringWithin(config, now, 86400, deployment.tokensExpiring);
    assert.deepEqual(
      found.map((e) => [e.kind, e.id]),
      [
        ['token', 'joe@pve!soon'],
        ['user', 'ann@pve'],
        ['token', 'ann@pve!inherits'],
      ],
    );
    assert.deepEqual(found, expiringWithin(config, now, 86400), 'as looking at every token says');
  });

  it('a bulk revoke by creation time takes the tokens made before it (the files cannot say: a 400)', async () => {
    const { open, settings } = await opened(tempDir());
    const { deployment } = await open();
    const { DatabaseStorage } = await import('../src/service/database-storage.js');
    const { Writer } = await import('../src/service/operations/operation.js');
    const { revokeTokens, tokensMatching } = await import(
      '../src/service/operations/revoke-tokens.js'
    );
    let clock = 1_000;
    const storage = new DatabaseStorage({
      users: deployment.users,
      store: deployment.tokenStore as NonNullable<typeof deployment.tokenStore>,
      pool: deployment.pool,
      secretFormat: 'scannable',
      now: () => clock,
    });
    await storage.mutateTokens((config) => addToken(config, 'joe@pve!old', {}));
    clock = 2_000;
    await storage.mutateTokens((config) => addToken(config, 'joe@pve!new', {}));
    const answer = await revokeTokens.run(new Writer(storage, () => undefined), {
      createdBefore: 1_500,
    });
    assert.deepEqual(answer.revoked, ['joe@pve!old']);
    assert.deepEqual(rowsOf(settings.tokenDatabasePath, 'joe@pve'), ['joe@pve!new']);
    const files = createUserConfig();
    addUser(files, 'joe@pve', {});
    addToken(files, 'joe@pve!t', {});
    assert.throws(
      () => tokensMatching(files, { createdBefore: 1_500 }),
      (error: unknown) => (error as { status?: number }).status === 400,
    );
  });

  it('a bulk revoke by comment looks only at the users a query names', async () => {
    let text = '';
    for (let i = 0; i < 10; i++) text += `user:u${i}@pve:1:0::::::\n`;
    const { open } = await opened(tempDir(), text);
    const { storage } = await open();
    await storage.mutateTokens((config) => {
      for (let i = 0; i < 10; i++) addToken(config, `u${i}@pve!a`, { comment: 'web [prod]' });
      addToken(config, 'u3@pve!b', { comment: 'ci [x]' });
      addToken(config, 'u7@pve!b', { comment: 'CI [x]' }); // the glob is case-sensitive
    });
    const other = await open(); // another process: nothing looked at yet
    const { Writer } = await import('../src/service/operations/operation.js');
    const { revokeTokens, tokensMatching } = await import(
      '../src/service/operations/revoke-tokens.js'
    );
    const config = await other.storage.readConfig();
    const holding = () =>
      [...config.users.entries()]
        .filter(([, user]) => (user.tokens as StoredTokens).peek().size > 0)
        .map(([userid]) => userid);
    assert.deepEqual(tokensMatching(config, { comment: 'ci [*]' }), ['u3@pve!b']);
    assert.deepEqual(holding(), ['u3@pve'], 'only the user the query named was looked at');
    const answer = await revokeTokens.run(new Writer(other.storage, () => undefined), {
      comment: 'ci [*]',
    });
    assert.deepEqual(answer.revoked, ['u3@pve!b']);
    assert.deepEqual([...(config.users.get('u7@pve')?.tokens.keys() ?? [])], ['a', 'b']);
  });
});

describe('moving the tokens into the database', { skip }, () => {
  /** A deployment on the files with one token (joe@pve!ci, no secret). */
  function onFiles(dir: string) {
    const settings = resolveSettings({
      configDir: path.join(dir, 'etc'),
      runtimeDir: path.join(dir, 'run'),
      workers: 1,
      hashThreads: 1,
    });
    mkdirSync(settings.configDir, { recursive: true });
    writeFileSync(settings.userCfgPath, 'user:joe@pve:1:0::::::\ntoken:joe@pve!ci:0:1::\n');
    return settings;
  }

  it('a journal left by an access.db removed by hand is not rolled back into the new one', async () => {
    const settings = onFiles(tempDir());
    const file = settings.tokenDatabasePath;
    const old = new TokenDatabaseWriter(file);
    old.put(
      Array.from({ length: 5000 }, (_, i) => ({
        id: `old@pve!t${i}`,
        userid: 'old@pve',
        hash: '',
        enable: true,
        expire: 0,
        privsep: true,
        comment: '',
        created: 1,
      })),
    );
    old.close();
    // A commit cut short: its journal is hot; then the database goes, the journal stays.
    const torn = await runChild(fixture('token-db-child'), ['torn', file]);
    assert.equal(torn.code, null, torn.stderr);
    rmSync(file);
    assert.equal(existsSync(`${file}-journal`), true);

    assert.equal((await moveTokensToDatabase(settings, null)).tokens, 1);
    const writer = new TokenDatabaseWriter(file); // the first open would roll a hot journal back
    try {
      assert.equal(writer.integrityOk(), true);
      assert.equal(writer.count(), 1);
      assert.equal(writer.get('joe@pve!ci')?.id, 'joe@pve!ci');
    } finally {
      writer.close();
    }
  });

  it('two moves at once: one moves the tokens, the other finds them moved', async () => {
    const settings = onFiles(tempDir());
    const results = await Promise.allSettled([
      moveTokensToDatabase(settings, null),
      moveTokensToDatabase(settings, null),
    ]);
    const moved = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(moved.length, 1, JSON.stringify(results));
    assert.equal(moved[0]?.value.tokens, 1);
    assert.ok(refused[0]?.reason instanceof ConfigError, String(refused[0]?.reason));
    assert.match(String(refused[0]?.reason), /exists/);
    assert.deepEqual(rowsOf(settings.tokenDatabasePath, 'joe@pve'), ['joe@pve!ci']);
  });
  it('and back: the rows become token lines and token.shadow again, a process that had the database open refuses every token', async () => {
    const settings = onFiles(tempDir());
    writeFileSync(
      settings.userCfgPath,
      'user:joe@pve:1:0::::::\ntoken:joe@pve!ci:1:0:1:runner::\n\nacl:1:/:joe@pve!ci:PVEAuditor:\n',
    );
    writeFileSync(settings.shadowPath, serializeShadow(new Map([['joe@pve!ci', '$argon2id$ci']])));
    await moveTokensToDatabase(settings, null);
    const writer = new TokenDatabaseWriter(settings.tokenDatabasePath);
    // What only the database had: a rotation's previous secret, a token of a user gone since.
    writer.setSecret('joe@pve!ci', '$argon2id$ci2', true);
    writer.put([
      {
        id: 'gone@pve!x',
        userid: 'gone@pve',
        hash: '$argon2id$x',
        enable: true,
        expire: 0,
        privsep: true,
        comment: '',
        created: 1,
      },
    ]);
    writer.close();
    const before = new TokenDatabaseReader(settings.tokenDatabasePath); // a running process's
    try {
      assert.deepEqual(await moveTokensToFiles(settings, null), { tokens: 1, orphans: 1 });
      assert.equal(existsSync(settings.tokenDatabasePath), false);
      const userCfg = readFileSync(settings.userCfgPath, 'utf8');
      assert.match(userCfg, /^token:joe@pve!ci:1:0:1:runner:/m);
      assert.match(userCfg, /^acl:1:\/:joe@pve!ci:PVEAuditor:$/m, "the token's ACL entry stays");
      const shadow = (await readShadow(settings.shadowPath)).entries;
      assert.equal(shadow.get('joe@pve!ci'), '$argon2id$ci2');
      assert.equal(shadow.get(previousSecretId('joe@pve!ci')), '$argon2id$ci');
      assert.equal(shadow.has('gone@pve!x'), false);
      assert.equal(before.lookup('joe@pve!ci'), undefined, 'the old database is emptied');
    } finally {
      before.close();
    }
    await assert.rejects(moveTokensToFiles(settings, null), /does not exist/);
  });
});
