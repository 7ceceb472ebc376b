/**
 * The invariant run, shared by the multi-host tests and bench/cluster.ts: a
 * token made on one host, every host verifying it in a tight loop, a fault,
 * the revoke on a writer host, then the verifiers' accepts counted from the
 * instant the revoke returned (monotonic clock, the same in every namespace).
 * Each fault says what it breaks, which hosts must still refuse, and how the
 * system is made whole again.
 */
import { monotonicUs } from '../src/generations/fence.js';
import type { EtcdMember } from './etcd.js';
import type { Host, MultiHost, VerifierReport } from './multihost.js';
import { startVerifier } from './multihost.js';

export interface Fault {
  name: string;
  /** Breaks something; returns the index of the host cut off or killed, if any. */
  apply(cluster: MultiHost, writer: number): Promise<number | null>;
  restore(cluster: MultiHost, victim: number | null): Promise<void>;
  /** Picks the writer host for this fault (default 0). */
  writer?(cluster: MultiHost): Promise<number>;
}

export interface RevokeRun {
  fault: string;
  writer: string;
  victim: string | null;
  /** From sending the revoke to its answer. */
  revokeMs: number;
  /** The writer's own account: the commit, then the wait for every host after it. */
  commitMs: number | null;
  afterCommitMs: number | null;
  reports: Array<{ host: string } & VerifierReport>;
  /** The victim's verifier: ms from the fault until its first 503 (time to fence). */
  fenceMs: number | null;
}

let serial = 0;

/** Creates a token on `host` (root@pam's socket); returns its Authorization header. */
export async function makeToken(
  host: Host,
  userid = 'root@pam',
): Promise<{ header: string; name: string }> {
  const name = `t${process.pid}x${serial++}`;
  const created = await host.deployment.asRoot('token.create', {
    userid,
    tokenName: name,
    fields: { privsep: false },
  });
  if (!created.ok) throw new Error(`token.create: ${created.status} ${created.message}`);
  const value = (created.data as { value: string }).value;
  return { header: `PVEAPIToken=${userid}!${name}=${value}`, name };
}

export async function revokeUnder(cluster: MultiHost, fault: Fault | null): Promise<RevokeRun> {
  const writerIndex = (await fault?.writer?.(cluster)) ?? 0;
  const writer = cluster.hosts[writerIndex] as Host;
  const token = await makeToken(writer);
  const verifiers = cluster.hosts.map((h) => startVerifier(h, token.header));
  try {
    // Every host accepts the new token before anything breaks.
    await Promise.all(verifiers.map((v) => v.saw(200)));
    const faultUs = monotonicUs();
    const victim = fault ? await fault.apply(cluster, writerIndex) : null;
    const fenced = victim === null ? null : (verifiers[victim]?.saw(503) ?? null);
    const confirmed = (l: Record<string, unknown>) => l.msg === 'cluster change confirmed';
    const before = new Set(
      writer.deployment.managerLog.lines.filter(confirmed).map((l) => l.revision),
    );
    const sentUs = monotonicUs();
    const answer = await writer.deployment.asRoot('token.delete', {
      userid: 'root@pam',
      tokenName: token.name,
    });
    const returnedUs = monotonicUs();
    if (!answer.ok) throw new Error(`token.delete: ${answer.status} ${answer.message}`);
    const timing = await writer.deployment.managerLog.waitFor(
      (l) => confirmed(l) && !before.has(l.revision),
    );
    // Every host now refuses: 401 when in sync, 503 when fenced.
    await Promise.all(verifiers.map((v) => v.saw(401, 503)));
    const reports = await Promise.all(
      verifiers.map(async (v, i) => ({
        host: (cluster.hosts[i] as Host).name,
        ...(await v.report(returnedUs)),
      })),
    );
    let fenceMs: number | null = null;
    if (fenced !== null && victim !== null) {
      await fenced;
      const first = (await (verifiers[victim] as (typeof verifiers)[number]).report(faultUs))
        .firstUnavailableUs;
      fenceMs = first === null ? null : (first - faultUs) / 1000;
    }
    if (fault) await fault.restore(cluster, victim);
    return {
      fault: fault?.name ?? 'healthy',
      writer: writer.name,
      victim: victim === null ? null : (cluster.hosts[victim] as Host).name,
      revokeMs: (returnedUs - sentUs) / 1000,
      commitMs: typeof timing.commitMs === 'number' ? timing.commitMs : null,
      afterCommitMs: typeof timing.confirmMs === 'number' ? timing.confirmMs : null,
      reports,
      fenceMs,
    };
  } finally {
    await Promise.all(verifiers.map((v) => v.stop()));
  }
}

