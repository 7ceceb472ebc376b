/**
 * The writer's half of the mutation protocol: after a commit at revision R,
 * return only when every live host acked >= R, or its `hosts/` key vanished
 * (its lease expired) or was replaced by a new session (which starts from a
 * read at >= R), or one lease has passed since the commit returned: a host
 * extends its fence for a keepalive only once it published every revision a
 * read after that keepalive saw (agent.ts), so a host that has not published
 * R trusts its copy at most until (a keepalive sent before the commit + TTL
 * - margin), and is fenced by then without etcd having to expire its lease
 * (which etcd 3.4 notices only on its 500 ms sweep). One
 * watch on `acks/` and `hosts/`, kept for the life of the manager, so a
 * healthy revoke costs the commit, one read of `hosts/` and the acks' trip;
 * it moves to another member when its own fails a call or disconnects (a
 * watch stream has no deadline: on a silent member it would wait forever).
 */
import type { IKeyValue, Watcher } from 'etcd3';
import { dropWatcher, type EtcdMembers, watchOn } from './client.js';
import type { ClusterKeys } from './keys.js';
import { prefixEnd } from './store.js';

/** How often a waiting confirmation reads acks/ directly. */
const POLL_MS = 250;

export interface AckTrackerOptions {
  /** The hosts' lease: one lease after a commit, a host that did not publish it is fenced. */
  leaseMs: number;
  deadlineMs: number;
}

export class AckTracker {
  #members: EtcdMembers;
  #keys: ClusterKeys;
  #options: AckTrackerOptions;
  #acks = new Map<string, number>();
  /** host -> the session value its key holds now, and the revision it last changed at. */
  #hosts = new Map<string, string>();
  #changedAt = new Map<string, number>();
  #wake = new Set<() => void>();
  #watchers: Watcher[] = [];
  /** The member the watches are on. */
  #watching: number | null = null;
  #ready: Promise<void> | null = null;
  #closed = false;
  #unsubscribe: () => void;

