import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { userConfigStoreForTests } from '../src/access/user-info.js';
import { importPveUserConfig } from '../src/config/import.js';
import { parseUserConfig } from '../src/config/parse.js';
import { addToken, setGrace } from '../src/config/users.js';
import { writeUserConfig } from '../src/config/write.js';
import { AuthenticationError, TokenDatabaseError } from '../src/errors.js';
import { Slot } from '../src/generations/slots.js';
import { HashPool } from '../src/hashing/pool.js';
import { Authenticator, type Identity } from '../src/http/authenticate.js';
import { previousSecretId } from '../src/ids.js';
import { openDeployment } from '../src/service/deployment.js';
import { resolveSettings } from '../src/service/settings.js';
import { moveTokensToDatabase } from '../src/service/token-database-migration.js';
import { DatabaseSecrets } from '../src/store/database-secrets.js';
import { filesOf, tokenRowsOf } from '../src/store/interop.js';
import { attachStoredTokens, type TokenRows } from '../src/store/stored-tokens.js';
import {
  TokenDatabaseReader,
  TokenDatabaseWriter,
  type TokenRow,
  tokenDatabaseAvailable,
} from '../src/store/token-database.js';
import { fixture, runChild, startChild } from './helpers/children.js';
import { AS_NOBODY, NOBODY, nobodysCopy } from './helpers/nobody.js';
import { FAST_ARGON2, setup } from './helpers/shadow.js';
import { tempDir } from './helpers/tmp.js';

function row(id: string, fields: Partial<TokenRow> = {}): TokenRow {
  return {
    id,
    userid: id.slice(0, id.indexOf('!')),
    hash: `$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$${id}`,
    enable: true,
    expire: 0,
    privsep: true,
    comment: '',
    created: 1_700_000_000,
    ...fields,
  };
}

/** A directory with a page and a small pool (closed after the test), and where the database goes. */
function withPageAndPool() {
  const shared = setup();
  after(() => shared.page.close());
  return { ...shared, file: path.join(shared.dir, 'access.db') };
}

function database(): { file: string; writer: TokenDatabaseWriter } {
  const file = path.join(tempDir(), 'access.db');
  return { file, writer: new TokenDatabaseWriter(file) };
}

/**
 * A deployment whose tokens are in access.db (users `userids`, no token yet), opened as
 * tokenctl opens it, and a pool with cheap parameters for the tests' hashes.
 */
async function databaseDeployment(userids: string[]) {
  const dir = tempDir();
  const settings = resolveSettings({
    configDir: path.join(dir, 'etc'),
    runtimeDir: path.join(dir, 'run'),
    workers: 1,
    hashThreads: 1,
  });
  mkdirSync(settings.configDir, { recursive: true });
  mkdirSync(settings.runtimeDir, { recursive: true });
  const userCfg = userids.map((userid) => `user:${userid}:1:0::::::\n`).join('');
  writeFileSync(settings.userCfgPath, userCfg, { mode: 0o640 });
  const first = openDeployment(settings, 'cli'); // creates the page the migration announces on
  await moveTokensToDatabase(settings, first.page);
  await first.close();
  const deployment = openDeployment(settings, 'cli');
  after(() => deployment.close());
  assert.ok(deployment.tokenStore !== null, 'the tokens are in the database');
  const pool = new HashPool({ threads: 1, argon2: FAST_ARGON2 });
  after(() => pool.close());
  return { dir, store: deployment.tokenStore, pool };
}

// node:sqlite is in Node 22.13+ and 24, the supported lines; this machine's development Node 20 lacks it.
const skip = tokenDatabaseAvailable() ? false : `node:sqlite is not in Node ${process.version}`;

