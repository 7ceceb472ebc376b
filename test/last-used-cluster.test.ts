/**
 * Last uses in multi-host mode, with real parts: a real 3-member etcd on
 * loopback and two hosts (manager with its sync agent, one API worker each).
 * A use on host A shows on host B (its last-used.json and its API) within two
 * batch intervals; each host puts its record at most once per batch, and not
 * at all when its own workers saw nothing new; the usage keys never touch the
 * data the sync agents watch. The sink's own rules (the size limit, what it
 * keeps across runs, other hosts' bad records) against the same etcd.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { type Api, call } from '../harness/daemons.js';
import { etcdUnavailable } from '../harness/etcd.js';
import { type MultiHost, startMultiHost } from '../harness/multihost.js';
import { createEtcdClient } from '../src/cluster/client.js';
import { ClusterKeys } from '../src/cluster/keys.js';
import { resolveClusterSettings } from '../src/cluster/settings.js';
import { EtcdUsageSink, encodeUsage, MAX_USAGE_VALUE_BYTES } from '../src/cluster/usage-sink.js';
import { ClusterError } from '../src/errors.js';
import { LAST_USED_FILE, parseLastUsed } from '../src/usage/file.js';
import { lastUseOf as at, type LastUse } from '../src/usage/notes.js';
import { createRootToken } from './helpers/daemons.js';
import { waitForFile } from './helpers/files.js';

const INTERVAL_MS = 2000;
/** What a loaded 2-core machine may add (timers late, processes descheduled). */
const LOAD_ALLOWANCE_MS = 2500;
const interval = ['--last-used-interval', `${INTERVAL_MS}ms`];
const noEtcd = etcdUnavailable();
if (noEtcd) process.stdout.write(`# multi-host last-used tests skipped: ${noEtcd}\n`);

/** Token id -> second, for the assertions about times alone. */
function times(uses: Iterable<readonly [string, LastUse]>): Record<string, number> {
  return Object.fromEntries([...uses].map(([tokenid, use]) => [tokenid, use.seconds]));
}

/** A map of uses at the given seconds, without a source. */
function usesAt(entries: Iterable<readonly [string, number]>): Map<string, LastUse> {
  return new Map([...entries].map(([tokenid, seconds]) => [tokenid, at(seconds)]));
}

/** The key's version (puts since it was created; 0 when absent) and its value. */
async function keyState(client: Etcd3, key: string): Promise<{ version: number; value: string }> {
  const response = await client.get(key).exec();
  const kv = response.kvs[0];
  return { version: kv ? Number(kv.version) : 0, value: kv ? kv.value.toString() : '' };
}

