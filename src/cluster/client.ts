/**
 * The etcd client (npm `etcd3`, the maintained gRPC client) as multi-host mode
 * needs it: connections to every member; its circuit breaker off, because it
 * kept a healed member closed for 5 s and blocked resyncs; no hidden global
 * retry; a deadline on every call. retrying() is the one backoff: short
 * jittered pauses, each attempt on another member, bounded by a deadline.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { ExponentialBackoff, type IBackoff, noop } from 'cockatiel';
import {
  castGrpcError,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  type IOptions,
  isRecoverableError,
  type WatchBuilder,
  type Watcher,
} from 'etcd3';
import { ClusterError } from '../errors.js';
import type { ClusterSettings } from './settings.js';

/**
 * The largest answer taken from etcd. grpc-js refuses anything over 4 MiB by
 * default, and one range read of `usage/` carries up to 1.5 MB per host
 * (src/cluster/usage-sink.ts): three full records would not pass.
 */
export const MAX_RECEIVE_BYTES = 64 * 1024 * 1024;

/** The least deadline of etcd's authenticate call (a bcrypt check on the member). */
const AUTH_DEADLINE_MS = 2000;

/** A file the settings name, read now; a typed error naming it (never its content) if it cannot be. */
function readSettingsFile(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ClusterError('not-configured', `cluster ${what} ${file}: cannot read (${code})`);
  }
}

/**
 * The password in `passwordFile`: its content less a final line break (as an
 * editor or `echo` leaves it); spaces are kept, they may be part of it.
 */
export function readPasswordFile(file: string): string {
  const password = readSettingsFile('password file', file)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (password.length === 0) {
    throw new ClusterError('not-configured', `cluster password file ${file} is empty`);
  }
  return password;
}

export function createEtcdClient(settings: ClusterSettings): Etcd3 {
  const options: IOptions = {
    hosts: settings.endpoints,
    grpcOptions: { 'grpc.max_receive_message_length': MAX_RECEIVE_BYTES },
    dialTimeout: settings.callTimeoutMs,
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + settings.callTimeoutMs },
    faultHandling: {
      host: () => noop,
      global: noop,
      // A watch stream that broke reconnects (to another member) within half a second.
      // (etcd3 calls .next() on it, a backoff factory; its typings say IBackoff.)
      watchBackoff: new ExponentialBackoff({
        initialDelay: 20,
        maxDelay: 500,
      }) as unknown as IBackoff<unknown>,
    },
  };
  if (settings.tls) {
    options.credentials = {
      rootCertificate: readSettingsFile('CA certificate', settings.tls.ca),
      ...(settings.tls.key ? { privateKey: readSettingsFile('client key', settings.tls.key) } : {}),
      ...(settings.tls.cert
        ? { certChain: readSettingsFile('client certificate', settings.tls.cert) }
        : {}),
    };
  }
  if (settings.auth) {
    options.auth = {
      username: settings.auth.username,
      password: readPasswordFile(settings.auth.passwordFile),
      // Logging in makes etcd check the password with bcrypt, which a busy member can take
      // longer than a call deadline for; it happens once per connection, not per call.
      callOptions: () => ({
        deadline: Date.now() + Math.max(AUTH_DEADLINE_MS, 4 * settings.callTimeoutMs),
      }),
    };
  }
  const client = new Etcd3(options);
  if (settings.tls) withoutIpServerName(client);
  return client;
}

type SecureConnectorFactory = (...args: unknown[]) => {
  connectionOptions?: { servername?: string };
};

/**
 * grpc-js sends an endpoint's host as the TLS server name (SNI) even when it
 * is an IP address, which RFC 6066 forbids and Node reports (DEP0123) on the
 * first connection. SNI is for names; without it Node checks the certificate
 * against the IP (its IP SAN) all the same. etcd3 makes the channel
 * credentials itself (one object for all its connections), so the server name
 * is dropped for IP endpoints where that object makes each connector.
 */
