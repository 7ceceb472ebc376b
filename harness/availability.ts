/**
 * Availability under etcd member faults (issue 24), shared by the multi-host
 * test and bench/cluster.ts. Every host is asked for a valid token every
 * 50 ms by a probe in its namespace; a fault hits one member (killed,
 * frozen, cut off) or two. With a majority alive, tokens are revoked through
 * every host in turn once a live member leads, each revoke timed from send to
 * answer, and the probes check that no host accepts a revoked token after its
 * revoke returned. With two members down, each host must fence within the
 * lease and serve again soon after a majority is back.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { monotonicUs } from '../src/generations/fence.js';
import type { Host, MultiHost } from './multihost.js';
import { makeToken } from './revoke-scenarios.js';

const harnessDir = fileURLToPath(new URL('./', import.meta.url));

export const PROBE_PERIOD_MS = 50;

export interface ProbeWindow {
  requests: number;
  served: number;
  /** Longest run of refusals (503, 401; from the send of the first to the send of the next 200; requests left unanswered, the machine too busy, are skipped), ms. */
  longestRefusalMs: number;
  /** Part of the window outside refusal runs, 0..1. */
  servedShare: number;
  /** Answers other than 200, by status (0: no answer within 1 s). */
  refusals: Record<string, number>;
  /** When the longest refusal began, ms into the window. */
  longestRefusalStartMs: number | null;
}

export interface Probe {
  child: ChildProcess;
  window(token: string, fromUs: number, toUs: number): Promise<ProbeWindow>;
  /** The send time (monotonic µs) of the first answer with one of `statuses` sent at or after `sinceUs`. */
  wait(token: string, statuses: number[], sinceUs: number): Promise<number>;
  accepts(token: string, sinceUs: number): Promise<number>;
  stop(): Promise<void>;
}

