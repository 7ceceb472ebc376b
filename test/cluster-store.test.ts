/**
 * The etcd store, the sync agent, the fence and the mutation protocol against
 * a real 3-member etcd on loopback: three "hosts" in this process, each with
 * its own directory, page and agent, and a writer on EtcdStorage.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type EtcdCluster, etcdUnavailable, startEtcdCluster } from '../harness/etcd.js';
import { SyncAgent } from '../src/cluster/agent.js';
import { configToEntries, entriesToText } from '../src/cluster/entries.js';
import { ClusterKeys } from '../src/cluster/keys.js';
import { type ClusterSettings, resolveClusterSettings } from '../src/cluster/settings.js';
import { EtcdStorage } from '../src/cluster/storage.js';
import { parseUserConfig } from '../src/config/parse.js';
import { FencedError } from '../src/errors.js';
import { fenceState, fenceWriter } from '../src/generations/fence.js';
import { parseAuthid } from '../src/ids.js';
import { GenerationPage, HashPool, Slot, TokenShadow, UserConfigStore } from '../src/index.js';
import {
  createGroup,
  createToken,
  createUser,
  deleteToken,
  rotateToken,
  runWrite,
  type Stores,
} from '../src/service/operations.js';
import { FAST_ARGON2 } from './helpers/shadow.js';

const noEtcd = etcdUnavailable();
if (noEtcd) process.stdout.write(`# cluster-store tests skipped: ${noEtcd}\n`);

const ROOT = parseAuthid('root@pam');

/** The write operations used here, run as root@pam on `stores`. */
function operationsOn(stores: Stores) {
  return {
    createUser: (userid: string) => runWrite(createUser, stores, ROOT, { userid, fields: {} }),
    createGroup: (groupid: string, comment?: string) =>
      runWrite(createGroup, stores, ROOT, { groupid, ...(comment ? { comment } : {}) }),
    createToken: (userid: string, tokenName: string) =>
      runWrite(createToken, stores, ROOT, { userid, tokenName, fields: { privsep: false } }),
    rotateToken: (userid: string, tokenName: string) =>
      runWrite(rotateToken, stores, ROOT, { userid, tokenName }),
    deleteToken: (userid: string, tokenName: string) =>
      runWrite(deleteToken, stores, ROOT, { userid, tokenName }),
  };
}
const silent = process.env.CLUSTER_DEBUG
  ? {
      info: (f: object, m: string) => console.error(m, f),
      warn: (f: object, m: string) => console.error(m, f),
    }
  : { info: () => undefined, warn: () => undefined };

interface Host {
  name: string;
  dir: string;
  page: GenerationPage;
  agent: SyncAgent;
  shadow: TokenShadow;
  users: UserConfigStore;
}