describe('token database', { skip }, () => {
  it('a reader sees each commit on its next lookup, and the ids each change touched', () => {
    const { file, writer } = database();
    writer.put([row('a@pve!one'), row('a@pve!two'), row('b@pve!one')]);
    const reader = new TokenDatabaseReader(file);
    const start = reader.newestSeq();
    assert.equal(start, 3);
    assert.equal(reader.lookup('a@pve!one')?.enable, true);
    assert.deepEqual(writer.remove(['a@pve!one', 'nobody@pve!x']), ['a@pve!one']);
    assert.equal(reader.lookup('a@pve!one'), undefined, 'no stale snapshot after the commit');
    assert.equal(writer.setHash('b@pve!one', '$argon2id$new'), true);
    assert.equal(writer.setHash('gone@pve!x', '$argon2id$new'), false);
    assert.equal(reader.lookup('b@pve!one')?.hash, '$argon2id$new');
    assert.deepEqual(reader.changesSince(start), { seq: 5, ids: ['a@pve!one', 'b@pve!one'] });
    assert.deepEqual(reader.changesSince(5), { seq: 5, ids: [] });
    reader.close();
    writer.close();
  });

  it('tells a reader that is further behind than the kept log to start afresh', () => {
    const file = path.join(tempDir(), 'access.db');
    const writer = new TokenDatabaseWriter(file, { changesKept: 3 });
    for (let i = 0; i < 6; i++) writer.put([row(`a@pve!t${i}`)]);
    const reader = new TokenDatabaseReader(file);
    assert.equal(reader.changesSince(0), 'too-old');
    assert.equal(reader.changesSince(2), 'too-old');
    assert.deepEqual(reader.changesSince(3), { seq: 6, ids: ['a@pve!t3', 'a@pve!t4', 'a@pve!t5'] });
    reader.close();
    writer.close();
  });

  it('revokes by users, creation date, ids and comment pattern, each as one change', () => {
    const { file, writer } = database();
    writer.put([
      row('a@pve!old', { created: 100, comment: 'ci runner' }),
      row('a@pve!new', { created: 300, comment: 'ci runner' }),
      row('b@pve!old', { created: 100, comment: 'backup' }),
      row('c@pve!x', { created: 300, comment: 'ci 50%_off' }),
      row('d@pve!y', { created: 300 }),
    ]);
    const reader = new TokenDatabaseReader(file);
    let seq = reader.newestSeq();
    const changed = () => {
      const since = reader.changesSince(seq);
      assert.notEqual(since, 'too-old');
      if (since === 'too-old') return [];
      seq = since.seq;
      return since.ids.sort();
    };
    assert.deepEqual(writer.select({ createdBefore: 200 }).sort(), ['a@pve!old', 'b@pve!old']);
    assert.equal(reader.newestSeq(), seq, 'select changes nothing');
    assert.deepEqual(writer.revokeWhere({ users: ['a@pve'], createdBefore: 200 }), ['a@pve!old']);
    assert.deepEqual(changed(), ['a@pve!old']);
    assert.deepEqual(writer.revokeWhere({ commentLike: 'ci 50\\%\\_%' }), ['c@pve!x']);
    assert.deepEqual(writer.revokeWhere({ commentLike: 'ci%' }), ['a@pve!new']);
    assert.deepEqual(writer.revokeWhere({ ids: ['d@pve!y', 'zz@pve!none'] }), ['d@pve!y']);
    assert.deepEqual(changed(), ['a@pve!new', 'c@pve!x', 'd@pve!y']);
    assert.deepEqual(
      [...writer.rows()].map((r) => r.id),
      ['b@pve!old'],
    );
    assert.throws(() => writer.revokeWhere({}), TokenDatabaseError);
    assert.equal(writer.count(), 1, 'an empty filter revokes nothing');
    reader.close();
    writer.close();
  });

  it('refuses a token id that is not one', () => {
    const { writer } = database();
    assert.throws(() => writer.put([row('not-a-token')]));
    assert.equal(writer.count(), 0);
    writer.close();
  });

  it('keeps every acknowledged revoke when its writer is SIGKILLed mid-stream', async () => {
    const { file, writer } = database();
    const total = 3000;
    writer.put(Array.from({ length: total }, (_, i) => row(`u@pve!t${i}`)));
    writer.close();
    for (let round = 0; round < 3; round++) {
      const child = startChild(fixture('token-db-child'), [
        'revoke-forever',
        file,
        String(round * 1000),
      ]);
      assert.equal(await child.nextLine(), 'ready', child.stderr());
      const killAfter = 50 + round * 40;
      const acked: string[] = [];
      for (let i = 0; i < killAfter; i++) acked.push(await child.nextLine());
      child.process.kill('SIGKILL');
      await new Promise((resolve) => child.process.once('close', resolve));
      // The next writer's first transaction rolls back a torn commit (a hot journal).
      const next = new TokenDatabaseWriter(file);
      assert.equal(next.integrityOk(), true);
      const still = acked.filter((id) => next.get(id) !== undefined);
      assert.deepEqual(still, [], `round ${round}: acknowledged revokes lost`);
      next.close();
      // Readers (read-only) see the recovered state.
      const reader = new TokenDatabaseReader(file);
      assert.equal(reader.lookup(acked.at(-1) as string), undefined);
      assert.equal(reader.lookup(`u@pve!t${total - 1}`)?.enable, true);
      reader.close();
    }
  });

  it("a commit that times out on a reader's lock is not stored, then or later", async () => {
    const file = path.join(tempDir(), 'access.db');
    const writer = new TokenDatabaseWriter(file, { busyTimeoutMs: 100 });
    writer.put([row('a@pve!one'), row('a@pve!two')]);
    const reader = startChild(fixture('token-db-child'), ['hold', file]);
    assert.equal(await reader.nextLine(), 'holding', reader.stderr());
    assert.throws(() => writer.remove(['a@pve!one']), TokenDatabaseError);
    reader.process.stdin?.write('go\n');
    assert.equal(await reader.nextLine(), 'released');
    assert.equal(writer.get('a@pve!one')?.id, 'a@pve!one', 'the failed revoke did not take effect');
    assert.deepEqual(writer.remove(['a@pve!two']), ['a@pve!two'], 'the writer goes on');
    assert.equal(writer.get('a@pve!one')?.id, 'a@pve!one', 'not even with the next commit');
    writer.close();
  });

  it('a commit torn by SIGKILL: readers refuse until the next writer rolls it back', async () => {
    const { file, writer } = database();
    writer.put(Array.from({ length: 5000 }, (_, i) => row(`u@pve!t${i}`)));
    writer.close();
    const out = await runChild(fixture('token-db-child'), ['torn', file]);
    assert.equal(out.code, null, 'killed itself before the commit');
    // A hot journal is there: a read-only reader cannot roll it back, and reads nothing torn.
    assert.throws(
      () => new TokenDatabaseReader(file).lookup('u@pve!t0'),
      (error: unknown) => error instanceof TokenDatabaseError && /readonly/i.test(error.message),
    );
    const recovering = new TokenDatabaseWriter(file);
    assert.equal(recovering.integrityOk(), true);
    recovering.close();
    const reader = new TokenDatabaseReader(file);
    assert.equal(reader.lookup('u@pve!t0')?.hash, row('u@pve!t0').hash, 'the old state, whole');
    assert.equal(reader.lookup('u@pve!t4999')?.hash, row('u@pve!t4999').hash);
    reader.close();
  });

  it('an unprivileged reader of the group reads, and can write neither the database nor a journal', async (t) => {
    const nobody = nobodysCopy();
    if (typeof nobody === 'string') return t.skip(nobody);
    const dir = tempDir();
    // As deployed: the directory and the file are root's, readable by the API's group.
    chownSync(dir, 0, NOBODY);
    chmodSync(dir, 0o750);
    const file = path.join(dir, 'access.db');
    const writer = new TokenDatabaseWriter(file, { gid: NOBODY });
    writer.put([row('a@pve!one')]);
    assert.equal(statSync(file).mode & 0o777, 0o640);
    const out = await runChild(
      nobody.file('dist/test/fixtures/token-db-child.js'),
      ['read', file, 'a@pve!one'],
      {
        prefix: AS_NOBODY, // nobody's primary group is the database's group
      },
    );
    assert.equal(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout);
    assert.equal(result.enable, true);
    assert.notEqual(result.attempts.sqlite, 'wrote');
    assert.equal(result.attempts.file, 'EACCES');
    assert.equal(result.attempts.journal, 'EACCES');
    assert.equal(writer.get('a@pve!one')?.enable, true, 'the row is still there');
    assert.equal(writer.integrityOk(), true);
    writer.close();
  });

  it("a journal kept from before follows the database's mode and group: the group reads it, writes nothing", async (t) => {
    const nobody = nobodysCopy();
    if (typeof nobody === 'string') return t.skip(nobody);
    const dir = tempDir();
    chownSync(dir, 0, NOBODY);
    chmodSync(dir, 0o750);
    const file = path.join(dir, 'access.db');
    const journal = `${file}-journal`;
    // Made before the deployment had its group: 0600, and PERSIST keeps the journal it made.
    const first = new TokenDatabaseWriter(file);
    first.put([row('a@pve!one')]);
    first.close();
    assert.equal(statSync(journal).mode & 0o777, 0o600);
    // 0600: the group cannot read it, so its readers take it for hot and fail; 0666: anyone
    // could write a hot journal for the writer to roll back.
    for (const kept of [0o600, 0o666]) {
      chmodSync(journal, kept);
      const writer = new TokenDatabaseWriter(file, { gid: NOBODY });
      writer.put([row('a@pve!one', { comment: `kept ${kept.toString(8)}` })]);
      const st = statSync(journal);
      assert.deepEqual([st.mode & 0o777, st.uid, st.gid], [0o640, 0, NOBODY], kept.toString(8));
      const out = await runChild(
        nobody.file('dist/test/fixtures/token-db-child.js'),
        ['read', file, 'a@pve!one'],
        { prefix: AS_NOBODY },
      );
      assert.equal(out.code, 0, out.stderr);
      const result = JSON.parse(out.stdout);
      assert.equal(result.enable, true);
      assert.equal(result.attempts.journal, 'EACCES');
      assert.equal(writer.get('a@pve!one')?.comment, `kept ${kept.toString(8)}`);
      assert.equal(writer.integrityOk(), true);
      writer.close();
    }
  });
});