/** Waits until every host accepts a fresh token: the cluster is whole again. */
export async function settle(cluster: MultiHost): Promise<void> {
  const token = await makeToken(cluster.hosts[0] as Host);
  const verifiers = cluster.hosts.map((h) => startVerifier(h, token.header));
  try {
    await Promise.all(verifiers.map((v) => v.saw(200)));
  } finally {
    await Promise.all(verifiers.map((v) => v.stop()));
  }
}

/** Some host other than `not` (and other than `also`, when there is one). */
function other(cluster: MultiHost, ...not: number[]): number {
  const index = cluster.hosts.findIndex((_, i) => !not.includes(i));
  if (index < 0) throw new Error('not enough hosts');
  return index;
}

/** A fault on etcd's second member; no host is cut off. */
function memberFault(
  name: string,
  harm: (member: EtcdMember) => void,
  mend: (member: EtcdMember) => Promise<void> | void,
): Fault {
  return {
    name,
    async apply(cluster) {
      const member = cluster.etcd.members[1];
      if (member) harm(member);
      return null;
    },
    async restore(cluster) {
      const member = cluster.etcd.members[1];
      if (member) await mend(member);
    },
  };
}

/**
 * A fault on one host: `writer` picks the host that revokes (default 0),
 * `victim` the host broken; `mend` makes it whole again.
 */
function hostFault(fault: {
  name: string;
  writer?: (cluster: MultiHost) => Promise<number>;
  victim: (cluster: MultiHost, writer: number) => Promise<number> | number;
  harm: (host: Host) => void;
  mend: (host: Host, cluster: MultiHost) => Promise<void> | void;
}): Fault {
  return {
    name: fault.name,
    ...(fault.writer ? { writer: fault.writer } : {}),
    async apply(cluster, writer) {
      const victim = await fault.victim(cluster, writer);
      fault.harm(cluster.hosts[victim] as Host);
      return victim;
    },
    async restore(cluster, victim) {
      if (victim !== null) await fault.mend(cluster.hosts[victim] as Host, cluster);
    },
  };
}

export const FAULTS: Record<string, Fault> = {
  memberKilled: memberFault(
    'etcd member SIGKILLed',
    (member) => member.signal('SIGKILL'),
    (member) => member.restart(),
  ),
  memberStopped: memberFault(
    'etcd member SIGSTOPped',
    (member) => member.signal('SIGSTOP'),
    (member) => member.signal('SIGCONT'),
  ),
  followerCut: hostFault({
    name: "a follower host's link cut",
    writer: (cluster) => cluster.leader(),
    victim: other,
    harm: (host) => host.link(false),
    mend: (host) => host.link(true),
  }),
  leaderCut: hostFault({
    name: "the leader host's link cut",
    writer: async (cluster) => other(cluster, await cluster.leader()),
    victim: (cluster) => cluster.leader(),
    harm: (host) => host.link(false),
    mend: (host) => host.link(true),
  }),
  agentKilled: hostFault({
    name: "a host's manager (sync agent) SIGKILLed",
    victim: other,
    harm: (host) => host.deployment.manager.kill('SIGKILL'),
    mend: (host) => host.restartManager(),
  }),
  compaction: hostFault({
    name: 'agent stalled past a compaction',
    victim: other,
    harm: (host) => host.deployment.manager.kill('SIGSTOP'),
    async mend(host, cluster) {
      // The revoke and more changes happened while it slept; compact them away.
      await makeToken(cluster.hosts[0] as Host);
      const { header } = await cluster.client.kv.range({ key: Buffer.from('/') });
      await cluster.client.kv.compact({ revision: header.revision, physical: true });
      host.deployment.manager.kill('SIGCONT');
    },
  }),
};