export function withoutIpServerName(client: Etcd3): Etcd3 {
  const pool = (client as unknown as { pool?: { hosts?: Array<{ channelCredentials?: unknown }> } })
    .pool;
  const credentials = pool?.hosts?.[0]?.channelCredentials as
    | { _createSecureConnector?: SecureConnectorFactory }
    | undefined;
  const create = credentials?._createSecureConnector;
  if (credentials === undefined || typeof create !== 'function') return client;
  credentials._createSecureConnector = (...args) => {
    const connector = create.apply(credentials, args);
    const options = connector.connectionOptions;
    if (options?.servername !== undefined && isIP(options.servername) !== 0) {
      delete options.servername;
    }
    return connector;
  };
  return client;
}

/** gRPC failures worth another attempt on another member (unavailable, deadline, leader change). */
export function isTransient(error: unknown): boolean {
  if (isRecoverableError(error as Error)) return true;
  const message = String((error as Error)?.message ?? '');
  return /deadline|unavailable|leader|timed out|no connection|ECONNREFUSED|EHOSTUNREACH|Stream removed|too many requests/i.test(
    message,
  );
}

/**
 * etcd's refusals of this host's credentials as typed errors that say what to
 * fix (they are final: retrying cannot help); anything else as it is. The
 * client's own messages name neither the user nor the password.
 */
export function refusal(what: string, error: unknown): unknown {
  if (error instanceof EtcdAuthenticationFailedError) {
    return new ClusterError(
      'refused',
      `${what}: etcd refused the user name and password (authentication failed: check auth.username and the password file)`,
      { cause: error },
    );
  }
  if (error instanceof EtcdPermissionDeniedError) {
    return new ClusterError(
      'refused',
      `${what}: etcd denied permission: the user (auth.username, or without one the client certificate's common name) needs a role with readwrite on /token-shadow/`,
      { cause: error },
    );
  }
  return error;
}

export interface RetryOptions {
  /** Give up after this long (ms). */
  deadlineMs: number;
  /** Stop early, e.g. the agent is stopping. */
  signal?: AbortSignal;
}

/**
 * Runs `attempt` until it succeeds, fails with a non-transient error, or the
 * deadline passes (then ClusterError 'unavailable'). Pauses grow from 10 ms
 * to 200 ms with jitter: a few retries fit in one lease.
 */
export async function retrying<T>(
  what: string,
  options: RetryOptions,
  attempt: () => Promise<T>,
): Promise<T> {
  const end = Date.now() + options.deadlineMs;
  let pause = 10;
  let last: unknown;
  for (;;) {
    if (options.signal?.aborted) throw new ClusterError('unavailable', `${what}: stopped`);
    try {
      return await attempt();
    } catch (error) {
      if (!isTransient(error)) throw refusal(what, error);
      last = error;
    }
    if (!(await pauseBeforeRetry(end, pause))) break;
    pause = Math.min(200, pause * 2);
  }
  throw unavailable(what, last);
}

/**
 * Waits about `pause` ms (jittered, never past `end`) before the next try;
 * false when the deadline has passed and no try is left.
 */
async function pauseBeforeRetry(end: number, pause: number): Promise<boolean> {
  const left = end - Date.now();
  if (left <= 0) return false;
  await new Promise((resolve) =>
    setTimeout(resolve, Math.min(left, pause * (0.5 + Math.random()))),
  );
  return true;
}

/** What a call that found no member to answer it before its deadline throws. */
function unavailable(what: string, last: unknown): ClusterError {
  return new ClusterError(
    'unavailable',
    `${what}: etcd unavailable (${String((last as Error)?.message ?? last).slice(0, 200)})`,
    { cause: last },
  );
}

/** How often a member marked down is asked again, at first and at most (ms). */
const PROBE_FIRST_MS = 100;
const PROBE_MAX_MS = 500;
/**
 * How often every member up is asked its status (no quorum needed): a member
 * that went silent is marked down before a call of ours has to find out, and
 * the answers say which member leads.
 */
const HEARTBEAT_MS = 250;
/** How long the heartbeat keeps quiet after etcd refused the credentials. */
const REFUSED_QUIET_MS = 5000;