describe("token store and the daemons' verify across processes", { skip }, () => {
  it('once a revoke, a disable or a bulk revoke returned, the other process refuses at once', async () => {
    const { dir, store, pool } = await databaseDeployment(['a@pve', 'b@pve', 'c@pve']);
    const secrets = new Map<string, string>();
    const rows: TokenRow[] = [];
    for (const user of ['a@pve', 'b@pve', 'c@pve']) {
      for (let i = 0; i < 5; i++) {
        const id = `${user}!t${i}`;
        const secret = `secret-${id}`;
        secrets.set(id, secret);
        rows.push(row(id, { hash: await pool.hash(secret) }));
      }
    }
    await store.put(rows);
    const child = startChild(fixture('database-worker-child'), [dir]);
    after(() => child.process.kill('SIGKILL'));
    assert.equal(await child.nextLine(), 'ready', child.stderr());
    const verify = async (id: string, secret = secrets.get(id) as string) => {
      child.process.stdin?.write(`${JSON.stringify({ id, secret })}\n`);
      return JSON.parse(await child.nextLine()) as { ok: boolean; hits: number };
    };
    for (const id of secrets.keys()) assert.equal((await verify(id)).ok, true, child.stderr());
    const cached = await verify('a@pve!t0');
    assert.equal(cached.ok, true);
    assert.equal((await verify('a@pve!t0')).hits, cached.hits + 1, 'answered from the cache');
    assert.equal((await verify('a@pve!t0', 'wrong')).ok, false);

    assert.deepEqual((await store.remove(['a@pve!t0'])).result, ['a@pve!t0']);
    assert.equal((await verify('a@pve!t0')).ok, false, 'deleted: refused on the next verify');
    assert.equal((await verify('a@pve!t1')).ok, true, 'the others stay');

    await store.put([{ ...(store.get('a@pve!t1') as TokenRow), enable: false }]);
    assert.equal((await verify('a@pve!t1')).ok, false, 'disabled: refused');

    const newHash = await pool.hash('rotated');
    await store.setHash('a@pve!t2', newHash);
    assert.equal((await verify('a@pve!t2')).ok, false, 'rotated: the old secret refused');
    assert.equal((await verify('a@pve!t2', 'rotated')).ok, true);

    const before = (await verify('c@pve!t4')).hits;
    const bulk = await store.revokeWhere({ users: ['b@pve', 'c@pve'] });
    assert.equal(bulk.result.length, 10);
    for (const id of bulk.result) assert.equal((await verify(id)).ok, false, id);
    const untouched = await verify('a@pve!t3');
    assert.equal(untouched.ok, true);
    assert.equal(
      untouched.hits,
      before + 1,
      'an untouched token stays cached through the bulk revoke',
    );
  });
});

