/**
 * Multi-host mode on hosts whose tokens live in their token database (issue
 * 25 item 3), with a real 3-member etcd on loopback and real managers and
 * APIs: two hosts on `access.db` and one on the files share one store. A
 * change made through any of them holds on every host once it returns (a
 * revoke refused everywhere, a rotation's grace kept everywhere), a user's
 * removal takes its tokens out of every database, a host that joins later
 * copies the store's tokens into its own database, and a host cut off from
 * the store (its manager dead) refuses every token, cached ones too.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Api, call, type Deployment, pveHeader } from '../harness/daemons.js';
import { type EtcdCluster, etcdUnavailable, startEtcdCluster } from '../harness/etcd.js';
import { addTokenIn, startClusterHosts, tokenctlIn } from '../harness/tokenctl.js';
import { createEtcdClient } from '../src/cluster/client.js';
import { ClusterKeys } from '../src/cluster/keys.js';
import { resolveClusterSettings } from '../src/cluster/settings.js';
import { EtcdStore } from '../src/cluster/store.js';
import { resyncPages } from '../src/cluster/token-replica.js';
import {
  TokenDatabaseReader,
  TokenDatabaseWriter,
  tokenDatabaseAvailable,
} from '../src/store/token-database.js';
import { tempDir } from './helpers/tmp.js';

const noEtcd = etcdUnavailable();
const skip =
  noEtcd ?? (tokenDatabaseAvailable() ? false : 'node:sqlite is not in this Node version');
if (skip) process.stdout.write(`# token database cluster tests skipped: ${skip}\n`);

/** Every host's answer to one request with `auth`. */
async function statuses(apis: Api[], auth: string): Promise<number[]> {
  const answers: number[] = [];
  for (const api of apis) answers.push((await call(api, 'GET', '/version', { auth })).status);
  return answers;
}

/** The row of `tokenid` in the token database under `dir`. */
function rowIn(dir: string, tokenid: string) {
  const reader = new TokenDatabaseReader(path.join(dir, 'etc', 'access.db'));
  try {
    return reader.lookup(tokenid);
  } finally {
    reader.close();
  }
}