/** A probe of `host` for the named tokens (name -> Authorization header). */
export function startProbe(host: Host, tokens: Array<[string, string]>): Probe {
  const argv = [
    path.join(harnessDir, 'cluster-availability.js'),
    host.api.url,
    String(PROBE_PERIOD_MS),
    JSON.stringify(tokens),
  ];
  const child = host.netns
    ? spawn('ip', ['netns', 'exec', host.netns, process.execPath, ...argv], {
        stdio: ['pipe', 'pipe', 'inherit'],
      })
    : spawn(process.execPath, argv, { stdio: ['pipe', 'pipe', 'inherit'] });
  const pending = new Map<string, (line: Record<string, unknown>) => void>();
  let serial = 0;
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
    try {
      const line = JSON.parse(text) as Record<string, unknown>;
      const id = String(line.id);
      pending.get(id)?.(line);
      pending.delete(id);
    } catch {
      // not a protocol line
    }
  });
  const ask = (...words: Array<string | number>) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = String(serial++);
      pending.set(id, resolve);
      child.once('exit', (code) => reject(new Error(`probe of ${host.name} exited (${code})`)));
      child.stdin?.write(`${[id, ...words].join(' ')}\n`);
    });
  return {
    child,
    async window(token, fromUs, toUs) {
      return (await ask('window', token, fromUs, toUs)) as unknown as ProbeWindow;
    },
    async wait(token, statuses, sinceUs) {
      return Number((await ask('wait', token, statuses.join(','), sinceUs)).sentUs);
    },
    async accepts(token, sinceUs) {
      return Number((await ask('accepts', token, sinceUs)).accepts);
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.stdin?.end();
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

export interface MemberFault {
  name: string;
  /** Breaks one member (or two); returns their indexes. */
  apply(cluster: MultiHost): Promise<number[]>;
  /** Makes one of them whole again (the first), awaiting its readiness. */
  restoreOne(cluster: MultiHost, members: number[]): Promise<void>;
  restoreAll(cluster: MultiHost, members: number[]): Promise<void>;
}

async function follower(cluster: MultiHost): Promise<number> {
  const leader = await cluster.leader();
  return (leader + 1) % cluster.etcd.members.length;
}

function restoring(
  undo: (cluster: MultiHost, member: number) => Promise<void>,
): Pick<MemberFault, 'restoreOne' | 'restoreAll'> {
  return {
    async restoreOne(cluster, members) {
      const first = members[0];
      if (first !== undefined) await undo(cluster, first);
    },
    async restoreAll(cluster, members) {
      for (const member of members) await undo(cluster, member);
    },
  };
}

const restart = (cluster: MultiHost, member: number) =>
  (cluster.etcd.members[member] as (typeof cluster.etcd.members)[number]).restart();
const resume = async (cluster: MultiHost, member: number) =>
  cluster.etcd.members[member]?.signal('SIGCONT');
const reconnect = async (cluster: MultiHost, member: number) => cluster.memberLink(member, true);

/** Faults a 3-member etcd must survive: one member down, frozen or cut off. */
export const ONE_MEMBER_FAULTS: Record<string, MemberFault> = {
  followerKilled: {
    name: 'a follower SIGKILLed',
    async apply(cluster) {
      const member = await follower(cluster);
      cluster.etcd.members[member]?.signal('SIGKILL');
      return [member];
    },
    ...restoring(restart),
  },
  leaderKilled: {
    name: 'the leader SIGKILLed',
    async apply(cluster) {
      const member = await cluster.leader();
      cluster.etcd.members[member]?.signal('SIGKILL');
      return [member];
    },
    ...restoring(restart),
  },
  leaderStopped: {
    name: 'the leader SIGSTOPped (frozen)',
    async apply(cluster) {
      const member = await cluster.leader();
      cluster.etcd.members[member]?.signal('SIGSTOP');
      return [member];
    },
    ...restoring(resume),
  },
  leaderCut: {
    name: "the leader's link cut (the member alone)",
    async apply(cluster) {
      const member = await cluster.leader();
      cluster.memberLink(member, false);
      return [member];
    },
    ...restoring(reconnect),
  },
};

/** Faults that take the majority: an outage, which must be safe. */
export const TWO_MEMBER_FAULTS: Record<string, MemberFault> = {
  twoKilled: {
    name: 'two members SIGKILLed',
    async apply(cluster) {
      const leader = await cluster.leader();
      const members = [leader, (leader + 1) % cluster.etcd.members.length];
      for (const m of members) cluster.etcd.members[m]?.signal('SIGKILL');
      return members;
    },
    ...restoring(restart),
  },
  twoStopped: {
    name: 'two members SIGSTOPped',
    async apply(cluster) {
      const leader = await cluster.leader();
      const members = [leader, (leader + 1) % cluster.etcd.members.length];
      for (const m of members) cluster.etcd.members[m]?.signal('SIGSTOP');
      return members;
    },
    ...restoring(resume),
  },
};

export interface HostAvailability {
  host: string;
  longestRefusalMs: number;
  servedShare: number;
  refusals: Record<string, number>;
  longestRefusalStartMs: number | null;
}

export interface OneMemberRun {
  fault: string;
  windowMs: number;
  hosts: HostAvailability[];
  /** Each revoke, from send to answer, ms, with the host it went through. */
  revokes: Array<{ host: string; ms: number }>;
  /** Accepts of a revoked token sent after its revoke returned, on any host. */
  staleAccepts: number;
  /** From the fault until a live member led (when the revokes began), ms. */
  failoverMs: number;
  /** The same revokes just before the fault, with every member up (this machine's pace now), ms. */
  healthyRevokes: number[];
  /** What the managers logged about the cluster from the fault on (to read a failure by). */
  notes: string[];
}

/** The managers' cluster log lines since `sinceMs` (wall clock), short. */
function notesSince(cluster: MultiHost, sinceMs: number): string[] {
  return cluster.hosts.flatMap((h) =>
    h.deployment.managerLog.lines
      .filter((l) => Number(l.time) >= sinceMs && /cluster|fence/.test(String(l.msg)))
      .map((l) => {
        const { msg, reason, from, why, commitMs, confirmMs } = l as Record<string, unknown>;
        const at = new Date(Number(l.time)).toISOString().slice(14, 23);
        const timing =
          typeof commitMs === 'number' && typeof confirmMs === 'number'
            ? `commit ${commitMs.toFixed(0)} ms, confirm ${confirmMs.toFixed(0)} ms`
            : '';
        const said = [reason, from, why, timing].filter(Boolean).join(' ');
        return `${at} ${h.name}: ${String(msg)} ${said}`;
      }),
  );
}

async function liveLeader(cluster: MultiHost, faulted: number[]): Promise<void> {
  // Each look asks every member with a deadline; a dead one fails at once, a silent one in 1 s.
  for (;;) {
    const leader = await cluster.leader().catch(() => null);
    if (leader !== null && !faulted.includes(leader)) return;
  }
}

/**
 * One member faulted for `windowMs`: every host's longest refusal of a valid
 * token and share served over the window, and `revokesPerHost` revokes
 * through each host once a live member leads.
 */
export async function availabilityUnder(
  cluster: MultiHost,
  fault: MemberFault,
  options: { windowMs?: number; revokesPerHost?: number } = {},
): Promise<OneMemberRun> {
  const windowMs = options.windowMs ?? 20_000;
  const perHost = options.revokesPerHost ?? 4;
  const writer = cluster.hosts[0] as Host;
  const valid = await makeToken(writer);
  const doomed = await Promise.all(
    cluster.hosts.map(async () => {
      const list = [];
      for (let i = 0; i < perHost; i++) list.push(await makeToken(writer));
      return list;
    }),
  );
  const revoke = async (
    host: Host,
    name: string,
  ): Promise<{ sentUs: number; returnedUs: number }> => {
    const sentUs = monotonicUs();
    const answer = await host.deployment.asRoot('token.delete', {
      userid: 'root@pam',
      tokenName: name,
    });
    const returnedUs = monotonicUs();
    if (!answer.ok)
      throw new Error(`revoke through ${host.name}: ${answer.status} ${answer.message}`);
    return { sentUs, returnedUs };
  };
  // The baseline: as many revokes through the same hosts, every member up.
  const healthyRevokes: number[] = [];
  for (let round = 0; round < perHost; round++) {
    for (const host of cluster.hosts) {
      const { sentUs, returnedUs } = await revoke(host, (await makeToken(writer)).name);
      healthyRevokes.push((returnedUs - sentUs) / 1000);
    }
  }
  // Every host watches the valid token and the first token revoked through each host.
  const watched: Array<[string, string]> = [
    ['valid', valid.header],
    ...doomed.map(
      (list, i) => [`r${i}`, (list[0] as { header: string }).header] as [string, string],
    ),
  ];
  const probes = cluster.hosts.map((h) => startProbe(h, watched));
  let faulted: number[] = [];
  try {
    await Promise.all(probes.flatMap((p) => watched.map(([name]) => p.wait(name, [200], 0))));
    const faultMs = Date.now();
    const faultUs = monotonicUs();
    const windowEnd = new Promise((resolve) => setTimeout(resolve, windowMs));
    faulted = await fault.apply(cluster);
    await liveLeader(cluster, faulted);
    const failoverMs = (monotonicUs() - faultUs) / 1000;
    const revokes: OneMemberRun['revokes'] = [];
    const returned = new Map<string, number>();
    for (let round = 0; round < perHost; round++) {
      for (const [i, host] of cluster.hosts.entries()) {
        const token = doomed[i]?.[round] as { name: string };
        const { sentUs, returnedUs } = await revoke(host, token.name);
        revokes.push({ host: host.name, ms: (returnedUs - sentUs) / 1000 });
        if (round === 0) returned.set(`r${i}`, returnedUs);
      }
    }
    // The window is a measurement span, not a synchronisation: it runs its length.
    await windowEnd;
    const endUs = faultUs + windowMs * 1000;
    const hosts = await Promise.all(
      probes.map(async (p, i) => {
        const w = await p.window('valid', faultUs, endUs);
        return {
          host: (cluster.hosts[i] as Host).name,
          longestRefusalMs: w.longestRefusalMs,
          servedShare: w.servedShare,
          refusals: w.refusals,
          longestRefusalStartMs: w.longestRefusalStartMs,
        };
      }),
    );
    let staleAccepts = 0;
    for (const p of probes) {
      for (const [name, sinceUs] of returned) staleAccepts += await p.accepts(name, sinceUs);
    }
    const notes = notesSince(cluster, faultMs);
    return {
      fault: fault.name,
      windowMs,
      hosts,
      revokes,
      staleAccepts,
      failoverMs,
      healthyRevokes,
      notes,
    };
  } finally {
    await fault.restoreAll(cluster, faulted).catch(() => undefined);
    await Promise.all(probes.map((p) => p.stop()));
  }
}

export interface OutageRun {
  fault: string;
  /** Per host: from the fault to the first 503 (fenced), and from a majority back to the first 200, ms. */
  hosts: Array<{ host: string; fencedAfterMs: number; servedAgainAfterMs: number }>;
}

/** Two members faulted: every host must fence, then serve again once one is back. */
export async function outageUnder(cluster: MultiHost, fault: MemberFault): Promise<OutageRun> {
  const valid = await makeToken(cluster.hosts[0] as Host);
  const probes = cluster.hosts.map((h) => startProbe(h, [['valid', valid.header]]));
  let faulted: number[] = [];
  let restored = 0;
  try {
    await Promise.all(probes.map((p) => p.wait('valid', [200], 0)));
    const faultUs = monotonicUs();
    faulted = await fault.apply(cluster);
    const fenced = await Promise.all(probes.map((p) => p.wait('valid', [503], faultUs)));
    await fault.restoreOne(cluster, faulted);
    restored = 1;
    const backUs = monotonicUs();
    const served = await Promise.all(probes.map((p) => p.wait('valid', [200], backUs)));
    return {
      fault: fault.name,
      hosts: probes.map((_, i) => ({
        host: (cluster.hosts[i] as Host).name,
        fencedAfterMs: ((fenced[i] as number) - faultUs) / 1000,
        servedAgainAfterMs: ((served[i] as number) - backUs) / 1000,
      })),
    };
  } finally {
    await fault.restoreAll(cluster, faulted.slice(restored)).catch(() => undefined);
    await Promise.all(probes.map((p) => p.stop()));
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
