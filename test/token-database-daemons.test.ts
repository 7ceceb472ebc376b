/**
 * The daemons with the tokens in the token database (issue 25), over real
 * HTTP with two API workers: a deployment's tokens are moved from the files
 * by `tokenctl database migrate`; then every change of a token (create,
 * edit, rotation with and without a grace, delete, bulk revoke) is one
 * transaction of access.db, user.cfg keeps no token line, and once a revoke
 * returns no worker accepts the old secret. Then the same under the units'
 * restrictions (deploy/): the database migrated by root's tokenctl in a
 * config directory laid out as tmpfiles.d makes it, the manager bounded to
 * its unit's capabilities, the API's workers as nobody in the shared group,
 * which reads access.db and its journal and can write neither.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Api, call, type Deployment, pveHeader, startDeployment } from '../harness/daemons.js';
import { addTokenIn, tokenctlIn } from '../harness/tokenctl.js';
import { TokenDatabaseReader, tokenDatabaseAvailable } from '../src/store/token-database.js';
import { runChild } from './helpers/children.js';
import { NOBODY } from './helpers/nobody.js';
import { tempDir } from './helpers/tmp.js';
import { unitLayout } from './helpers/units.js';

const skip = tokenDatabaseAvailable() ? false : `node:sqlite is not in Node ${process.version}`;
/** Enough requests, each on a new connection, to reach both workers. */
const ROUNDS = 6;

/**
 * The statuses of ROUNDS requests. Each check comes from an address of its own,
 * so that the refusals the tests expect never add up to a penalty (429) for one source.
 */
let sources = 10;
async function statuses(api: Api, auth: string): Promise<number[]> {
  const localAddress = `127.0.0.${sources++}`;
  const out: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    out.push((await call(api, 'GET', '/version', { auth, localAddress })).status);
  }
  return out;
}

const all = (status: number) => Array<number>(ROUNDS).fill(status);

