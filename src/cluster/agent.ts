/**
 * The sync agent, in each host's manager (still the only writer of the local
 * files): mirrors etcd into user.cfg and token.shadow with the existing
 * publish protocol (so workers, tokenctl's reads and the fast path stay as
 * they are), acks each revision it published, and keeps the host's fence.
 *
 * A session: grant a lease, put `hosts/<host>` on it, read everything
 * linearizably at R, publish, ack R, watch `data/` from R+1 and, for each
 * response, publish what it touched and ack. Every TTL/6 a keepalive; once
 * answered and a linearizable read after it succeeded (quorum, not a cut-off
 * leader), and once every data revision that read saw is published here, the
 * fence moves to (its send time + TTL - margin), before the lease can expire
 * on the server. That last condition lets a writer stop waiting for a host
 * one TTL after its commit (acks.ts): a keepalive sent after the commit
 * extends the fence only once the commit is published, so a host that never
 * published it is fenced by then, wherever it is cut off. A session ends on a cancelled watch (a
 * compaction), an expired lease, a keepalive unconfirmed for a whole TTL, or
 * a watch stuck behind the store for half a second (a silent member): the fence closes at once, and a new session (new client, new
 * lease) resynchronises from a fresh read.
 */
import { EtcdLeaseInvalidError, type IWatchResponse, type Watcher } from 'etcd3';
import { publishUnderLock } from '../files/publish.js';
import { fenceWriter, monotonicUs } from '../generations/fence.js';
import type { GenerationPage } from '../generations/page.js';
import { Slot } from '../generations/slots.js';
import { serializeShadow } from '../shadow/file.js';
import type { TokenStore } from '../store/token-store.js';
import { dropWatcher, EtcdMembers, isTransient, keepLeaseAlive, watchOn } from './client.js';
import { entriesToText } from './entries.js';
import { type ClusterKeys, CONFIG_KINDS, type EntryKind, slotOf } from './keys.js';
import type { ClusterSettings } from './settings.js';
import { EtcdStore, latestRevisionOf } from './store.js';
import { type ReplicaEvent, TokenReplica } from './token-replica.js';

export interface AgentLog {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface SyncAgentOptions {
  settings: ClusterSettings;
  keys: ClusterKeys;
  /** The host's page, writable: the agent bumps slots and stores the fence. */
  page: GenerationPage;
  userCfgPath: string;
  shadowPath: string;
  gid?: number | undefined;
  log: AgentLog;
  /**
   * The host's token database, when its tokens live there (`access.db`): the
   * store's tokens and secrets go into it (TokenReplica), not into user.cfg
   * and token.shadow.
   */
  tokens?: TokenStore | undefined;
}

export interface AgentStatus {
  host: string;
  /** Last revision published and acked; null before the first sync. */
  ackedRevision: number | null;
  /** Latest data revision seen in the store at the last check. */
  storeRevision: number | null;
  /** Revisions the host was behind at the last check. */
  lagRevisions: number | null;
  /** ms since the last confirmed keepalive (or the first sync). */
  sinceConfirmMs: number | null;
  fenced: boolean;
  /** ms of trust left on the fence (negative once passed). */
  fenceRemainingMs: number;
  sessions: number;
  syncing: boolean;
}

type SessionEnd = { reason: string };

/** How often the agent compares its acked revision with the store's, and how long behind is a stall. */
const STALL_CHECK_MS = 250;
const STALL_MS = 500;
/**
 * Leases without a confirmed keepalive after which a session starts afresh
 * (new connections, a new lease, a full read). Not one lease: a new leader
 * keeps the lease, so waiting out an election in the session is faster.
 */
const UNCONFIRMED_LEASES = 5;

export class SyncAgent {
  readonly settings: ClusterSettings;
  #options: SyncAgentOptions;
  #page: GenerationPage;
  #stopped = false;
  #loop: Promise<void> | null = null;
  #acked: number | null = null;
  #storeRevision: number | null = null;
  #confirmedAtUs: number | null = null;
  /** Confirmed keepalives waiting for the local copy to reach the revision read after them. */
  #pendingFence: Array<{ sentUs: number; revision: number }> = [];
  #sessions = 0;
  #syncing = false;
  #firstSync: { promise: Promise<void>; resolve: () => void };
  #endSession: ((end: SessionEnd) => void) | null = null;
  #published = { userCfg: null as string | null, shadow: null as string | null };
  /** The token database's copy of the store's tokens; null when the files hold them. */
  readonly #replica: TokenReplica | null;