describe('database secrets', { skip }, () => {
  async function setup(changesKept?: number) {
    const { file, page, pool } = withPageAndPool();
    const writer = new TokenDatabaseWriter(file, changesKept === undefined ? {} : { changesKept });
    const secret = 'the-secret';
    const hash = await pool.hash(secret);
    writer.put(Array.from({ length: 10 }, (_, i) => row(`a@pve!t${i}`, { hash })));
    const clock = { ms: 0, s: 2_000_000_000 };
    const reader = new TokenDatabaseReader(file);
    const secrets = new DatabaseSecrets({
      database: reader,
      page,
      pool,
      ttlMs: 1000,
      clock: () => clock.ms,
    });
    return { file, reader, writer, secrets, page, pool, clock, secret };
  }

  it('a change a killed writer committed but never announced is seen within one TTL', async () => {
    const { writer, secrets, clock, secret } = await setup();
    assert.equal(await secrets.verifySecret('a@pve!t0', secret), true);
    assert.equal(secrets.verifyCached('a@pve!t0', secret), true);
    writer.remove(['a@pve!t0']); // committed, no bump: as if the writer died before it
    assert.equal(secrets.verifyCached('a@pve!t0', secret), true, 'not announced yet');
    clock.ms += 1000;
    assert.equal(secrets.verifyCached('a@pve!t0', secret), undefined);
    assert.equal(await secrets.verifySecret('a@pve!t0', secret), false);
    assert.equal(await secrets.verifySecret('a@pve!t1', secret), true);
    writer.close();
  });

  it('an expired token is refused from the cache (the Authenticator over StoredTokens)', async () => {
    const { file, reader, writer, secrets, page, clock, secret } = await setup();
    const userCfg = path.join(path.dirname(file), 'user.cfg');
    writeFileSync(userCfg, 'user:a@pve:1:0::::::\n', { mode: 0o640 });
    const rows: TokenRows = {
      generation: () => page.load(Slot.TOKEN_SHADOW),
      rowsOf: (userid) => reader.rowsOf(userid),
      usersWithTokensMatching: (filter) => reader.usersWithTokensMatching(filter),
    };
    const users = userConfigStoreForTests({
      path: userCfg,
      page,
      ttlMs: 1000,
      clock: () => clock.ms,
      attachTokens: (config) => attachStoredTokens(config, rows),
    });
    const auth = new Authenticator({ users, shadow: secrets, now: () => clock.s });
    const header = (id: string) => `PVEAPIToken=${id}=${secret}`;
    writer.put([{ ...(writer.get('a@pve!t1') as TokenRow), expire: clock.s + 10 }]);
    page.increment(Slot.TOKEN_SHADOW);
    assert.equal((await auth.authenticate(header('a@pve!t1'))).authid, 'a@pve!t1');
    assert.equal((await auth.authenticate(header('a@pve!t2'))).authid, 'a@pve!t2');
    assert.equal(auth.authenticateCached(header('a@pve!t1'))?.authid, 'a@pve!t1');
    assert.equal(secrets.verifyCached('a@pve!t1', secret), true, 'the secret is cached');
    clock.s += 10;
    assert.throws(
      () => auth.authenticateCached(header('a@pve!t1')),
      AuthenticationError,
      'expired',
    );
    await assert.rejects(auth.authenticate(header('a@pve!t1')), AuthenticationError);
    assert.equal(auth.authenticateCached(header('a@pve!t2'))?.authid, 'a@pve!t2', 'no expiry');
    // Disabled in the database: refused at once, by the fast path and the slow one.
    writer.put([{ ...(writer.get('a@pve!t2') as TokenRow), enable: false }]);
    page.increment(Slot.TOKEN_SHADOW);
    let fromCache: Identity | undefined;
    try {
      fromCache = auth.authenticateCached(header('a@pve!t2'));
    } catch (error) {
      if (!(error instanceof AuthenticationError)) throw error;
    }
    assert.equal(fromCache, undefined, 'disabled: not accepted from the cache');
    await assert.rejects(auth.authenticate(header('a@pve!t2')), AuthenticationError);
    writer.close();
  });

  it("a change drops just the changed ids; a reader behind the kept log drops everything ('too-old')", async () => {
    const { writer, secrets, page, secret } = await setup(3);
    assert.equal(await secrets.verifySecret('a@pve!t1', secret), true);
    assert.equal(await secrets.verifySecret('a@pve!t2', secret), true);
    writer.remove(['a@pve!t1']);
    page.increment(Slot.TOKEN_SHADOW);
    assert.equal(secrets.verifyCached('a@pve!t1', secret), undefined, 'changed: dropped');
    assert.equal(secrets.verifyCached('a@pve!t2', secret), true, 'unchanged: kept');
    assert.equal(secrets.stats().entries, 1);
    // Five changes with three kept: the log no longer reaches back to the reader's sequence.
    for (let i = 3; i < 8; i++) writer.remove([`a@pve!t${i}`]);
    page.increment(Slot.TOKEN_SHADOW);
    const slow = secrets.stats().slowVerifies;
    assert.equal(secrets.verifyCached('a@pve!t2', secret), undefined, 'unchanged, yet dropped');
    assert.equal(secrets.stats().entries, 0, 'the whole cache started afresh');
    assert.equal(await secrets.verifySecret('a@pve!t2', secret), true);
    assert.equal(secrets.stats().slowVerifies, slow + 1, 'verified again by its hash');
    assert.equal(secrets.verifyCached('a@pve!t2', secret), true, 'and cached again');
    assert.equal(await secrets.verifySecret('a@pve!t3', secret), false);
    writer.close();
  });
});