describe('multi-host mode on the token database', { skip }, () => {
  let etcd: EtcdCluster;
  const running: Deployment[] = [];
  const dirA = tempDir('token-shadow-dbcluster-a-');
  const dirB = tempDir('token-shadow-dbcluster-b-');
  const dirC = tempDir('token-shadow-dbcluster-c-');
  const dirD = tempDir('token-shadow-dbcluster-d-');
  const apis: Api[] = [];
  let admin: string;
  let early: string;

  before(async () => {
    etcd = await startEtcdCluster();
    // Made on A before the cluster: it moves from A's database into the store.
    assert.equal((await tokenctlIn(dirA, 'user', 'add', 'joe@pve')).code, 0);
    early = (await addTokenIn(dirA, 'joe@pve!early', '--comment', 'before the cluster')).header;
    const hosts = await startClusterHosts(
      etcd.endpoints,
      'dbcluster',
      [
        { host: 'a', dir: dirA, tokenDatabase: true },
        { host: 'b', dir: dirB, tokenDatabase: true },
        { host: 'c', dir: dirC },
      ],
      running,
    );
    const args = ['--plain-http', '--workers', '2', '--hash-threads', '1'];
    for (const [i, host] of hosts.entries()) apis.push(await host.startApi(`api${i}`, args));
    admin = (await addTokenIn(dirA, 'root@pam!admin', '--privsep', '0')).header;
  });

  after(async () => {
    for (const d of running) await d.stop();
    await etcd?.stop();
  });

  it("moved A's tokens into the store; B copied them into its database, C into its files", async () => {
    assert.deepEqual(await statuses(apis, early), [200, 200, 200]);
    assert.equal(rowIn(dirB, 'joe@pve!early')?.comment, 'before the cluster');
    assert.match(rowIn(dirB, 'joe@pve!early')?.hash ?? '', /^\$argon2id\$/);
    assert.doesNotMatch(readFileSync(path.join(dirB, 'etc', 'user.cfg'), 'utf8'), /^token:/m);
    assert.match(
      readFileSync(path.join(dirC, 'etc', 'user.cfg'), 'utf8'),
      /^token:joe@pve!early:/m,
    );
    assert.equal(existsSync(path.join(dirC, 'etc', 'access.db')), false);
  });

  it('a token made on B works on every host; revoked on A, no host accepts it once that returns', async () => {
    const made = await call(apis[1] as Api, 'POST', '/access/users/joe@pve/token/made-on-b', {
      auth: admin,
      form: { comment: 'from b' },
    });
    assert.equal(made.status, 200, made.raw);
    const auth = pveHeader('joe@pve!made-on-b', (made.body.data as { value: string }).value);
    assert.deepEqual(await statuses(apis, auth), [200, 200, 200]);
    assert.equal(rowIn(dirA, 'joe@pve!made-on-b')?.comment, 'from b');
    const revoked = await call(apis[0] as Api, 'DELETE', '/access/users/joe@pve/token/made-on-b', {
      auth: admin,
    });
    assert.equal(revoked.status, 200, revoked.raw);
    assert.deepEqual(await statuses(apis, auth), [401, 401, 401]);
    assert.equal(rowIn(dirB, 'joe@pve!made-on-b'), undefined);
  });

  it('a rotation with a grace made on the files host keeps both secrets on the database hosts', async () => {
    const made = await call(apis[2] as Api, 'POST', '/access/users/joe@pve/token/rot', {
      auth: admin,
      form: {},
    });
    assert.equal(made.status, 200, made.raw);
    const first = pveHeader('joe@pve!rot', (made.body.data as { value: string }).value);
    const rotated = await call(apis[2] as Api, 'PUT', '/access/users/joe@pve/token/rot', {
      auth: admin,
      form: { regenerate: 1, grace: 3600 },
    });
    assert.equal(rotated.status, 200, rotated.raw);
    const second = pveHeader('joe@pve!rot', (rotated.body.data as { value: string }).value);
    assert.deepEqual(await statuses(apis, first), [200, 200, 200], 'the old one, in its grace');
    assert.deepEqual(await statuses(apis, second), [200, 200, 200]);
    assert.match(rowIn(dirB, 'joe@pve!rot')?.previousHash ?? '', /^\$argon2id\$/);
    // Disabled through a database host: refused by all, the grace's secret too.
    const disabled = await call(apis[1] as Api, 'PUT', '/access/users/joe@pve/token/rot', {
      auth: admin,
      form: { enable: 0 },
    });
    assert.equal(disabled.status, 200, disabled.raw);
    assert.deepEqual(await statuses(apis, second), [401, 401, 401]);
    assert.deepEqual(await statuses(apis, first), [401, 401, 401]);
  });

  it("a token's ACL entry and a user's removal reach every host", async () => {
    assert.equal((await tokenctlIn(dirB, 'user', 'add', 'ann@pve')).code, 0);
    const sep = (await addTokenIn(dirB, 'ann@pve!sep')).header;
    const acl = ['acl', 'set', '/', '--roles', 'PVEAuditor'];
    assert.equal((await tokenctlIn(dirA, ...acl, '--users', 'ann@pve')).code, 0);
    assert.equal((await tokenctlIn(dirA, ...acl, '--tokens', 'ann@pve!sep')).code, 0);
    const cfgB = () => readFileSync(path.join(dirB, 'etc', 'user.cfg'), 'utf8');
    assert.match(cfgB(), /^acl:1:\/:.*ann@pve!sep.*:PVEAuditor:$/m);
    assert.deepEqual(await statuses(apis, sep), [200, 200, 200]);
    const removed = await call(apis[0] as Api, 'DELETE', '/access/users/ann@pve', { auth: admin });
    assert.equal(removed.status, 200, removed.raw);
    assert.deepEqual(await statuses(apis, sep), [401, 401, 401]);
    assert.equal(rowIn(dirA, 'ann@pve!sep'), undefined, 'its tokens left the database');
    assert.equal(rowIn(dirB, 'ann@pve!sep'), undefined);
    assert.doesNotMatch(cfgB(), /ann@pve/, 'and its ACL entries user.cfg');
  });

  it('a host joining later copies every token of the store into its database', async () => {
    const [d] = await startClusterHosts(
      etcd.endpoints,
      'dbcluster',
      [{ host: 'd', dir: dirD, tokenDatabase: true, join: true }],
      running,
    );
    const api = await (d as Deployment).startApi('apiD', ['--plain-http', '--workers', '1']);
    assert.deepEqual(await statuses([api], early), [200]);
    assert.deepEqual(await statuses([api], admin), [200]);
    assert.equal(rowIn(dirD, 'joe@pve!early')?.comment, 'before the cluster');
    assert.match(rowIn(dirD, 'joe@pve!rot')?.previousHash ?? '', /^\$argon2id\$/);
    assert.equal(rowIn(dirD, 'joe@pve!made-on-b'), undefined, 'a revoked token is not copied');
  });

  it('a host whose manager died fences itself: its workers refuse every token (503), the others serve', async () => {
    const b = running[1] as Deployment;
    assert.deepEqual(await statuses([apis[1] as Api], early), [200], 'cached on B first');
    b.manager.kill('SIGKILL');
    // No agent renews B's fence: within the lease (2 s) and its margin every answer is a 503.
    const deadline = Date.now() + 15_000;
    let answer = 200;
    while (answer !== 503 && Date.now() < deadline) {
      answer = (await call(apis[1] as Api, 'GET', '/version', { auth: early })).status;
    }
    assert.equal(answer, 503, 'B refuses once its fence passed');
    assert.deepEqual(await statuses([apis[1] as Api, apis[1] as Api], early), [503, 503]);
    assert.deepEqual(await statuses([apis[0] as Api, apis[2] as Api], early), [200, 200]);
  });
});