  constructor(options: SyncAgentOptions) {
    this.#options = options;
    this.settings = options.settings;
    this.#page = options.page;
    this.#replica = options.tokens ? new TokenReplica(options.tokens) : null;
    let resolve: () => void = () => undefined;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.#firstSync = { promise, resolve };
  }

  /** Fences the host, then runs sessions until stop(); resolves when first in sync. */
  start(): Promise<void> {
    fenceWriter.close(this.#page);
    this.#loop ??= this.#run();
    return this.#firstSync.promise;
  }

  status(): AgentStatus {
    const remainingUs = this.#page.load(Slot.FENCE) - monotonicUs();
    return {
      host: this.settings.host,
      ackedRevision: this.#acked,
      storeRevision: this.#storeRevision,
      lagRevisions:
        this.#acked === null || this.#storeRevision === null
          ? null
          : Math.max(0, this.#storeRevision - this.#acked),
      sinceConfirmMs:
        this.#confirmedAtUs === null ? null : (monotonicUs() - this.#confirmedAtUs) / 1000,
      fenced: remainingUs <= 0,
      fenceRemainingMs: remainingUs / 1000,
      sessions: this.#sessions,
      syncing: this.#syncing,
    };
  }

  /** Ends the session, revokes the lease (so writers stop waiting for us) and stays fenced. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#endSession?.({ reason: 'stopping' });
    await this.#loop;
    fenceWriter.close(this.#page);
  }

  async #run(): Promise<void> {
    let pause = 50;
    while (!this.#stopped) {
      const startedAt = Date.now();
      const end = await this.#session().catch((error: unknown) => ({
        reason: String((error as Error)?.message ?? error).slice(0, 300),
      }));
      fenceWriter.close(this.#page);
      if (this.#stopped) break;
      this.#options.log.warn({ reason: end.reason }, 'cluster session ended: fenced, resyncing');
      pause = Date.now() - startedAt > 5000 ? 50 : Math.min(1000, pause * 2);
      await new Promise((resolve) => setTimeout(resolve, pause * (0.5 + Math.random())));
    }
  }

  async #session(): Promise<SessionEnd> {
    const { settings, keys } = this.#options;
    const ttlUs = settings.leaseSeconds * 1e6;
    const leaseMs = settings.leaseSeconds * 1000;
    this.#pendingFence = [];
    const members = new EtcdMembers(settings, keys.probe);
    const store = new EtcdStore(members, keys, { deadlineMs: leaseMs });
    // Ends every retry of this session once it is over: nothing outlives it.
    const over = new AbortController();
    const deadline = { deadlineMs: leaseMs, signal: over.signal };
    let watch: { watcher: Watcher; member: number } | null = null;
    let leaseId: string | null = null;
    let unsubscribe: () => void = () => undefined;
    let chain = Promise.resolve();
    let endSession: ((end: SessionEnd) => void) | null = null;
    const timers = new Set<NodeJS.Timeout>();
    this.#sessions++;
    this.#syncing = true;
    try {
      let grantSentUs = 0;
      const granted = await members.call('granting a lease', { ...deadline, write: true }, (c) => {
        grantSentUs = monotonicUs();
        return c.leaseClient.leaseGrant({ TTL: settings.leaseSeconds });
      });
      const id = String(granted.ID);
      leaseId = id;
      const registration = JSON.stringify({ lease: id, pid: process.pid, since: Date.now() });
      await members.call(
        'registering the host',
        { ...deadline, write: true, idempotent: true },
        (c) =>
          c.kv.put({
            key: Buffer.from(keys.host(settings.host)),
            value: Buffer.from(registration),
            lease: id,
          }),
      );
      // A long first read (a million tokens take seconds) must not let the lease lapse: keep
      // it alive meanwhile, each confirmed keepalive waiting (as tick's do) for the copy to
      // reach the revision read after it before it may move the fence.
      /**
       * A keepalive, and when the lease is still there, the store's latest data revision read
       * after it (linearizable: a partitioned leader still answers keepalives on its own until
       * it steps down, a quorum read only with a quorum). `latest` is null for an expired lease.
       */
      const keepAlive = async (): Promise<{ sentUs: number; latest: number | null }> => {
        // Each attempt carries its own send time: attempts may run at once (idempotent).
        const { ttl, sentUs } = await members.call(
          'keeping the lease',
          { ...deadline, write: true, idempotent: true },
          async (c) => {
            const sentUs = monotonicUs();
            return { ttl: await keepLeaseAlive(c, id, settings.callTimeoutMs), sentUs };
          },
        );
        if (ttl <= 0) return { sentUs, latest: null };
        const gens = await store.snapshot([], over.signal);
        return { sentUs, latest: latestRevisionOf(gens) };
      };
      const keeper = setInterval(() => {
        keepAlive()
          .then(({ sentUs, latest }) => {
            if (latest !== null) this.#pendingFence.push({ sentUs, revision: latest });
          })
          .catch(() => undefined);
      }, leaseMs / 6);
      timers.add(keeper);
      // With a token database, tokens are read page by page into it, at the same revision.
      const replica = this.#replica;
      const snapshot = await store.snapshot(
        replica === null ? undefined : CONFIG_KINDS.filter((kind) => kind !== 'token'),
      );
      const entries = new Map<string, string>();
      for (const [entryId, entry] of snapshot.entries) entries.set(entryId, entry.value);
      if (replica !== null) {
        const users = [...entries.keys()].flatMap((id) =>
          id.startsWith('user/') ? [id.slice(5)] : [],
        );
        const job = {
          settings,
          revision: snapshot.revision,
          users,
          path: this.#options.tokens?.path as string,
          gid: this.#options.gid,
        };
        const changed = await replica.resync(job, over.signal);
        this.#options.log.info({ changed }, 'cluster tokens copied into the token database');
      }
      await this.#publish(entries, new Set(['USER_AND_ACL', 'TOKEN_SHADOW']));
      clearInterval(keeper);
      timers.delete(keeper);
      await this.#ack(members, snapshot.revision, over.signal);
      this.#seen(latestRevisionOf(snapshot));
      // The snapshot was read after the grant was sent, and is published.
      this.#confirmedAtUs = grantSentUs;
      this.#extendFence(grantSentUs);
      this.#syncing = false;
      this.#firstSync.resolve();
      this.#options.log.info(
        { host: settings.host, revision: snapshot.revision, session: this.#sessions },
        'cluster in sync',
      );

      // This session's own end: a late failure of an older session must not end a newer one.
      let finish: (end: SessionEnd) => void = () => undefined;
      const ended = new Promise<SessionEnd>((resolve) => {
        finish = resolve;
      });
      endSession = finish;
      this.#endSession = finish;
      const end = (reason: string) => finish({ reason });
      if (this.#stopped) end('stopping');

      // Responses are applied one after another, in the order etcd sent them;
      // `received` is the newest revision a watch delivered, where a moved watch resumes.
      let received = snapshot.revision;
      const onData = (response: IWatchResponse) => {
        for (const event of response.events) {
          received = Math.max(received, Number(event.kv.mod_revision));
        }
        chain = chain
          .then(() => this.#apply(members, entries, response, over.signal))
          .catch((error) => end(`applying a change failed: ${String(error).slice(0, 200)}`));
      };
      /** Watches data/ on the first member up (other than `except`) that answers in time. */
      const openWatch = async (except?: number): Promise<void> => {
        for (const member of members.order(except === undefined ? {} : { except })) {
          if (over.signal.aborted) return;
          const opened = await watchOn(
            members
              .client(member)
              .watch()
              .prefix(keys.data)
              .startRevision(String(received + 1)),
            settings.callTimeoutMs,
          );
          if ('error' in opened) {
            // Cancelled by etcd (a compaction past `received`): only a fresh read helps.
            if (!isTransient(opened.error)) {
              return end(`watch cancelled: ${String(opened.error.message).slice(0, 200)}`);
            }
            members.markDown(member);
            continue;
          }
          const { watcher } = opened;
          watcher.on('data', onData);
          watcher.on('disconnected', () => moveWatch(`${members.endpoint(member)} disconnected`));
          watcher.on('error', (error) =>
            end(`watch cancelled: ${String(error?.message ?? error)}`),
          );
          watch = { watcher, member };
          return;
        }
        end('watching the store: no member answered');
      };
      let moving = false;
      /** Leaves a member that broke or went silent (watch streams have no deadline) for another. */
      const moveWatch = (why: string) => {
        if (moving || watch === null || over.signal.aborted) return;
        const old = watch;
        watch = null;
        moving = true;
        dropWatcher(old.watcher);
        members.markDown(old.member);
        this.#options.log.info({ from: members.endpoint(old.member), why }, 'cluster watch moved');
        openWatch(old.member)
          .catch((error) => end(`watch lost: ${String(error?.message ?? error).slice(0, 200)}`))
          .finally(() => {
            moving = false;
          });
      };
      unsubscribe = members.onDown((member) => {
        if (watch?.member === member) moveWatch(`${members.endpoint(member)} failed a call`);
      });
      await openWatch();

      /** True when the lease was confirmed; false sends the next keepalive at once. */
      const tick = async (): Promise<boolean> => {
        try {
          const { sentUs, latest } = await keepAlive();
          if (latest === null) {
            end('lease expired');
            return false;
          }
          this.#seen(latest);
          this.#confirmedAtUs = sentUs;
          this.#pendingFence.push({ sentUs, revision: latest });
          this.#releaseFence();
          return true;
        } catch (error) {
          if (error instanceof EtcdLeaseInvalidError) end('lease expired');
          // Unavailable (no quorum, an election): the fence runs out on its own. The session
          // goes on: its watch misses nothing, and etcd keeps a lease alive across an election,
          // so the next keepalive that gets through restores the fence without a resync.
          if (
            this.#confirmedAtUs !== null &&
            monotonicUs() - this.#confirmedAtUs > UNCONFIRMED_LEASES * ttlUs
          ) {
            end(`no keepalive confirmed for ${UNCONFIRMED_LEASES} leases`);
          }
          return false;
        }
      };
      // A silent stream (a SIGSTOPped member) delivers nothing: compare with the
      // store; a watch behind the same revision for STALL_MS moves to another member.
      let behind: { revision: number; sinceMs: number } | null = null;
      const stallCheck = async () => {
        try {
          const gens = await store.snapshot([], over.signal);
          const latest = latestRevisionOf(gens);
          this.#seen(latest);
          if (latest <= received || (behind !== null && received >= behind.revision)) {
            behind = null;
          }
          // Delivered but not yet published is the files' pace, not the watch's.
          if (latest <= received) return;
          behind ??= { revision: latest, sinceMs: performance.now() };
          if (performance.now() - behind.sinceMs > STALL_MS) {
            behind = null;
            moveWatch('it fell behind the store');
          }
        } catch {
          // Unreachable store: the keepalive check fences in time.
        }
      };
      /** Runs `fn` every `everyMs` after its last run ended; at once after one that returned false. */
      const loop = (fn: () => Promise<unknown>, everyMs: number) => {
        const run = (delayMs: number) => {
          const timer = setTimeout(() => {
            fn().then(
              (ok) => {
                if (!this.#stopped && !over.signal.aborted && timers.has(timer)) {
                  timers.delete(timer);
                  run(ok === false ? 0 : everyMs);
                }
              },
              () => undefined,
            );
          }, delayMs);
          timers.add(timer);
        };
        run(everyMs);
      };
      // TTL/6, not etcd's usual TTL/3: when the leader is lost, the fence then
      // still has most of a lease to last while the others elect a new one.
      loop(tick, leaseMs / 6);
      loop(stallCheck, STALL_CHECK_MS);
      const result = await ended;
      over.abort();
      await chain;
      return result;
    } finally {
      over.abort();
      if (this.#endSession === endSession) this.#endSession = null;
      this.#pendingFence = [];
      this.#syncing = true;
      unsubscribe();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      fenceWriter.close(this.#page);
      // Never wait for a member to confirm the watch's end: closing the clients ends it.
      if (watch !== null) dropWatcher((watch as { watcher: Watcher }).watcher);
      if (this.#stopped && leaseId !== null) {
        // So that writers stop waiting for this host at once; bounded, as the member may be silent.
        const lease = leaseId;
        await members
          .call(
            'revoking the lease',
            { deadlineMs: settings.callTimeoutMs, write: true, idempotent: true },
            (c) => c.leaseClient.leaseRevoke({ ID: lease }),
          )
          .catch(() => undefined);
      }
      members.close();
    }
  }

  /** A confirmed grant or keepalive sent at `sentUs`: the server keeps the lease past this. */
  #extendFence(sentUs: number): void {
    const { leaseSeconds, marginMs } = this.settings;
    fenceWriter.extend(this.#page, sentUs + leaseSeconds * 1e6 - marginMs * 1000);
  }

  /** Extends the fence for the newest confirmed keepalive whose read this host has published. */
  #releaseFence(): void {
    const applied = this.#acked ?? 0;
    let newest: number | null = null;
    this.#pendingFence = this.#pendingFence.filter((p) => {
      if (p.revision > applied) return true;
      newest = Math.max(newest ?? p.sentUs, p.sentUs);
      return false;
    });
    if (newest !== null) this.#extendFence(newest);
  }

  async #apply(
    members: EtcdMembers,
    entries: Map<string, string>,
    response: IWatchResponse,
    signal: AbortSignal,
  ): Promise<void> {
    const { keys } = this.#options;
    const touched = new Set<string>();
    const replicated: ReplicaEvent[] = [];
    let revision = 0;
    for (const event of response.events) {
      revision = Math.max(revision, Number(event.kv.mod_revision));
      const parsed = keys.parseData(event.kv.key.toString());
      if (parsed === null) continue;
      const value = event.type === 'Delete' ? null : event.kv.value.toString();
      if (this.#replica !== null && isTokenKind(parsed.kind)) {
        replicated.push({ kind: parsed.kind, id: parsed.id, value });
        continue;
      }
      const id = `${parsed.kind}/${parsed.id}`;
      if (value === null) entries.delete(id);
      else entries.set(id, value);
      touched.add(slotOf(parsed.kind));
    }
    if (revision === 0) return;
    // Tokens first: a user's removal never leaves its tokens behind on this host, even briefly.
    await this.#replica?.apply(replicated);
    await this.#publish(entries, touched);
    await this.#ack(members, revision, signal);
  }