describe('token database and the PVE files', { skip }, () => {
  it('a PVE user.cfg and a token.shadow go in, and come out as the same files', () => {
    const pve = importPveUserConfig(
      readFileSync(new URL('../../test/fixtures/cli-pve-user.cfg', import.meta.url), 'utf8'),
    );
    const shadow = new Map([['joe@pve!ci', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA']]);
    const { file, writer } = database();
    writer.put(tokenRowsOf(pve.config, shadow, 1_700_000_000));
    assert.equal(writer.get('joe@pve!ro')?.expire, 1893456000);
    assert.equal(writer.get('joe@pve!ro')?.hash, '', 'a token without a secret has none');
    assert.equal(writer.get('joe@pve!ci')?.privsep, true);
    const reader = new TokenDatabaseReader(file);
    const out = filesOf(pve.config, writer.rows());
    assert.deepEqual(out.orphans, []);
    assert.equal(writeUserConfig(out.config), pve.text, 'user.cfg written back unchanged');
    assert.deepEqual(out.shadow, shadow);
    // A token revoked in the database is gone from the exported files.
    writer.remove(['joe@pve!ci']);
    const after = filesOf(parseUserConfig(pve.text).config, writer.rows());
    assert.equal(after.config.users.get('joe@pve')?.tokens.has('ci'), false);
    assert.equal(after.shadow.size, 0);
    reader.close();
    writer.close();
  });

  it("a token's policy (allowed-ips, a rotation's grace and previous hash) goes in and comes out", () => {
    const config = parseUserConfig('user:joe@pve:1:0:::::\n').config;
    addToken(config, 'joe@pve!fenced', { allowedIps: '2001:db8::/32,10.0.0.0/8' });
    setGrace(config, 'joe@pve!fenced', 1_900_000_000);
    const shadow = new Map([
      ['joe@pve!fenced', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$bmV3'],
      [previousSecretId('joe@pve!fenced'), '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$b2xk'],
    ]);
    const { writer } = database();
    writer.put(tokenRowsOf(config, shadow, 1_700_000_000));
    const row = writer.get('joe@pve!fenced');
    assert.equal(row?.allowedIps, '2001:db8::/32,10.0.0.0/8');
    assert.equal(row?.graceUntil, 1_900_000_000);
    assert.equal(row?.previousHash, shadow.get(previousSecretId('joe@pve!fenced')));
    const out = filesOf(parseUserConfig('user:joe@pve:1:0:::::\n').config, writer.rows());
    assert.equal(writeUserConfig(out.config), writeUserConfig(config));
    assert.deepEqual(out.shadow, shadow);
    writer.close();
  });
});
