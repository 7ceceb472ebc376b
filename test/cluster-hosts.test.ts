/**
 * Multi-host mode with real parts: a real 3-member etcd and three API hosts
 * (manager with its sync agent, plus workers), each host and its etcd member
 * in a network namespace the test makes, on a bridge. A token made on one
 * host works on all; a revoke on one host is refused on all from the moment
 * it returns (0 stale accepts from verifiers in a tight loop), healthy and
 * with a member SIGKILLed or SIGSTOPped, a follower's or the leader's link
 * cut, an agent killed, a compaction past a stalled agent. Needs root and a
 * kernel that allows namespaces; says why when it skips.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { etcdUnavailable } from '../harness/etcd.js';
import {
  type Host,
  type MultiHost,
  netnsUnavailable,
  startMultiHost,
  startVerifier,
} from '../harness/multihost.js';
import {
  FAULTS,
  makeToken,
  type RevokeRun,
  revokeUnder,
  settle,
} from '../harness/revoke-scenarios.js';
import { runChild } from './helpers/children.js';

/** A wedged scenario fails (and after() still cleans up) instead of hanging npm test. */
const SCENARIO_MS = 90_000;
const TOKENCTL = fileURLToPath(new URL('../src/cli/tokenctl.js', import.meta.url));
const why = etcdUnavailable() ?? netnsUnavailable();
if (why) process.stdout.write(`# multi-host namespace tests skipped: ${why}\n`);

function assertNoStaleAccepts(run: RevokeRun): void {
  for (const report of run.reports) {
    assert.equal(
      report.staleAccepts,
      0,
      `${run.fault}: host ${report.host} accepted after the revoke`,
    );
    assert.ok(report.accepts > 0, `${run.fault}: host ${report.host} accepted before`);
  }
}

describe('several hosts on etcd, in network namespaces', { skip: why ?? false }, () => {
  let cluster: MultiHost;

  before(
    async () => {
      cluster = await startMultiHost({ netns: true, leaseSeconds: 2 });
    },
    { timeout: 120_000 },
  );

  after(
    async () => {
      await cluster?.stop();
    },
    { timeout: 120_000 },
  );

  it('a token made on A works on B and C; revoked on A, B and C refuse from the moment it returns', {
    timeout: SCENARIO_MS,
  }, async () => {
    const run = await revokeUnder(cluster, null);
    assertNoStaleAccepts(run);
    for (const report of run.reports) assert.equal(report.unavailable, 0, 'nobody fenced');
  });

  for (const key of ['memberKilled', 'memberStopped'] as const) {
    it(`${FAULTS[key]?.name}: the revoke returns, 0 stale accepts, nothing acknowledged lost`, {
      timeout: SCENARIO_MS,
    }, async () => {
      const run = await revokeUnder(cluster, FAULTS[key] ?? null);
      assertNoStaleAccepts(run);
      await settle(cluster);
    });
  }

  for (const key of ['followerCut', 'leaderCut', 'agentKilled', 'compaction'] as const) {
    it(`${FAULTS[key]?.name}: the victim fences (503) on its own, 0 stale accepts anywhere`, {
      timeout: SCENARIO_MS,
    }, async () => {
      const run = await revokeUnder(cluster, FAULTS[key] ?? null);
      assertNoStaleAccepts(run);
      // A host that did not publish the revoke is fenced one lease after the commit: the
      // writer waits that long, not for etcd to expire the lease (its 500 ms sweep).
      assert.ok(
        (run.afterCommitMs ?? Infinity) < 2000 + 500,
        `returned ${run.afterCommitMs} ms after the commit`,
      );
      assert.notEqual(run.fenceMs, null, 'the victim answered 503');
      // Within the lease (2 s) plus what a loaded machine adds to a keepalive's round.
      assert.ok((run.fenceMs ?? Infinity) < 2000 + 1500, `fenced after ${run.fenceMs} ms`);
      // Back in sync after the fault healed: a new token works everywhere.
      await settle(cluster);
    });
  }

  it('tokenctl cluster status lists every host with its acked revision and lease', {
    timeout: SCENARIO_MS,
  }, async () => {
    const host = cluster.hosts[0];
    assert.ok(host);
    const out = await runChild(TOKENCTL, [
      '--config-dir',
      `${host.dir}/etc`,
      '--runtime-dir',
      `${host.dir}/run`,
      '--output',
      'json',
      'cluster',
      'status',
    ]);
    assert.equal(out.code, 0, out.stderr);
    const status = JSON.parse(out.stdout) as {
      hosts: Array<{
        host: string;
        live: boolean;
        ackedRevision: number;
        leaseRemainingMs: number;
      }>;
    };
    assert.deepEqual(status.hosts.map((h) => h.host).sort(), ['a', 'b', 'c']);
    for (const h of status.hosts) {
      assert.ok(h.ackedRevision > 0);
      assert.equal(h.live, true, `${h.host} is live`);
      // etcd tells a lease's time left in whole seconds: 0 means under one.
      assert.ok(h.leaseRemainingMs >= 0 && h.leaseRemainingMs <= 2000, `${h.leaseRemainingMs}`);
    }
  });

  it('nothing acknowledged is lost when members die: tokens made with one member down work everywhere after another dies', {
    timeout: SCENARIO_MS,
  }, async () => {
    const [first, second, third] = cluster.etcd.members;
    assert.ok(first && second && third);
    second.signal('SIGKILL');
    const made: Array<{ header: string; name: string }> = [];
    for (let i = 0; i < 3; i++) made.push(await makeToken(cluster.hosts[i % 3] as Host));
    await second.restart();
    // The quorum is now the first member and the restarted one: it must hold every acknowledged write.
    third.signal('SIGKILL');
    try {
      for (const token of made) {
        const verifiers = cluster.hosts.map((h) => startVerifier(h, token.header));
        try {
          await Promise.all(verifiers.map((v) => v.saw(200)));
        } finally {
          await Promise.all(verifiers.map((v) => v.stop()));
        }
      }
      // A linearizable read from the two members left: the quorum that must hold them.
      const quorum = new Etcd3({ hosts: [first.clientUrl, second.clientUrl] });
      const stored = await quorum
        .getAll()
        .prefix('/token-shadow/')
        .keys()
        .finally(() => quorum.close());
      for (const token of made) {
        assert.ok(
          stored.some((key) => key.endsWith(`!${token.name}`) && key.includes('/shadow/')),
          `the hash of ${token.name} is in etcd`,
        );
      }
    } finally {
      await third.restart();
    }
    await settle(cluster);
  });
});