describe('last uses across hosts, in etcd', { skip: noEtcd ?? false }, () => {
  let cluster: MultiHost;
  const keys = new ClusterKeys('test');
  const fileOf = (i: number) =>
    path.join((cluster.hosts[i] as { dir: string }).dir, 'etc', LAST_USED_FILE);
  const apiOf = (i: number) => (cluster.hosts[i] as { api: Api }).api;
  /** Host i's last-used.json as token id -> second. */
  const recorded = (i: number) => (text: string) =>
    new Map(Object.entries(times(parseLastUsed(fileOf(i), text).tokens)));

  before(
    async () => {
      cluster = await startMultiHost({
        hosts: 2,
        members: 3,
        workers: 1,
        managerArgs: interval,
        apiArgs: interval,
      });
    },
    { timeout: 120_000 },
  );
  after(() => cluster?.stop(), { timeout: 120_000 });

  it('a use on A shows on B within two batches; one put per batch per host, none for nothing new', {
    timeout: 90_000,
  }, async (t) => {
    const a = cluster.hosts[0]?.deployment;
    assert.ok(a);
    const used = await createRootToken(a, 'used');
    const reader = await createRootToken(a, 'reader');
    const onlyB = await createRootToken(a, 'onlyb');
    const rounds = [];
    for (const name of ['r0', 'r1', 'r2']) rounds.push(await createRootToken(a, name));
    const gens = async () =>
      Promise.all(
        ['USER_AND_ACL', 'TOKEN_SHADOW'].map((slot) =>
          keyState(cluster.client, keys.gen(slot as 'USER_AND_ACL')),
        ),
      );
    const gensBefore = await gens();

    const used1 = await call(apiOf(0), 'GET', '/version', { auth: used.header });
    assert.equal(used1.status, 200, used1.raw);
    const answered = Date.now();
    const onB = await waitForFile(fileOf(1), (text) => recorded(1)(text).get(used.id));
    const elapsed = Date.now() - answered;
    t.diagnostic(`A's use reached B's last-used.json after ${elapsed} ms`);
    assert.ok(
      elapsed <= 2 * INTERVAL_MS + INTERVAL_MS / 5 + LOAD_ALLOWANCE_MS,
      `B saw A's use after ${elapsed} ms, with a ${INTERVAL_MS} ms interval`,
    );
    assert.ok(Math.abs(onB - Math.floor(answered / 1000)) <= 2, `second ${onB}`);
    // The same second on A's own file and in A's key; never a secret in it.
    const onA = await waitForFile(fileOf(0), (text) => recorded(0)(text).get(used.id));
    assert.equal(onA, onB);
    const aKey = await keyState(cluster.client, keys.usageOf('a'));
    assert.equal(parseLastUsed('usage/a', aKey.value).tokens.get(used.id)?.seconds, onB);
    assert.ok(!aKey.value.includes(used.secret) && !aKey.value.includes(reader.secret));
    assert.ok(!aKey.value.includes('\n'), 'compact JSON');

    // B's API answers with it, asked with another token (a use on B of `reader` only).
    const one = await call(apiOf(1), 'GET', `/access/users/root@pam/token/used`, {
      auth: reader.header,
    });
    assert.equal(one.status, 200, one.raw);
    assert.equal((one.body.data as { 'last-used'?: number })['last-used'], onB);

    // Three batches of uses on A (a new token each, so each is a change): three puts of A's key.
    const versionBefore = (await keyState(cluster.client, keys.usageOf('a'))).version;
    for (const round of rounds) {
      const reply = await call(apiOf(0), 'GET', '/version', { auth: round.header });
      assert.equal(reply.status, 200);
      // On B: A's put of this batch is done.
      await waitForFile(fileOf(1), (text) => recorded(1)(text).get(round.id));
    }
    const puts = (await keyState(cluster.client, keys.usageOf('a'))).version - versionBefore;
    assert.equal(puts, rounds.length, `${puts} puts of A's key for ${rounds.length} batches`);

    // A use on B only: A takes it in (its file) without a put of its own key.
    const aVersion = (await keyState(cluster.client, keys.usageOf('a'))).version;
    const reply = await call(apiOf(1), 'GET', '/version', { auth: onlyB.header });
    assert.equal(reply.status, 200);
    await waitForFile(fileOf(0), (text) => recorded(0)(text).get(onlyB.id));
    assert.equal((await keyState(cluster.client, keys.usageOf('a'))).version, aVersion);
    const bKey = await keyState(cluster.client, keys.usageOf('b'));
    assert.ok(parseLastUsed('usage/b', bKey.value).tokens.has(onlyB.id));
    assert.ok(!parseLastUsed('usage/b', bKey.value).tokens.has(used.id), 'B keeps its own uses');

    // None of it touched the data the sync agents watch: no generation moved.
    assert.deepEqual(await gens(), gensBefore);
  });

  it('where from: a use on A from 127.0.0.2 shows on B with its source and host A', {
    timeout: 60_000,
  }, async () => {
    const a = cluster.hosts[0]?.deployment;
    assert.ok(a);
    const placed = await createRootToken(a, 'placed');
    const asker = await createRootToken(a, 'asker');
    const reply = await call(apiOf(0), 'GET', '/version', {
      auth: placed.header,
      localAddress: '127.0.0.2',
    });
    assert.equal(reply.status, 200, reply.raw);
    const onB = await waitForFile(fileOf(1), (text) => {
      const use = parseLastUsed(fileOf(1), text).tokens.get(placed.id);
      return use?.source === undefined ? undefined : use;
    });
    assert.equal(onB.source, '127.0.0.2');
    assert.equal(onB.host, 'a');
    // A's key holds the source, not the host (the key names it).
    const aKey = await keyState(cluster.client, keys.usageOf('a'));
    assert.deepEqual(parseLastUsed('usage/a', aKey.value).tokens.get(placed.id), {
      seconds: onB.seconds,
      source: '127.0.0.2',
    });
    // B's API, asked from 127.0.0.3 with another token.
    const one = await call(apiOf(1), 'GET', '/access/users/root@pam/token/placed', {
      auth: asker.header,
      localAddress: '127.0.0.3',
    });
    assert.equal(one.status, 200, one.raw);
    const data = one.body.data as Record<string, unknown>;
    assert.equal(data['last-used'], onB.seconds);
    assert.equal(data['last-used-source'], '127.0.0.2');
    assert.equal(data['last-used-host'], 'a');
    // The asking request is B's own use: its worker's note, named after B (its file's host).
    const list = await call(apiOf(1), 'GET', '/access/users/root@pam/token', {
      auth: asker.header,
      localAddress: '127.0.0.3',
    });
    const rows = list.body.data as Array<Record<string, unknown>>;
    const own = rows.find((r) => r.tokenid === 'asker');
    assert.equal(own?.['last-used-source'], '127.0.0.3');
    assert.equal(own?.['last-used-host'], 'b');
  });

  it('the sink: the size limit keeps the newest uses, a restart keeps what was put, bad records of others are skipped', async () => {
    const sinkKeys = new ClusterKeys('sinkunit');
    const warnings: Array<{ fields: Record<string, unknown>; message: string }> = [];
    const open = (
      options: { host?: string; maxBytes?: number; recorded?: Map<string, LastUse> } = {},
    ) =>
      new EtcdUsageSink({
        client: cluster.client,
        keys: sinkKeys,
        host: 'h1',
        deadlineMs: 5000,
        ...options,
        warn: (fields, message) => warnings.push({ fields, message }),
      });
    /** What a sink's key holds now. */
    const stored = async (sink: EtcdUsageSink) =>
      times(parseLastUsed(sink.key, (await keyState(cluster.client, sink.key)).value).tokens);
    const batch = (all: Array<[string, number]>, changed: Array<[string, number]>) => ({
      since: 100,
      all: usesAt(all),
      changed: usesAt(changed),
    });

    // Nothing read yet: no put (it could drop what an earlier run stored).
    const first = open();
    await assert.rejects(first.write(batch([['u@pve!x', 200]], [['u@pve!x', 200]])), ClusterError);
    assert.equal((await keyState(cluster.client, first.key)).version, 0);
    await first.gather();
    await first.write(batch([['u@pve!x', 200]], [['u@pve!x', 200]]));
    assert.equal(first.puts, 1);

    // Another host's record, and one that does not parse.
    await cluster.client
      .put(sinkKeys.usageOf('h2'))
      .value(JSON.stringify({ format: 1, since: 50, tokens: { 'u@pve!y': 300, 'u@pve!x': 150 } }));
    await cluster.client.put(sinkKeys.usageOf('h3')).value('not json');

    // A new run of h1 reads its own record back and keeps it in its next put.
    const second = open();
    const gathered = await second.gather();
    assert.deepEqual(times(gathered), { 'u@pve!x': 200, 'u@pve!y': 300 });
    // Each use with the host its key names.
    assert.equal(gathered.get('u@pve!x')?.host, 'h1');
    assert.equal(gathered.get('u@pve!y')?.host, 'h2');
    await second.gather();
    assert.equal(warnings.filter((w) => w.message.includes('unreadable')).length, 1);
    const all: Array<[string, number]> = [
      ['u@pve!x', 200],
      ['u@pve!y', 300],
      ['u@pve!z', 400],
    ];
    await second.write(batch(all, [['u@pve!z', 400]]));
    // Its own uses only: y is h2's.
    assert.deepEqual(await stored(second), { 'u@pve!x': 200, 'u@pve!z': 400 });
    // Nothing new: no put. A token gone from the view: a put without it.
    await second.write(batch(all, []));
    assert.equal(second.puts, 1);
    await second.write(batch(all.slice(1), []));
    assert.equal(second.puts, 2);
    assert.deepEqual(await stored(second), { 'u@pve!z': 400 });

    // A host that joins with a file of its own: its earlier uses go into its first put.
    // What its file says another host recorded stays that host's.
    const joined = open({
      host: 'h4',
      recorded: new Map([
        ['u@pve!old', at(90, '192.0.2.4')],
        ['u@pve!theirs', at(95, '192.0.2.5', 'h2')],
      ]),
    });
    assert.equal(joined.pending, false);
    await joined.gather();
    assert.equal(joined.pending, true);
    await joined.write(batch([['u@pve!old', 90]], []));
    assert.equal(joined.pending, false);
    assert.deepEqual(await stored(joined), { 'u@pve!old': 90 });
    // The source goes into the key; the host does not (the key names it).
    const joinedValue = JSON.parse((await keyState(cluster.client, joined.key)).value);
    assert.deepEqual(joinedValue.where, { 'u@pve!old': { source: '192.0.2.4' } });
    assert.deepEqual(
      await joined.gather().then((g) => g.get('u@pve!old')),
      at(90, '192.0.2.4', 'h4'),
    );
    // A run that finds its key in etcd takes that, not the file, as its own.
    const again = open({ host: 'h4', recorded: usesAt([['u@pve!y', 300]]) });
    await again.gather();
    assert.equal(again.pending, false);

    // Over the limit: the newest uses that fit, said once.
    const many = new Map<string, LastUse>();
    for (let i = 0; i < 100; i++) {
      // Every other one with a source: the entries differ in size.
      const source = i % 2 === 0 ? `2001:db8::${i}` : undefined;
      many.set(`u@pve!t${String(i).padStart(3, '0')}`, at(1000 + i, source));
    }
    const encoded = encodeUsage(100, many, 600);
    assert.ok(Buffer.byteLength(encoded.value) <= 600);
    const kept = parseLastUsed('h1', encoded.value).tokens;
    assert.equal(kept.size + encoded.omitted, 100);
    assert.ok(encoded.omitted > 0 && kept.size > 0);
    const oldestKept = Math.min(...[...kept.values()].map((use) => use.seconds));
    for (const [id, use] of many) {
      assert.equal(kept.has(id), use.seconds >= oldestKept, `${id} (${use.seconds})`);
      if (kept.has(id)) assert.equal(kept.get(id)?.source, use.source);
    }
    assert.equal(encodeUsage(100, many).omitted, 0);
    const small = open({ maxBytes: 600 });
    await small.gather();
    const manyTimes = Object.entries(times(many));
    await small.write(batch(manyTimes, manyTimes));
    await small.write(batch([...manyTimes, ['u@pve!new', 5000]], [['u@pve!new', 5000]]));
    assert.equal(warnings.filter((w) => w.message.includes('too large')).length, 1);
    const tooMany = warnings.find((w) => w.message.includes('too large'));
    assert.ok((tooMany?.fields.omitted as number) > 0);
    assert.equal((await stored(small))['u@pve!new'], 5000);
  });

  it('three hosts with records at the size limit: etcd takes each put, one range read brings all', {
    timeout: 60_000,
  }, async () => {
    const bigKeys = new ClusterKeys('bigunit');
    const settings = resolveClusterSettings({
      cluster: 'bigunit',
      host: 'h1',
      endpoints: cluster.etcd.endpoints,
    });
    const client = createEtcdClient(settings);
    const plain = new Etcd3({ hosts: cluster.etcd.endpoints });
    try {
      const sizes: number[] = [];
      for (const host of ['h1', 'h2', 'h3']) {
        const tokens = new Map<string, LastUse>();
        for (let i = 0; i < 42_000; i++)
          tokens.set(`user${i}@pve!${host}-token-${i}`, at(1_700_000_000 + i));
        const { value, omitted } = encodeUsage(100, tokens);
        assert.ok(omitted > 0, 'more than fits');
        sizes.push(Buffer.byteLength(value));
        // etcd's default request limit (1.5 MiB) takes it.
        await client.put(bigKeys.usageOf(host)).value(value).exec();
      }
      assert.ok(
        sizes.every((n) => n > 1_400_000 && n <= MAX_USAGE_VALUE_BYTES),
        String(sizes),
      );
      // grpc-js's default answer limit (4 MiB) would refuse the read; the project's client takes it.
      await assert.rejects(plain.getAll().prefix(bigKeys.usage).strings(), /max|larger|size/i);
      const sink = new EtcdUsageSink({ client, keys: bigKeys, host: 'h1', deadlineMs: 20_000 });
      const all = await sink.gather();
      assert.ok(all.size > 3 * 35_000, `${all.size} uses`);
    } finally {
      plain.close();
      client.close();
    }
  });
});