  /** Writes the files whose slots were touched, when their text changed; each bumps its slot. */
  async #publish(
    entries: ReadonlyMap<string, string>,
    touched: ReadonlySet<string>,
  ): Promise<void> {
    const gid = this.#options.gid;
    if (touched.has('TOKEN_SHADOW') && this.#replica === null) {
      const hashes = new Map<string, string>();
      for (const [id, value] of entries)
        if (id.startsWith('shadow/')) hashes.set(id.slice(7), value);
      const text = serializeShadow(hashes);
      if (text !== this.#published.shadow) {
        await this.#write(
          this.#options.shadowPath,
          Slot.TOKEN_SHADOW,
          gid === undefined ? 0o600 : 0o640,
          text,
        );
        this.#published.shadow = text;
      }
    }
    if (touched.has('USER_AND_ACL')) {
      const lines = new Map<string, string>();
      for (const [id, value] of entries) if (!id.startsWith('shadow/')) lines.set(id, value);
      const text = entriesToText(lines);
      if (text !== this.#published.userCfg) {
        await this.#write(this.#options.userCfgPath, Slot.USER_AND_ACL, 0o640, text);
        this.#published.userCfg = text;
      }
    }
  }

  async #write(path: string, slot: number, mode: number, text: string): Promise<void> {
    await publishUnderLock(
      { path, page: this.#page, slot, mode, gid: this.#options.gid },
      async (publish) => {
        await publish(text);
      },
    );
  }

  async #ack(members: EtcdMembers, revision: number, signal: AbortSignal): Promise<void> {
    const key = Buffer.from(this.#options.keys.ack(this.settings.host));
    await members.call(
      'acknowledging',
      { deadlineMs: this.settings.leaseSeconds * 1000, write: true, idempotent: true, signal },
      (c) => c.kv.put({ key, value: Buffer.from(String(revision)) }),
    );
    this.#acked = Math.max(this.#acked ?? 0, revision);
    this.#page.store(Slot.CLUSTER_ACKED, this.#acked);
    this.#releaseFence();
  }

  #seen(revision: number): void {
    this.#storeRevision = revision;
    this.#page.store(Slot.CLUSTER_SEEN, revision);
  }
}

function isTokenKind(kind: EntryKind): kind is 'token' | 'shadow' {
  return kind === 'token' || kind === 'shadow';
}
