/**
 * Issue 24: several hosts stay up when one etcd member does not. A real
 * 3-member etcd and three hosts (manager with its sync agent, API workers),
 * every host and every member in a network namespace of its own. With any
 * one member killed, frozen (SIGSTOP) or cut off for 20 s, no host refuses a
 * valid token for longer than the lease + 1 s, each serves >= 90% of the
 * window, and a revoke through any host returns within 1 s of its sending
 * with 0 accepts after it returned; their median is <= 100 ms when the
 * machine is as quiet as the benchmark's (the same revokes just before the
 * fault, every member up, have a median <= 25 ms, and the load average over
 * the last minute is at most the number of cores): on a busier machine that
 * median measures the machine, so it is printed as a diagnostic, and the
 * benchmark records it against the bound. With two members
 * down, every host fences within the lease and serves again <= 3 s after a
 * majority is back. Needs root and a kernel that allows namespaces; says
 * why when it skips.
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import { after, before, describe, it } from 'node:test';
import {
  availabilityUnder,
  median,
  ONE_MEMBER_FAULTS,
  outageUnder,
  TWO_MEMBER_FAULTS,
} from '../harness/availability.js';
import { etcdUnavailable } from '../harness/etcd.js';
import { type MultiHost, netnsUnavailable, startMultiHost } from '../harness/multihost.js';
import { settle } from '../harness/revoke-scenarios.js';

const LEASE_MS = 2000;
/** The bounds. */
const LONGEST_REFUSAL_MS = LEASE_MS + 1000;
const SERVED_SHARE = 0.9;
const REVOKE_MAX_MS = 1000;
const REVOKE_MEDIAN_MS = 100;
/** The healthy revoke median up to which the machine counts as quiet (the benchmark's: 12 ms). */
const QUIET_REVOKE_MS = 25;
const RECOVERY_MS = 3000;

const why = etcdUnavailable() ?? netnsUnavailable();
if (why) process.stdout.write(`# multi-host availability tests skipped: ${why}\n`);

describe('one etcd member down is not an outage', { skip: why ?? false }, () => {
  let cluster: MultiHost;

  before(
    async () => {
      cluster = await startMultiHost({ netns: true, leaseSeconds: LEASE_MS / 1000 });
    },
    { timeout: 120_000 },
  );

  after(
    async () => {
      await cluster?.stop();
    },
    { timeout: 120_000 },
  );

  for (const [key, fault] of Object.entries(ONE_MEMBER_FAULTS)) {
    it(`${fault.name}: every host serves, a revoke through any host returns within 1 s`, {
      timeout: 120_000,
    }, async (t) => {
      const run = await availabilityUnder(cluster, fault);
      const detail = JSON.stringify(run);
      for (const host of run.hosts) {
        assert.ok(
          host.longestRefusalMs <= LONGEST_REFUSAL_MS,
          `${key}: host ${host.host} refused a valid token for ${host.longestRefusalMs} ms: ${detail}`,
        );
        assert.ok(
          host.servedShare >= SERVED_SHARE,
          `${key}: host ${host.host} served ${host.servedShare} of the window: ${detail}`,
        );
      }
      assert.equal(run.staleAccepts, 0, `${key}: a revoked token was accepted after its revoke`);
      assert.equal(run.revokes.length, 12);
      const slowest = Math.max(...run.revokes.map((r) => r.ms));
      assert.ok(slowest <= REVOKE_MAX_MS, `${key}: a revoke took ${slowest} ms: ${detail}`);
      const middle = median(run.revokes.map((r) => r.ms));
      const healthy = median(run.healthyRevokes);
      t.diagnostic(
        `${key}: revoke median ${middle.toFixed(1)} ms (every member up just before: ${healthy.toFixed(1)} ms); longest refusal ${Math.max(...run.hosts.map((h) => h.longestRefusalMs)).toFixed(0)} ms`,
      );
      // Others' work on the machine (a 1-minute load above the cores) slows every commit's fsync.
      const load = os.loadavg()[0] as number;
      t.diagnostic(`${key}: load average ${load.toFixed(1)} on ${os.availableParallelism()} cores`);
      if (healthy <= QUIET_REVOKE_MS && load <= os.availableParallelism()) {
        assert.ok(middle <= REVOKE_MEDIAN_MS, `${key}: revoke median ${middle} ms: ${detail}`);
      }
      await settle(cluster);
    });
  }

  for (const [key, fault] of Object.entries(TWO_MEMBER_FAULTS)) {
    it(`${fault.name}: every host fences within the lease, serves again <= 3 s after a majority is back`, {
      timeout: 120_000,
    }, async () => {
      const run = await outageUnder(cluster, fault);
      const detail = JSON.stringify(run);
      for (const host of run.hosts) {
        assert.ok(
          host.fencedAfterMs <= LEASE_MS,
          `${key}: host ${host.host} fenced ${host.fencedAfterMs} ms after: ${detail}`,
        );
        assert.ok(
          host.servedAgainAfterMs <= RECOVERY_MS,
          `${key}: host ${host.host} served again ${host.servedAgainAfterMs} ms after: ${detail}`,
        );
      }
      await settle(cluster);
    });
  }
});