describe('a token replica resynchronised page by page', { skip }, () => {
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcdCluster({ size: 1 });
  });
  after(() => etcd?.stop());

  it('pages and blocks of users cover every id once: rows equal the store, a second pass writes only what changed', async () => {
    const keys = new ClusterKeys('pages');
    const client = createEtcdClient(
      resolveClusterSettings({ endpoints: etcd.endpoints, cluster: 'pages', host: 'x' }),
    );
    const store = new EtcdStore(client, keys, { deadlineMs: 10_000 });
    const put = (kind: string, id: string, value: string) =>
      client.put(`${keys.data}${kind}/${id}`).value(value);
    // Users whose ids are prefixes of each other's, tokens around page and block edges.
    const users = ['a@pve', 'a@pve2', 'a@pve0', 'b@pam', 'c@pve', 'd@pve', 'e@pve'];
    const expected = new Map<string, { hash: string; previous: string; comment: string }>();
    for (const [u, userid] of users.entries()) {
      for (let t = 0; t < u + 1; t++) {
        const id = `${userid}!t${t}`;
        const hash = `$argon2id$${u}.${t}`;
        const previous = t === 1 ? `$argon2id$old${u}` : '';
        await put('token', id, `token:${id}:1:0:1:c${u}${t}:`);
        await put('shadow', id, hash);
        if (previous !== '') await put('shadow', `${id} previous`, previous);
        expected.set(id, { hash, previous, comment: `c${u}${t}` });
      }
    }
    // A token of a user the store does not have (a row, inert), a secret with no token (waits).
    await put('token', 'zz@pve!lost', 'token:zz@pve!lost:1:0:1::');
    expected.set('zz@pve!lost', { hash: '', previous: '', comment: '' });
    await put('shadow', 'c@pve!none', '$argon2id$none');

    const file = path.join(tempDir(), 'replica.db');
    const writer = new TokenDatabaseWriter(file);
    const pass = async () => {
      const { revision } = await store.snapshot([]);
      return resyncPages(
        store,
        revision,
        users,
        async (from, to, rows) => writer.resyncRange(from, to, rows),
        { page: 2, usersPerBlock: 2 },
      );
    };
    try {
      const first = await pass();
      assert.equal(first.changed, expected.size);
      assert.deepEqual(first.waiting, [
        { id: 'c@pve!none', previous: false, hash: '$argon2id$none' },
      ]);
      const rows = new Map([...writer.rows()].map((row) => [row.id, row]));
      assert.deepEqual([...rows.keys()].sort(), [...expected.keys()].sort());
      for (const [id, want] of expected) {
        const row = rows.get(id);
        assert.equal(row?.hash, want.hash, id);
        assert.equal(row?.previousHash ?? '', want.previous, id);
        assert.equal(row?.comment, want.comment, id);
      }
      // Changes in the store: one token gone, one disabled, one secret rotated; one row the
      // store never had is in the database (it must go).
      await client.delete().key(`${keys.data}token/a@pve2!t0`);
      await put('token', 'd@pve!t3', 'token:d@pve!t3:0:0:1:c53:');
      await put('shadow', 'e@pve!t6', '$argon2id$new');
      writer.put([
        {
          ...(rows.get('b@pam!t0') as NonNullable<ReturnType<typeof rows.get>>),
          id: 'b@pam!extra',
        },
      ]);
      const second = await pass();
      assert.equal(second.changed, 4);
      assert.equal(writer.get('a@pve2!t0'), undefined);
      assert.equal(writer.get('b@pam!extra'), undefined);
      assert.equal(writer.get('d@pve!t3')?.enable, false);
      assert.equal(writer.get('e@pve!t6')?.hash, '$argon2id$new');
      assert.equal((await pass()).changed, 0, 'nothing left to write');
    } finally {
      writer.close();
      client.close();
    }
  });
});