interface Member {
  endpoint: string;
  /** A client on this member alone: a call on it never wanders to another. */
  client: Etcd3;
  /** Failed its last call: skipped while any other member is up, until a probe answers. */
  down: boolean;
  probing: boolean;
  /** etcd's member id, learned from its status. */
  id: string | null;
}

/** A successful attempt's value, told apart from an error returned as a value. */
class Answer {
  constructor(readonly value: unknown) {}
}

export interface MemberCallOptions extends RetryOptions {
  /** A write: the leader first, when it is known and up (a follower would forward it). */
  write?: boolean;
  /**
   * Safe to send to several members at once (a read, a keepalive, a put of
   * the same value): when no member is known up, every member is asked at
   * once and the first answer wins, so a recovering cluster is found as soon
   * as any member serves, not after a silent one's deadline.
   */
  idempotent?: boolean;
}

/**
 * Every etcd member, each behind a client of its own, and what this process
 * knows of them: which failed their last call (down, skipped until a
 * linearizable probe, which needs a quorum, answers again) and which leads.
 * call() is the one way to talk to etcd in a long-lived process: each attempt
 * goes to the next member in order (up ones first, the leader first for
 * writes), with the per-call deadline, so a dead or silent member costs at
 * most one call deadline, once, and not one per attempt (etcd3's pool picks
 * at random for every call, and would try the dead member again and again).
 */
export class EtcdMembers {
  readonly settings: ClusterSettings;
  readonly #members: Member[];
  #probeKey: Buffer;
  #leader: number | null = null;
  #leaderLookup: Promise<void> | null = null;
  #cursor = Math.floor(Math.random() * 1024);
  #closed = false;
  #downListeners = new Set<(member: number) => void>();
  #heartbeat: NodeJS.Timeout;
  #beating = false;
  /** After etcd refused our credentials, no heartbeat until then (each try costs etcd a bcrypt). */
  #quietUntil = 0;

