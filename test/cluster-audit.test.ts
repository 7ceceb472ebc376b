/**
 * The cluster's audit trail (issue 28): with a real 3-member etcd on loopback
 * and two hosts' real managers and APIs, changes made through each host's API
 * and through tokenctl on each host are recorded once for the cluster, in
 * etcd's order, each with the revision of its own change; concurrent writers
 * on both hosts never share or skip a sequence number; refusals stay in the
 * refusing host's own trail; `tokenctl audit verify` catches an altered record.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Api, call, type Deployment } from '../harness/daemons.js';
import { type EtcdCluster, etcdUnavailable, startEtcdCluster } from '../harness/etcd.js';
import { addTokenIn, startClusterHosts, tokenctlIn as tokenctl } from '../harness/tokenctl.js';
import type { ClusterAuditRecord } from '../src/cluster/audit.js';
import { createEtcdClient } from '../src/cluster/client.js';
import { ClusterKeys } from '../src/cluster/keys.js';
import { resolveClusterSettings } from '../src/cluster/settings.js';
import { tempDir } from './helpers/tmp.js';

const noEtcd = etcdUnavailable();
if (noEtcd) process.stdout.write(`# cluster audit tests skipped: ${noEtcd}\n`);

const CLUSTER = 'audited';
const PVE_USER_CFG = fileURLToPath(
  new URL('../../test/fixtures/cli-pve-user.cfg', import.meta.url),
);

describe("the cluster's audit trail", { skip: noEtcd ?? false }, () => {
  let etcd: EtcdCluster;
  const running: Deployment[] = [];
  const dirA = tempDir('token-shadow-audit-a-');
  const dirB = tempDir('token-shadow-audit-b-');
  let apiA: Api;
  let apiB: Api;
  let auth: string;

  const trail = async (dir: string, ...args: string[]) => {
    const run = await tokenctl(dir, '--output', 'json', 'audit', ...args);
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as ClusterAuditRecord[];
  };

  before(async () => {
    etcd = await startEtcdCluster();
    const [a, b] = (await startClusterHosts(
      etcd.endpoints,
      CLUSTER,
      [
        { host: 'a', dir: dirA },
        { host: 'b', dir: dirB },
      ],
      running,
    )) as [Deployment, Deployment];
    const args = ['--plain-http', '--workers', '1', '--hash-threads', '1'];
    apiA = await a.startApi('a', args);
    apiB = await b.startApi('b', args);
  });

  after(async () => {
    for (const d of running) await d.stop();
    await etcd?.stop();
  });

  it('records every change once for the cluster, in order, with its revision', async () => {
    // tokenctl on A: a token (two transactions: its hash, then user.cfg).
    auth = (await addTokenIn(dirA, 'root@pam!admin', '--privsep', '0')).header;
    // The API on A, then on B.
    const user = await call(apiA, 'POST', '/access/users', { auth, form: { userid: 'ann@pve' } });
    assert.equal(user.status, 200, user.raw);
    const group = await call(apiB, 'POST', '/access/groups', { auth, form: { groupid: 'ops' } });
    assert.equal(group.status, 200, group.raw);
    // A refusal on B: nothing changes, so nothing for the cluster's trail.
    const again = await call(apiB, 'POST', '/access/users', { auth, form: { userid: 'ann@pve' } });
    assert.notEqual(again.status, 200);
    // tokenctl on B.
    const removed = await tokenctl(dirB, 'user', 'remove', 'ann@pve');
    assert.equal(removed.code, 0, removed.stderr);

    const records = await trail(dirA);
    assert.deepEqual(await trail(dirB), records, 'both hosts read the one cluster trail');
    assert.deepEqual(
      records.map((r) => [r.op, r.step, r.host, r.target]),
      [
        ['token.create', 'secret.put', 'a', 'root@pam!admin'],
        ['token.create', 'config', 'a', 'root@pam!admin'],
        ['user.create', 'config', 'a', 'ann@pve'],
        ['group.create', 'config', 'b', 'ops'],
        ['user.delete', 'config', 'b', 'ann@pve'],
      ],
    );
    assert.deepEqual(
      records.map((r) => r.seq),
      [1, 2, 3, 4, 5],
    );
    assert.equal(records[2]?.actor, 'root@pam!admin');
    assert.equal(records[4]?.actor, 'host root');
    for (const [i, r] of records.entries()) {
      assert.equal(r.outcome, 'ok');
      if (i > 0)
        assert.ok(r.revision > (records[i - 1] as ClusterAuditRecord).revision, 'in etcd order');
      assert.equal(r.after, i === 0 ? 0 : records[i - 1]?.revision);
    }

    // Each record's revision is its change's: the group's key was created in it.
    const client = createEtcdClient(resolveClusterSettings({ endpoints: etcd.endpoints }));
    try {
      const keys = new ClusterKeys(CLUSTER);
      const stored = await client.get(keys.entry('group', 'ops')).exec();
      assert.equal(Number(stored.kvs[0]?.create_revision), records[3]?.revision);
    } finally {
      client.close();
    }

    // The hosts' own trails name the same revisions; B's also holds its refusal.
    const localA = await trail(dirA, '--local');
    assert.equal(localA.find((r) => r.op === 'user.create')?.revision, records[2]?.revision);
    assert.equal(localA.find((r) => r.op === 'token.create')?.revision, records[1]?.revision);
    const localB = await trail(dirB, '--local');
    assert.deepEqual(
      localB.map((r) => [r.op, r.outcome, r.revision ?? null]),
      [
        ['group.create', 'ok', records[3]?.revision],
        ['user.create', 'refused', null],
        ['user.delete', 'ok', records[4]?.revision],
      ],
    );
  });

  it('concurrent changes on both hosts: each once, no sequence number shared or skipped', async () => {
    const before = (await trail(dirA)).length;
    const names = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
    const replies = await Promise.all(
      names.map((name, i) =>
        call(i % 2 === 0 ? apiA : apiB, 'POST', '/access/users', {
          auth,
          form: { userid: `${name}@pve` },
        }),
      ),
    );
    for (const reply of replies) assert.equal(reply.status, 200, reply.raw);
    const records = (await trail(dirA)).slice(before);
    assert.deepEqual(
      records.map((r) => r.target).sort(),
      names.map((n) => `${n}@pve`),
      'each change once',
    );
    assert.deepEqual(
      records.map((r) => r.seq),
      names.map((_, i) => before + i + 1),
    );
    const verified = await tokenctl(dirB, 'audit', 'verify');
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, new RegExp(`verified ${before + names.length} cluster records`));
  });

  it("an import on B: in the cluster's trail, config and the replaced secrets", async () => {
    const before = (await trail(dirA)).length;
    const imported = await tokenctl(dirB, 'import-pve', PVE_USER_CFG, '--force');
    assert.equal(imported.code, 0, imported.stderr);
    const records = (await trail(dirA)).slice(before);
    assert.ok(records.length >= 2, 'user.cfg, then at least root@pam!admin secret');
    for (const r of records)
      assert.deepEqual([r.op, r.host, r.actor], ['config.import', 'b', 'host root']);
    assert.deepEqual(
      records.map((r) => r.step),
      ['config', ...records.slice(1).map(() => 'secret.delete')],
    );
    const local = (await trail(dirB, '--local')).at(-1);
    assert.equal(local?.op, 'config.import');
    assert.equal(local?.revision, records.at(-1)?.revision);
  });

  it('verify catches an altered record', async () => {
    const records = await trail(dirA);
    const victim = records[2] as ClusterAuditRecord;
    const client = createEtcdClient(resolveClusterSettings({ endpoints: etcd.endpoints }));
    try {
      const key = new ClusterKeys(CLUSTER).auditRecord(victim.seq);
      const stored = await client.get(key).string();
      assert.ok(stored);
      await client
        .put(key)
        .value(stored.replace('"actor":"root@pam!admin"', '"actor":"nobody@pve"'));
      const broken = await tokenctl(dirA, 'audit', 'verify');
      assert.equal(broken.code, 1);
      assert.match(broken.stderr, new RegExp(`cluster record ${victim.seq} .*altered`));
      // Put back byte for byte, it is still a rewrite: etcd's version says so.
      await client.put(key).value(stored);
      const rewritten = await tokenctl(dirA, 'audit', 'verify');
      assert.equal(rewritten.code, 1);
      assert.match(rewritten.stderr, /rewritten after its change/);
    } finally {
      client.close();
    }
  });
});