describe('multi-host store on a real 3-member etcd', { skip: noEtcd ?? false }, () => {
  let etcd: EtcdCluster;
  let pool: HashPool;
  let settings: (host: string) => ClusterSettings;
  const hosts: Host[] = [];
  let writer: EtcdStorage;
  let mutations: ReturnType<typeof operationsOn>;

  before(async () => {
    etcd = await startEtcdCluster();
    pool = new HashPool({ threads: 1, maxQueue: 64, argon2: FAST_ARGON2 });
    settings = (host) =>
      resolveClusterSettings({ endpoints: etcd.endpoints, cluster: 'test', host, leaseSeconds: 2 });
    for (const name of ['a', 'b', 'c']) {
      // Not tempDir(): its after() would run at the end of this before() hook.
      const dir = mkdtempSync(path.join(tmpdir(), `token-shadow-host-${name}-`));
      const page = GenerationPage.open(path.join(dir, 'config-versions'));
      const agent = new SyncAgent({
        settings: settings(name),
        keys: new ClusterKeys('test'),
        page,
        userCfgPath: path.join(dir, 'user.cfg'),
        shadowPath: path.join(dir, 'token.shadow'),
        log: silent,
      });
      const shadow = new TokenShadow({ path: path.join(dir, 'token.shadow'), page, pool });
      const users = new UserConfigStore({ path: path.join(dir, 'user.cfg'), page });
      hosts.push({ name, dir, page, agent, shadow, users });
    }
    await Promise.all(hosts.map((h) => h.agent.start()));
    writer = new EtcdStorage(settings('writer'), pool);
    mutations = operationsOn(writer);
  });

  after(async () => {
    await writer?.close();
    await Promise.all(hosts.map((h) => h.agent.stop()));
    for (const h of hosts) h.page.close();
    await pool?.close();
    await etcd?.stop();
    for (const h of hosts) rmSync(h.dir, { recursive: true, force: true });
  });

  it('user.cfg entries round-trip through etcd keys, line for line', () => {
    const text = [
      'user:joe@pve:1:0:Joe:Doe:joe@example.com:hi::',
      'token:joe@pve!ci:1:0:1:ci token:',
      'user:root@pam:1:0:::::',
      '',
      'group:admins:joe@pve:the admins:',
      '',
      'role:Auditor:Sys.Audit:',
      '',
      'acl:1:/:@admins:Administrator:',
      'acl:1:/vms/100:joe@pve!ci:PVEVMUser:',
      '',
    ].join('\n');
    const { config } = parseUserConfig(text);
    const entries = configToEntries(config);
    assert.equal(entries.get('token/joe@pve!ci'), 'token:joe@pve!ci:1:0:1:ci%20token:');
    assert.ok(entries.has('acl//vms/100'));
    const again = parseUserConfig(entriesToText(entries)).config;
    assert.deepEqual(configToEntries(again), entries);
  });

  it('every host is in sync and open (fence in the future) after start', () => {
    for (const h of hosts) {
      assert.equal(fenceState(h.page), 'open', `host ${h.name}`);
      assert.ok((h.agent.status().ackedRevision ?? 0) > 0);
    }
  });

  it('a token created through etcd works on every host when the call returns; hashes only', async () => {
    await mutations.createUser('joe@pve');
    const created = await mutations.createToken('joe@pve', 'ci');
    for (const h of hosts) {
      assert.equal(await h.shadow.verifySecret('joe@pve!ci', created.value), true, h.name);
      const config = await h.users.get();
      assert.ok(config.users.get('joe@pve')?.tokens.has('ci'), `token in ${h.name}'s user.cfg`);
      assert.ok(!readFileSync(path.join(h.dir, 'token.shadow'), 'utf8').includes(created.value));
    }
    const stored = await writer.store.snapshot(['shadow']);
    for (const { value } of stored.entries.values()) assert.ok(!value.includes(created.value));
  });

  it('a revoke returns only once every host refuses the old secret', async () => {
    const { value } = await mutations.createToken('joe@pve', 'gone');
    for (const h of hosts) assert.equal(await h.shadow.verifySecret('joe@pve!gone', value), true);
    for (const h of hosts) assert.equal(h.shadow.verifyCached('joe@pve!gone', value), true);
    await mutations.deleteToken('joe@pve', 'gone');
    for (const h of hosts) {
      assert.equal(h.shadow.verifyCached('joe@pve!gone', value), undefined, h.name);
      assert.equal(await h.shadow.verifySecret('joe@pve!gone', value), false, h.name);
    }
  });

  it('a rotate makes the old secret fail everywhere and the new one work', async () => {
    const first = await mutations.createToken('joe@pve', 'rot');
    const second = await mutations.rotateToken('joe@pve', 'rot');
    for (const h of hosts) {
      assert.equal(await h.shadow.verifySecret('joe@pve!rot', first.value), false);
      assert.equal(await h.shadow.verifySecret('joe@pve!rot', second.value), true);
    }
  });

  it('concurrent writers on one entry: each change applied once, none lost', async () => {
    const otherStorage = new EtcdStorage(settings('writer2'), pool);
    const other = operationsOn(otherStorage);
    try {
      await Promise.all([
        mutations.createGroup('g1', 'one'),
        other.createGroup('g2', 'two'),
        mutations.createUser('ann@pve'),
        other.createUser('bob@pve'),
      ]);
      await assert.rejects(other.createUser('ann@pve'), /exists/);
      for (const h of hosts) {
        const config = await h.users.get();
        for (const id of ['ann@pve', 'bob@pve'])
          assert.ok(config.users.has(id), `${id} on ${h.name}`);
        for (const id of ['g1', 'g2']) assert.ok(config.groups.has(id), `${id} on ${h.name}`);
      }
    } finally {
      await otherStorage.close();
    }
  });

  it('past the fence a host refuses even a cached secret with FencedError', async () => {
    const { value } = await mutations.createToken('joe@pve', 'fence');
    const h = hosts[1] as Host;
    assert.equal(await h.shadow.verifySecret('joe@pve!fence', value), true);
    fenceWriter.close(h.page);
    assert.equal(h.shadow.verifyCached('joe@pve!fence', value), undefined);
    await assert.rejects(h.shadow.verifySecret('joe@pve!fence', value), FencedError);
    // The agent opens it again on its next confirmed keepalive (every TTL/3).
    await waitUntil(() => fenceState(h.page) === 'open', 5000);
    assert.equal(await h.shadow.verifySecret('joe@pve!fence', value), true);
  });

  it('a stopped agent drops its lease: writers stop waiting for it at once', async () => {
    const h = hosts[2] as Host;
    await h.agent.stop();
    assert.equal(fenceState(h.page), 'fenced');
    const started = performance.now();
    await mutations.createGroup('after-stop');
    assert.ok(performance.now() - started < 1500, 'no wait for the stopped host');
    const stale = await h.users.get();
    assert.equal(stale.groups.has('after-stop'), false, 'the stopped host did not apply it');
    assert.equal(h.page.load(Slot.FENCE) > 0, true);
  });
});

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