  constructor(members: EtcdMembers, keys: ClusterKeys, options: AckTrackerOptions) {
    this.#members = members;
    this.#keys = keys;
    this.#options = options;
    this.#unsubscribe = members.onDown((member) => {
      if (member === this.#watching) this.#restart();
    });
  }

  /**
   * Waits until every live host confirmed `revision`, committed (its answer
   * received) at `committedAtMs` (performance.now()), and at most one lease
   * after that: by then a host that has not published it is fenced, so the
   * wait needs nothing from etcd to end (not even the list of hosts, which a
   * member cut off with the old leader may be slow to give).
   */
  async confirm(revision: number, committedAtMs = performance.now()): Promise<void> {
    const lapse = new AbortController();
    const timer = setTimeout(
      () => lapse.abort(),
      Math.max(0, committedAtMs + this.#options.leaseMs - performance.now()),
    );
    const lapsed = new Promise<void>((resolve) => {
      lapse.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    try {
      // An ack path that fails (etcd unreachable from here) still ends at the lapse.
      await Promise.race([this.#acked(revision, lapse.signal).catch(() => lapsed), lapsed]);
    } finally {
      clearTimeout(timer);
      lapse.abort(); // ends the ack wait too, so that nothing keeps polling after the call returned
    }
  }

  /** Resolves once every host live after the commit acked `revision` (or its session ended), or at `lapse`. */
  async #acked(revision: number, lapse: AbortSignal): Promise<void> {
    this.#ready ??= this.#start().catch((error: unknown) => {
      this.#ready = null;
      throw error;
    });
    await this.#ready;
    if (lapse.aborted) return;
    const live = await this.#liveHosts();
    const pending = new Map(live.hosts);
    const settled = () => {
      for (const [host, session] of pending) {
        const acked = (this.#acks.get(host) ?? 0) >= revision;
        const gone =
          (this.#changedAt.get(host) ?? 0) > live.revision && this.#hosts.get(host) !== session;
        if (acked || gone) pending.delete(host);
      }
      return pending.size === 0 || lapse.aborted;
    };
    if (settled()) return;
    await new Promise<void>((resolve) => {
      // The watch is the fast path; a watch on a member that went silent
      // (SIGSTOP) delivers nothing, so read the keys directly now and then too.
      const poller = setInterval(() => {
        this.#poll().catch(() => undefined);
      }, POLL_MS);
      const check = () => {
        if (!settled()) return;
        clearInterval(poller);
        this.#wake.delete(check);
        lapse.removeEventListener('abort', check);
        resolve();
      };
      this.#wake.add(check);
      lapse.addEventListener('abort', check);
    });
  }

  /** Reads the acks and opens the watches now, so that the first change does not wait for them. */
  prepare(): void {
    this.#ready ??= this.#start().catch(() => {
      this.#ready = null;
    });
  }

  /** What the tracker knows now: acked revision per host (tokenctl cluster status). */
  acks(): ReadonlyMap<string, number> {
    return this.#acks;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    for (const watcher of this.#watchers) dropWatcher(watcher);
    this.#watchers = [];
  }

  async #liveHosts(): Promise<{ hosts: Map<string, string>; revision: number }> {
    const response = await this.#members.call(
      'reading hosts',
      { deadlineMs: this.#options.deadlineMs, idempotent: true },
      (client) =>
        client.kv.range({
          key: Buffer.from(this.#keys.hosts),
          range_end: prefixEnd(this.#keys.hosts),
        }),
    );
    const hosts = new Map<string, string>();
    for (const kv of response.kvs) {
      hosts.set(kv.key.toString().slice(this.#keys.hosts.length), kv.value.toString());
    }
    return { hosts, revision: Number(response.header.revision) };
  }

  /** acks/ and hosts/ at one revision. */
  async #read() {
    const prefixes = [this.#keys.acks, this.#keys.hosts];
    const response = await this.#members.call(
      'reading acks',
      { deadlineMs: this.#options.deadlineMs, idempotent: true },
      (client) =>
        client.kv.txn({
          compare: [],
          success: prefixes.map((p) => ({
            request_range: { key: Buffer.from(p), range_end: prefixEnd(p) },
          })),
          failure: [],
        }),
    );
    const [acks, hosts] = response.responses.map((r) => r.response_range?.kvs ?? []);
    return { revision: Number(response.header.revision), acks: acks ?? [], hosts: hosts ?? [] };
  }

  /** A direct read: acks only grow; a host whose key changed or vanished is marked at this revision. */
  async #poll(): Promise<number> {
    const { revision, acks, hosts } = await this.#read();
    for (const kv of acks) this.#apply(kv, false);
    const now = new Map(
      hosts.map((kv) => [kv.key.toString().slice(this.#keys.hosts.length), kv.value.toString()]),
    );
    for (const [host, session] of this.#hosts) {
      if (now.get(host) !== session)
        this.#changedAt.set(host, Math.max(this.#changedAt.get(host) ?? 0, revision));
    }
    for (const [host, session] of now) {
      if (this.#hosts.get(host) !== session)
        this.#changedAt.set(host, Math.max(this.#changedAt.get(host) ?? 0, revision));
    }
    this.#hosts = now;
    this.#notify();
    return revision;
  }

  /**
   * Reads acks/ and hosts/ at one revision, then watches both from the next
   * one on the first member up that answers the watch in time.
   */
  async #start(): Promise<void> {
    const prefixes = [this.#keys.acks, this.#keys.hosts];
    // A direct read first: also marks hosts that changed or vanished while no watch was on.
    const revision = await this.#poll();
    const timeoutMs = this.#members.settings.callTimeoutMs;
    for (const member of this.#members.order()) {
      const watchers: Watcher[] = [];
      for (const prefix of prefixes) {
        const opened = await watchOn(
          this.#members
            .client(member)
            .watch()
            .prefix(prefix)
            .startRevision(String(revision + 1)),
          timeoutMs,
        );
        if ('error' in opened) break;
        watchers.push(opened.watcher);
      }
      if (watchers.length < prefixes.length) {
        for (const watcher of watchers) dropWatcher(watcher);
        this.#members.markDown(member);
        continue;
      }
      if (this.#closed) {
        for (const watcher of watchers) dropWatcher(watcher);
        return;
      }
      for (const watcher of watchers) {
        watcher.on('put', (kv) => this.#apply(kv, false));
        watcher.on('delete', (kv) => this.#apply(kv, true));
        // Cancelled (a compaction) or its member gone: start again from a fresh read.
        watcher.on('error', () => this.#restart());
        watcher.on('disconnected', () => this.#restart());
      }
      this.#watchers = watchers;
      this.#watching = member;
      return;
    }
    throw new Error('watching acks: no member answered');
  }

  #restart(): void {
    if (this.#closed || this.#watching === null) return;
    this.#watching = null;
    const old = this.#watchers;
    this.#watchers = [];
    for (const w of old) dropWatcher(w);
    this.#ready = this.#start().then(
      () => this.#notify(),
      () => {
        this.#ready = null;
      },
    );
  }

  #apply(kv: IKeyValue, deleted: boolean): void {
    const key = kv.key.toString();
    if (key.startsWith(this.#keys.acks)) {
      const host = key.slice(this.#keys.acks.length);
      const value = deleted ? 0 : Number(kv.value.toString());
      if (Number.isSafeInteger(value))
        this.#acks.set(host, Math.max(this.#acks.get(host) ?? 0, value));
    } else if (key.startsWith(this.#keys.hosts)) {
      const host = key.slice(this.#keys.hosts.length);
      if (deleted) this.#hosts.delete(host);
      else this.#hosts.set(host, kv.value.toString());
      this.#changedAt.set(host, Number(kv.mod_revision));
    }
    this.#notify();
  }

  #notify(): void {
    for (const wake of [...this.#wake]) wake();
  }
}