describe('the daemons on the token database', { skip }, () => {
  const dir = tempDir();
  const configDir = path.join(dir, 'etc');
  let deployment: Deployment;
  let api: Api;
  let admin: string;
  let before1: string;
  let separated: string;

  before(async () => {
    assert.equal((await tokenctlIn(dir, 'user', 'add', 'joe@pve')).code, 0);
    admin = (await addTokenIn(dir, 'root@pam!admin', '--privsep', '0')).header;
    before1 = (await addTokenIn(dir, 'joe@pve!before', '--comment', 'made in the files')).header;
    // A separated token with its own ACL entry (it gets what both it and its user have): the
    // entry must survive the move.
    separated = (await addTokenIn(dir, 'joe@pve!sep')).header;
    const acl = ['acl', 'set', '/', '--roles', 'PVEAuditor'];
    assert.equal((await tokenctlIn(dir, ...acl, '--users', 'joe@pve')).code, 0);
    assert.equal((await tokenctlIn(dir, ...acl, '--tokens', 'joe@pve!sep')).code, 0);
    const migrated = await tokenctlIn(dir, '--output', 'json', 'database', 'migrate');
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.deepEqual(JSON.parse(migrated.stdout).tokens, 3);
    deployment = await startDeployment(dir);
    api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1']);
  });

  after(async () => {
    await deployment?.stop();
  });

  it('moved the files: access.db holds the tokens, user.cfg no token line, token.shadow is gone', async () => {
    const userCfg = readFileSync(path.join(configDir, 'user.cfg'), 'utf8');
    assert.doesNotMatch(userCfg, /^token:/m);
    assert.match(userCfg, /^user:joe@pve:/m);
    assert.match(userCfg, /^acl:1:\/:joe@pve!sep:PVEAuditor:$/m, "the token's ACL entry stays");
    assert.equal(existsSync(path.join(configDir, 'token.shadow')), false);
    const reader = new TokenDatabaseReader(path.join(configDir, 'access.db'));
    try {
      assert.equal(reader.lookup('joe@pve!before')?.comment, 'made in the files');
      assert.match(reader.lookup('root@pam!admin')?.hash ?? '', /^\$argon2id\$/);
    } finally {
      reader.close();
    }
    assert.deepEqual(await statuses(api, admin), all(200), 'a migrated secret works');
    assert.deepEqual(await statuses(api, before1), all(200));
    // The separated token has what its ACL entry gives it; one without an entry has nothing.
    const own = await call(api, 'GET', '/access/permissions', { auth: separated });
    assert.equal(own.status, 200, own.raw);
    const root = (own.body.data as Record<string, Record<string, number>>)['/'] ?? {};
    assert.equal(root['Sys.Audit'], 1, own.raw);
    assert.equal(root['Sys.Modify'], undefined, own.raw);
    const none = await call(api, 'GET', '/access/permissions', { auth: before1 });
    assert.deepEqual(none.body.data, {}, none.raw);
  });

  it('create, edit and delete through the API; a deleted token is refused by every worker at once', async () => {
    const created = await call(api, 'POST', '/access/users/joe@pve/token/ci', {
      auth: admin,
      form: { privsep: 0, comment: 'ci runner' },
    });
    assert.equal(created.status, 200, created.raw);
    const auth = pveHeader('joe@pve!ci', (created.body.data as { value: string }).value);
    assert.deepEqual(await statuses(api, auth), all(200));

    const listed = await call(api, 'GET', '/access/users/joe@pve/token', { auth: admin });
    assert.deepEqual(
      (listed.body.data as Array<{ tokenid: string }>).map((t) => t.tokenid).sort(),
      ['before', 'ci', 'sep'],
    );
    const disabled = await call(api, 'PUT', '/access/users/joe@pve/token/ci', {
      auth: admin,
      form: { enable: 0 },
    });
    assert.equal(disabled.status, 200, disabled.raw);
    assert.deepEqual(await statuses(api, auth), all(401), 'disabled: refused at once');
    await call(api, 'PUT', '/access/users/joe@pve/token/ci', { auth: admin, form: { enable: 1 } });
    assert.deepEqual(await statuses(api, auth), all(200));

    const deleted = await call(api, 'DELETE', '/access/users/joe@pve/token/ci', { auth: admin });
    assert.equal(deleted.status, 200, deleted.raw);
    assert.deepEqual(await statuses(api, auth), all(401), 'deleted: refused at once');
    assert.doesNotMatch(readFileSync(path.join(configDir, 'user.cfg'), 'utf8'), /^token:/m);
  });

  it('a rotation with a grace keeps both secrets; the next rotation without one ends the old at once', async () => {
    const made = await call(api, 'POST', '/access/users/joe@pve/token/rot', {
      auth: admin,
      form: { privsep: 0 },
    });
    const first = pveHeader('joe@pve!rot', (made.body.data as { value: string }).value);
    const rotated = await call(api, 'PUT', '/access/users/joe@pve/token/rot', {
      auth: admin,
      form: { regenerate: 1, grace: 3600 },
    });
    assert.equal(rotated.status, 200, rotated.raw);
    const second = pveHeader('joe@pve!rot', (rotated.body.data as { value: string }).value);
    assert.deepEqual(await statuses(api, first), all(200), 'the previous secret, in its grace');
    assert.deepEqual(await statuses(api, second), all(200));
    const again = await call(api, 'PUT', '/access/users/joe@pve/token/rot', {
      auth: admin,
      form: { regenerate: 1 },
    });
    const third = pveHeader('joe@pve!rot', (again.body.data as { value: string }).value);
    assert.deepEqual(await statuses(api, first), all(401), 'the grace ended with the rotation');
    assert.deepEqual(await statuses(api, second), all(401));
    assert.deepEqual(await statuses(api, third), all(200));
  });

  it('a bulk revoke of a user takes every token of it in one change', async () => {
    const made = await call(api, 'POST', '/access/users/joe@pve/token/bulk', {
      auth: admin,
      form: { privsep: 0 },
    });
    const bulk = pveHeader('joe@pve!bulk', (made.body.data as { value: string }).value);
    assert.deepEqual(await statuses(api, bulk), all(200));
    const revoked = await call(api, 'POST', '/access/tokens/revoke', {
      auth: admin,
      form: { users: 'joe@pve' },
    });
    assert.equal(revoked.status, 200, revoked.raw);
    assert.deepEqual([...(revoked.body.data as { revoked: string[] }).revoked].sort(), [
      'joe@pve!before',
      'joe@pve!bulk',
      'joe@pve!rot',
      'joe@pve!sep',
    ]);
    assert.deepEqual(await statuses(api, bulk), all(401));
    assert.deepEqual(await statuses(api, before1), all(401));
    assert.deepEqual(await statuses(api, separated), all(401));
    assert.deepEqual(await statuses(api, admin), all(200), 'another user keeps its token');
    assert.doesNotMatch(
      readFileSync(path.join(configDir, 'user.cfg'), 'utf8'),
      /joe@pve!sep/,
      "the revoked token's ACL entry went with it",
    );
  });

  it('tokenctl reads and changes the same database while the daemons run', async () => {
    const { header } = await addTokenIn(dir, 'joe@pve!cli', '--privsep', '0');
    assert.deepEqual(await statuses(api, header), all(200));
    const listed = await tokenctlIn(dir, '--output', 'json', 'token', 'list', 'joe@pve');
    const rows = JSON.parse(listed.stdout) as Array<{ tokenid: string; 'has-secret': boolean }>;
    assert.deepEqual(
      rows.map((r) => [r.tokenid, r['has-secret']]),
      [['cli', true]],
    );
    assert.equal((await tokenctlIn(dir, 'token', 'remove', 'joe@pve!cli')).code, 0);
    assert.deepEqual(await statuses(api, header), all(401));
  });

  it("a token's policy lives in the database too: allowed-ips enforced by every worker, left out of PVE's format with a warning", async () => {
    const made = await call(api, 'POST', '/access/users/root@pam/token/fenced', {
      auth: admin,
      form: { privsep: 0, 'allowed-ips': '127.0.0.2' },
    });
    assert.equal(made.status, 200, made.raw);
    const auth = pveHeader('root@pam!fenced', (made.body.data as { value: string }).value);
    const from = async (localAddress: string) => {
      const out: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        out.push((await call(api, 'GET', '/version', { auth, localAddress })).status);
      }
      return out;
    };
    assert.deepEqual(await from('127.0.0.2'), all(200));
    assert.deepEqual(await from('127.0.0.3'), all(401), 'refused from elsewhere');
    const reader = new TokenDatabaseReader(path.join(configDir, 'access.db'));
    try {
      assert.equal(reader.lookup('root@pam!fenced')?.allowedIps, '127.0.0.2');
    } finally {
      reader.close();
    }
    const exported = await tokenctlIn(dir, 'export-pve', path.join(dir, 'pve-user.cfg'));
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stderr, /root@pam!fenced: allowed-ips 127\.0\.0\.2 left out/);
    const pve = readFileSync(path.join(dir, 'pve-user.cfg'), 'utf8');
    assert.match(pve, /^token:root@pam!fenced:/m);
    assert.doesNotMatch(pve, /127\.0\.0\.2/);
  });
});

