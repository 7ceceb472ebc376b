/**
 * Switching to multi-host mode with tokenctl, against a real 3-member etcd on
 * loopback and real daemons: `cluster init` moves a single host's users,
 * groups, ACLs, tokens and hashes into etcd (nothing lost, byte for byte),
 * the host's manager then serves from the cluster and its old tokens keep
 * working; a second host that joins later starts from a consistent read and
 * accepts them too; tokenctl's own changes then go through etcd to both.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Deployment, startDeployment } from '../harness/daemons.js';
import { type EtcdCluster, etcdUnavailable, startEtcdCluster } from '../harness/etcd.js';
import { addTokenIn, tokenctlIn as tokenctl, versionStatus } from '../harness/tokenctl.js';
import { createEtcdClient } from '../src/cluster/client.js';
import { ClusterKeys } from '../src/cluster/keys.js';
import { resolveClusterSettings } from '../src/cluster/settings.js';
import { EtcdStore } from '../src/cluster/store.js';
import { parseShadow } from '../src/shadow/file.js';
import { tempDir } from './helpers/tmp.js';

const noEtcd = etcdUnavailable();
if (noEtcd) process.stdout.write(`# cluster tokenctl tests skipped: ${noEtcd}\n`);

describe('tokenctl cluster init and join', { skip: noEtcd ?? false }, () => {
  let etcd: EtcdCluster;
  const running: Deployment[] = [];
  const dirA = tempDir('token-shadow-init-a-');
  const dirB = tempDir('token-shadow-init-b-');

  before(async () => {
    etcd = await startEtcdCluster();
  });

  after(async () => {
    for (const d of running) await d.stop();
    await etcd?.stop();
  });

  it('moves a single host into etcd, nothing lost; old tokens work; a later host joins', async () => {
    // A single host with a user, a group, an ACL and two tokens.
    for (const args of [
      ['user', 'add', 'ann@pve', '--comment', 'Ann'],
      ['group', 'add', 'ops', '--comment', 'Ops'],
      ['acl', 'set', '/vms', '--roles', 'PVEAuditor', '--groups', 'ops'],
    ]) {
      const run = await tokenctl(dirA, ...args);
      assert.equal(run.code, 0, run.stderr);
    }
    const { header } = await addTokenIn(dirA, 'root@pam!keep');
    const userCfg = readFileSync(path.join(dirA, 'etc', 'user.cfg'), 'utf8');
    const hashes = parseShadow(
      'token.shadow',
      readFileSync(path.join(dirA, 'etc', 'token.shadow'), 'utf8'),
    );

    const clusterInit = (dir: string, ...rest: string[]) =>
      tokenctl(dir, 'cluster', 'init', '--endpoints', etcd.endpoints.join(','), ...rest);
    const init = await clusterInit(dirA, '--name', 'moved', '--host', 'a');
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stdout, /restart the manager/);
    const again = await clusterInit(dirA, '--name', 'moved');
    assert.equal(again.code, 1, 'a second init is refused');

    // Nothing lost: every hash and every user.cfg line is in etcd.
    const client = createEtcdClient(resolveClusterSettings({ endpoints: etcd.endpoints }));
    try {
      const stored = await new EtcdStore(client, new ClusterKeys('moved'), {
        deadlineMs: 5000,
      }).snapshot();
      for (const [tokenid, hash] of hashes) {
        assert.equal(stored.entries.get(`shadow/${tokenid}`)?.value, hash, tokenid);
      }
      const lines = [...stored.entries]
        .filter(([id]) => !id.startsWith('shadow/'))
        .map(([, e]) => e.value);
      for (const line of userCfg.split('\n').filter((l) => l.length > 0)) {
        assert.ok(
          lines.some((text) => text.split('\n').includes(line)),
          `kept: ${line.slice(0, 30)}`,
        );
      }
    } finally {
      client.close();
    }

    // Host A in multi-host mode: its old token still works.
    const a = await startDeployment(dirA);
    running.push(a);
    await a.managerLog.waitFor((l) => l.msg === 'cluster in sync');
    const apiA = await a.startApi('a', ['--plain-http', '--workers', '1', '--hash-threads', '1']);
    assert.equal(await versionStatus(apiA, header), 200);

    // Host B joins later: it starts from a consistent read and accepts the token.
    const join = await clusterInit(dirB, '--name', 'moved', '--host', 'b', '--join');
    assert.equal(join.code, 0, join.stderr);
    const b = await startDeployment(dirB);
    running.push(b);
    await b.managerLog.waitFor((l) => l.msg === 'cluster in sync');
    const apiB = await b.startApi('b', ['--plain-http', '--workers', '1', '--hash-threads', '1']);
    assert.equal(await versionStatus(apiB, header), 200);

    // tokenctl on B removes the token through etcd: refused on both once it returns.
    const removed = await tokenctl(dirB, 'token', 'remove', 'root@pam!keep');
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(await versionStatus(apiA, header), 401);
    assert.equal(await versionStatus(apiB, header), 401);

    const status = await tokenctl(dirB, '--output', 'json', 'cluster', 'status');
    assert.equal(status.code, 0, status.stderr);
    const state = JSON.parse(status.stdout) as {
      hosts: Array<{ host: string; live: boolean }>;
      local: { fence: string };
    };
    assert.deepEqual(
      state.hosts.filter((h) => h.live).map((h) => h.host),
      ['a', 'b'],
    );
    assert.equal(state.local.fence, 'open');
  });
});