  /** `probeKey`: a key the settings' user may read (its value is never used). */
  constructor(settings: ClusterSettings, probeKey: string) {
    this.settings = settings;
    this.#probeKey = Buffer.from(probeKey);
    this.#members = settings.endpoints.map((endpoint) => ({
      endpoint,
      client: createEtcdClient({ ...settings, endpoints: [endpoint] }),
      down: false,
      probing: false,
      id: null,
    }));
    this.#heartbeat = setInterval(() => void this.#beat(), HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  /** Every member up, its status: silent ones marked down, the leader noted. */
  async #beat(): Promise<void> {
    if (this.#beating || this.#closed || Date.now() < this.#quietUntil) return;
    this.#beating = true;
    try {
      const leaders = await Promise.all(
        this.#members.map(async (m, i) => {
          if (m.down) return null;
          try {
            const status = await m.client.maintenance.status();
            m.id = String(status.header.member_id);
            return String(status.leader);
          } catch (error) {
            if (isTransient(error)) this.markDown(i);
            else this.#quietUntil = Date.now() + REFUSED_QUIET_MS;
            return null;
          }
        }),
      );
      const leaderId = leaders.find((id) => id !== null && id !== '0');
      if (leaderId !== undefined) {
        const index = this.#members.findIndex((m) => m.id === leaderId);
        this.#leader = index >= 0 && !this.isDown(index) ? index : null;
      }
    } finally {
      this.#beating = false;
    }
  }

  get size(): number {
    return this.#members.length;
  }

  client(member: number): Etcd3 {
    return (this.#members[member] as Member).client;
  }

  endpoint(member: number): string {
    return (this.#members[member] as Member).endpoint;
  }

  isDown(member: number): boolean {
    return this.#members[member]?.down ?? true;
  }

  /** Called with the member's index each time one is marked down; returns the unsubscribe. */
  onDown(listener: (member: number) => void): () => void {
    this.#downListeners.add(listener);
    return () => {
      this.#downListeners.delete(listener);
    };
  }

  /**
   * The members in the order to try them: up ones first, in turn (so reads and
   * watches spread), the leader at the front for writes; down ones last, for
   * when no member is known up (then each is tried, as etcd may have healed).
   */
  order(options: { write?: boolean; except?: number } = {}): number[] {
    const n = this.#members.length;
    const start = this.#cursor++ % n;
    const all = Array.from({ length: n }, (_, k) => (start + k) % n).filter(
      (i) => i !== options.except || n === 1,
    );
    const up = all.filter((i) => !this.isDown(i));
    const down = all.filter((i) => this.isDown(i));
    const leader = this.#leader;
    if (options.write && leader !== null && up.includes(leader)) {
      up.splice(up.indexOf(leader), 1);
      up.unshift(leader);
    } else if (options.write && leader === null) {
      this.#lookUpLeader();
    }
    return [...up, ...down];
  }

  /**
   * Runs `attempt` on one member after another until it succeeds, fails with
   * a non-transient error, or the deadline passes (ClusterError 'unavailable').
   * A member whose call failed is marked down at once; after a round on which
   * every member failed, a short jittered pause (10 ms growing to 200 ms).
   */
  async call<T>(
    what: string,
    options: MemberCallOptions,
    attempt: (client: Etcd3, member: number) => Promise<T>,
  ): Promise<T> {
    const end = Date.now() + options.deadlineMs;
    let pause = 10;
    let last: unknown;
    for (;;) {
      const order = this.order({ write: options.write ?? false });
      if (options.idempotent && order.length > 1 && order.every((m) => this.isDown(m))) {
        if (options.signal?.aborted || this.#closed) {
          throw new ClusterError('unavailable', `${what}: stopped`);
        }
        const outcome = await this.#race(order, attempt);
        if ('value' in outcome) return outcome.value;
        if (!isTransient(outcome.error)) throw refusal(what, outcome.error);
        last = outcome.error;
      } else {
        last = (await this.#inTurn(order, what, options, attempt, end)) ?? last;
        if (last instanceof Answer) return last.value as T;
      }
      if (!(await pauseBeforeRetry(end, pause))) break;
      pause = Math.min(200, pause * 2);
    }
    throw unavailable(what, last);
  }

  /** One member after another until one answers: its Answer, or the last transient error. */
  async #inTurn<T>(
    order: number[],
    what: string,
    options: MemberCallOptions,
    attempt: (client: Etcd3, member: number) => Promise<T>,
    end: number,
  ): Promise<unknown> {
    let last: unknown;
    for (const member of order) {
      if (options.signal?.aborted || this.#closed) {
        throw new ClusterError('unavailable', `${what}: stopped`);
      }
      try {
        return new Answer(await attempt(this.client(member), member));
      } catch (error) {
        if (!isTransient(error)) throw refusal(what, error);
        last = error;
        this.markDown(member);
      }
      if (Date.now() >= end) break;
    }
    return last;
  }

  /** Every member at once: the first answer, or the first final error, or the last error. */
  #race<T>(
    order: number[],
    attempt: (client: Etcd3, member: number) => Promise<T>,
  ): Promise<{ value: T } | { error: unknown }> {
    return new Promise((resolve) => {
      let failed = 0;
      let settled = false;
      for (const member of order) {
        attempt(this.client(member), member).then(
          (value) => {
            if (!settled) {
              settled = true;
              resolve({ value });
            }
          },
          (error: unknown) => {
            failed++;
            if (!settled && (!isTransient(error) || failed === order.length)) {
              settled = true;
              resolve({ error });
            }
          },
        );
      }
    });
  }

  /**
   * A call on `member` failed: skip it until it answers a probe. Listeners
   * (watches to move) hear of it only once the member is known silent, as
   * during an election every member fails calls that need a quorum.
   */
  markDown(member: number): void {
    const m = this.#members[member];
    if (m === undefined || m.down || this.#closed) return;
    m.down = true;
    if (this.#leader === member) {
      this.#leader = null;
      this.#lookUpLeader();
    }
    void this.#probe(member);
  }

  /**
   * Asks a down member until it answers a linearizable read (a quorum's
   * answer); meanwhile, if it does not even answer its status (which needs no
   * quorum), it is silent: dead, frozen or cut off from here.
   */
  async #probe(member: number): Promise<void> {
    const m = this.#members[member] as Member;
    if (m.probing) return;
    m.probing = true;
    let pause = PROBE_FIRST_MS;
    let told = false;
    try {
      for (;;) {
        if (!told && !(await this.#answersStatus(m)) && m.down && !this.#closed) {
          told = true;
          for (const listener of [...this.#downListeners]) listener(member);
        }
        await new Promise((resolve) => setTimeout(resolve, pause * (0.5 + Math.random())));
        if (!m.down || this.#closed) break;
        try {
          await m.client.kv.range({ key: this.#probeKey, count_only: true });
          m.down = false;
        } catch (error) {
          // A refusal is an answer: the member is there, the refusal is for the caller to meet.
          if (!isTransient(error)) m.down = false;
        }
        if (!m.down || this.#closed) break;
        pause = Math.min(PROBE_MAX_MS, pause * 2);
      }
    } finally {
      m.probing = false;
    }
    if (!m.down && this.#leader === null) this.#lookUpLeader();
  }

  async #answersStatus(m: Member): Promise<boolean> {
    try {
      const status = await m.client.maintenance.status();
      m.id = String(status.header.member_id);
      return true;
    } catch {
      return false;
    }
  }

  /** Which member leads, from the status of every member up (each has a deadline). */
  #lookUpLeader(): void {
    if (this.#closed || this.#leaderLookup !== null) return;
    this.#leaderLookup = (async () => {
      const answers = await Promise.allSettled(
        this.#members.map(async (m) => {
          if (m.down) return null;
          const status = await m.client.maintenance.status();
          m.id = String(status.header.member_id);
          return String(status.leader);
        }),
      );
      const leaderId = answers
        .map((a) => (a.status === 'fulfilled' ? a.value : null))
        .find((id) => id !== null && id !== '0');
      const index = this.#members.findIndex((m) => m.id !== null && m.id === leaderId);
      this.#leader = index >= 0 && !this.isDown(index) ? index : null;
    })()
      .catch(() => undefined)
      .finally(() => {
        this.#leaderLookup = null;
      });
  }

  /** The member that leads, as last seen (null: unknown). */
  leader(): number | null {
    return this.#leader;
  }

  /** Closes every connection: pending calls and streams fail at once, nothing waits on a member. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#downListeners.clear();
    for (const m of this.#members) m.client.close();
  }
}

/**
 * A watch on one member, connected within `timeoutMs` (a silent member never
 * answers the create): the watcher, or the error etcd cancelled it with, or a
 * timeout error (transient); a watcher not returned is dropped.
 */
export async function watchOn(
  builder: WatchBuilder,
  timeoutMs: number,
): Promise<{ watcher: Watcher } | { error: Error }> {
  const watcher = builder.watcher();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await new Promise<Error | null>((resolve) => {
    timer = setTimeout(() => resolve(new Error('watch create: deadline exceeded')), timeoutMs);
    watcher.once('connected', () => resolve(null));
    watcher.once('error', (error: Error) => resolve(error));
    // The stream failed (a dead member refuses at once): etcd3 would retry the same member.
    watcher.once('disconnected', (error: Error) =>
      resolve(castGrpcError(error ?? new Error('watch stream unavailable'))),
    );
  });
  clearTimeout(timer);
  if (outcome === null) return { watcher };
  dropWatcher(watcher);
  return { error: outcome };
}

/** Stops listening to a watcher without waiting for the member to confirm (it may be silent). */
export function dropWatcher(watcher: Watcher): void {
  watcher.removeAllListeners();
  watcher.on('error', () => undefined);
  watcher.cancel().catch(() => undefined);
}

/**
 * One keepalive for lease `id` through `client`, answered within the call's
 * deadline: the TTL etcd granted anew (0 or less: the lease is gone).
 */
export async function keepLeaseAlive(
  client: Etcd3,
  id: string,
  deadlineMs: number,
): Promise<number> {
  const stream = await client.leaseClient.leaseKeepAlive({ deadline: Date.now() + deadlineMs });
  return await new Promise<number>((resolve, reject) => {
    stream.on('data', (response: { TTL: string }) => {
      stream.end();
      resolve(Number(response.TTL));
    });
    stream.on('error', (error: Error) => reject(castGrpcError(error)));
    stream.write({ ID: id });
  });
}