/** Mode (permission bits), owner and group of `file`. */
function ownership(file: string): { mode: string; uid: number; gid: number } {
  const st = statSync(file);
  return { mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid };
}

/** The Uid:/Gid: lines of /proc/PID/status (real, effective, saved, fs) and its effective capabilities. */
function credentials(pid: number): { uid: string; gid: string; capEff: string } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s*(.*)$`, 'm'))?.[1] ?? '';
  return { uid: field('Uid'), gid: field('Gid'), capEff: field('CapEff') };
}

describe("the daemons on the token database under the units' restrictions", { skip }, () => {
  const running: Deployment[] = [];
  after(async () => {
    for (const deployment of running) await deployment.stop();
  });

  it('migrated by root, served by the manager under its unit and the API as nobody: tokens, revokes and the files hold', async (t) => {
    const layout = unitLayout();
    if (typeof layout === 'string') return t.skip(layout);
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const configDir = path.join(dir, 'etc');
    const database = path.join(configDir, 'access.db');
    // The config directory as deploy/tmpfiles.d makes it; tokenctl takes its group from it.
    mkdirSync(configDir, { mode: 0o750 });
    chmodSync(configDir, 0o750);
    chownSync(configDir, 0, layout.gid);

    assert.equal((await tokenctlIn(dir, 'user', 'add', 'joe@pve')).code, 0);
    const admin = (await addTokenIn(dir, 'root@pam!admin', '--privsep', '0')).header;
    const joe = (await addTokenIn(dir, 'joe@pve!files', '--privsep', '0')).header;
    const off = (await addTokenIn(dir, 'joe@pve!off', '--privsep', '0', '--disabled')).header;
    const migrated = await tokenctlIn(dir, '--output', 'json', 'database', 'migrate');
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.equal(JSON.parse(migrated.stdout).tokens, 3);
    // What the units need: root writes, the API's group reads, nobody else.
    assert.deepEqual(ownership(database), { mode: '640', uid: 0, gid: layout.gid });
    assert.deepEqual(ownership(configDir), { mode: '750', uid: 0, gid: layout.gid });
    assert.deepEqual(ownership(path.join(configDir, 'user.cfg')), {
      mode: '640',
      uid: 0,
      gid: layout.gid,
    });

    const deployment = await startDeployment(dir, layout.harness);
    running.push(deployment);
    const api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1']);
    // The layout is what runs: workers as nobody in the shared group without capabilities.
    assert.equal(api.workerPids.length, 2);
    for (const pid of [api.primaryPid, ...api.workerPids]) {
      const seen = credentials(pid);
      assert.deepEqual(seen.uid.split(/\s+/).map(Number), Array(4).fill(NOBODY), `pid ${pid}`);
      assert.deepEqual(seen.gid.split(/\s+/).map(Number), Array(4).fill(layout.gid), `pid ${pid}`);
      assert.equal(BigInt(`0x${seen.capEff}`), 0n, `pid ${pid} has no capability`);
    }

    assert.deepEqual(await statuses(api, admin), all(200), 'migrated: every worker accepts it');
    assert.deepEqual(await statuses(api, joe), all(200));
    assert.deepEqual(await statuses(api, off), all(401), 'migrated disabled: refused');

    const created = await call(api, 'POST', '/access/users/joe@pve/token/api', {
      auth: admin,
      form: { privsep: 0 },
    });
    assert.equal(created.status, 200, created.raw);
    const made = pveHeader('joe@pve!api', (created.body.data as { value: string }).value);
    assert.deepEqual(await statuses(api, made), all(200), 'made by the manager under its unit');

    const disabled = await call(api, 'PUT', '/access/users/joe@pve/token/api', {
      auth: admin,
      form: { enable: 0 },
    });
    assert.equal(disabled.status, 200, disabled.raw);
    assert.deepEqual(await statuses(api, made), all(401), 'disabled: refused at once');

    const deleted = await call(api, 'DELETE', '/access/users/joe@pve/token/files', { auth: admin });
    assert.equal(deleted.status, 200, deleted.raw);
    assert.deepEqual(await statuses(api, joe), all(401), 'deleted: no worker accepts it');
    assert.deepEqual(await statuses(api, admin), all(200), 'the others stay');

    // The manager's commits left the PERSIST journal: root's, readable by the group as the
    // database is (a reader that cannot open it must take it for hot), writable by nobody else.
    assert.deepEqual(ownership(`${database}-journal`), { mode: '640', uid: 0, gid: layout.gid });
    assert.deepEqual(ownership(database), { mode: '640', uid: 0, gid: layout.gid });

    // As the API's user: the database reads, and neither it nor a journal can be written.
    const copy = layout.harness.packageRoot as string;
    const probe = await runChild(
      path.join(copy, 'dist', 'test', 'fixtures', 'token-db-child.js'),
      ['read', database, 'root@pam!admin'],
      { prefix: layout.asApiUser },
    );
    assert.equal(probe.code, 0, probe.stderr);
    const result = JSON.parse(probe.stdout) as {
      enable: boolean;
      attempts: Record<string, string>;
    };
    assert.equal(result.enable, true);
    assert.notEqual(result.attempts.sqlite, 'wrote');
    assert.equal(result.attempts.file, 'EACCES');
    assert.equal(result.attempts.journal, 'EACCES');
    assert.deepEqual(await statuses(api, admin), all(200), 'and the store is whole');
    const doctor = await tokenctlIn(dir, '--output', 'json', 'doctor');
    assert.equal(doctor.code, 0, doctor.stdout);
    const checks = JSON.parse(doctor.stdout) as Array<{
      status: string;
      name: string;
      detail: string;
    }>;
    assert.deepEqual(
      checks.filter((c) => c.status !== 'OK'),
      [],
      'doctor finds the deployment as the units need it',
    );
    const journalCheck = checks.find((c) => c.name === 'token database journal');
    assert.match(journalCheck?.detail ?? '', /^0640 root:/);
  });

  it('migrated before the deployment had its group: doctor --fix gives the group the database and its journal, and the API reads them', async (t) => {
    const layout = unitLayout();
    if (typeof layout === 'string') return t.skip(layout);
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const configDir = path.join(dir, 'etc');
    const database = path.join(configDir, 'access.db');
    // Root's tokenctl before tmpfiles.d gave the directory its group: every file root's alone.
    const admin = (await addTokenIn(dir, 'root@pam!admin', '--privsep', '0')).header;
    const migrated = await tokenctlIn(dir, 'database', 'migrate');
    assert.equal(migrated.code, 0, migrated.stderr);
    const later = (await addTokenIn(dir, 'root@pam!later', '--privsep', '0')).header;
    assert.deepEqual(ownership(database), { mode: '600', uid: 0, gid: 0 });
    assert.deepEqual(ownership(`${database}-journal`), { mode: '600', uid: 0, gid: 0 });

    const fixed = await tokenctlIn(dir, '--group', String(layout.gid), 'doctor', '--fix');
    assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
    for (const file of [database, `${database}-journal`, path.join(configDir, 'user.cfg')]) {
      assert.deepEqual(ownership(file), { mode: '640', uid: 0, gid: layout.gid }, file);
    }
    assert.deepEqual(ownership(configDir), { mode: '750', uid: 0, gid: layout.gid });

    const deployment = await startDeployment(dir, layout.harness);
    running.push(deployment);
    const api = await deployment.startApi('api', ['--workers', '2', '--hash-threads', '1']);
    assert.deepEqual(await statuses(api, admin), all(200));
    assert.deepEqual(await statuses(api, later), all(200), 'a commit after the move, journal kept');
    const deleted = await call(api, 'DELETE', '/access/users/root@pam/token/later', {
      auth: admin,
    });
    assert.equal(deleted.status, 200, deleted.raw);
    assert.deepEqual(await statuses(api, later), all(401));
  });
});
