/**
 * Per-source authentication failure budgets, so that a flood from one source
 * costs the server next to nothing and leaves every other client alone.
 *
 * A source is the peer address of the connection, or, when the peer is a
 * configured trusted proxy, the client the proxy names in X-Forwarded-For.
 * Never a token id: penalising an id would let anyone lock a victim's token
 * out by sending wrong secrets for it.
 *
 * Each source has a leaky bucket: a failure adds 1, and `decayPerSecond` drains
 * away continuously. Past `budget` the source is penalised until it has
 * drained below the budget again; the level is capped at twice the budget, so
 * a source that stops failing is served again within budget / decay seconds. A penalised peer's new connections are held
 * unread (no HTTP parsing, no hashing) and closed after `holdMs`; a penalised
 * client behind a trusted proxy gets a 429 before its Authorization header is
 * read. Every 401 to a direct peer closes its connection, so a flood cannot
 * keep one keep-alive connection past its budget.
 *
 * Memory is bounded: at most `maxSources` buckets, the least recently failing
 * one forgotten first (a Map kept in order of last failure), and at most
 * `maxHeld` held connections (beyond that they are closed at once).
 */
import { BlockList, isIPv4, isIPv6, type Server, type Socket } from 'node:net';

export interface SourcePenaltyOptions {
  /** Failures a source may have in its bucket before it is penalised (default 20). */
  budget?: number;
  /** Failures forgiven per second (default 1): a source at the budget waits ~1 s per failure. */
  decayPerSecond?: number;
  /** Sources tracked at most (default 10,000); the least recently failing is forgotten first. */
  maxSources?: number;
  /** How long a penalised connection is held unread before it is closed, ms (default 2000). */
  holdMs?: number;
  /** Connections held at most; more are closed at once (default 1024). */
  maxHeld?: number;
  /** Proxies whose X-Forwarded-For is believed: addresses or CIDR blocks (default none). */
  trustedProxies?: readonly string[];
  /** Monotonic milliseconds; tests substitute their own. */
  now?: () => number;
}

export interface SourcePenaltyStats {
  /** Authentication failures recorded. */
  failures: number;
  /** Sources with a bucket now. */
  trackedSources: number;
  /** Sources over their budget now (counted when stats() is called). */
  penalisedSources: number;
  /** Connections held or closed unread because their peer was penalised. */
  refusedConnections: number;
  /** Requests answered 429 because the client behind a trusted proxy was penalised. */
  refusedRequests: number;
  /** Connections being held now. */
  heldConnections: number;
  /** Buckets forgotten to stay within maxSources. */
  forgottenSources: number;
}

interface Bucket {
  level: number;
  /** now() when level was last brought up to date. */
  at: number;
}

export const DEFAULT_PENALTY_BUDGET = 20;
export const DEFAULT_PENALTY_DECAY_PER_SECOND = 1;
export const DEFAULT_PENALTY_HOLD_MS = 2000;

/** '::ffff:1.2.3.4' (an IPv4 peer on a dual-stack socket) and '1.2.3.4' are one source. */
export function normaliseAddress(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function parseProxies(list: readonly string[]): BlockList {
  const blocks = new BlockList();
  for (const entry of list) {
    const [address = '', bits] = entry.split('/');
    const type = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : null;
    if (type === null) throw new TypeError(`trusted proxy: not an IP address: ${entry}`);
    if (bits === undefined) blocks.addAddress(address, type);
    else {
      const prefix = Number(bits);
      const max = type === 'ipv4' ? 32 : 128;
      if (!/^\d+$/.test(bits) || prefix > max) {
        throw new TypeError(`trusted proxy: bad prefix length: ${entry}`);
      }
      blocks.addSubnet(address, prefix, type);
    }
  }
  return blocks;
}

export class SourcePenalties {
  readonly budget: number;
  readonly decayPerSecond: number;
  readonly maxSources: number;
  readonly holdMs: number;
  readonly maxHeld: number;
  #now: () => number;
  #proxies: BlockList | null;
  #buckets = new Map<string, Bucket>();
  #held = new Set<Socket>();
  #stats = { failures: 0, refusedConnections: 0, refusedRequests: 0, forgottenSources: 0 };

  constructor(options: SourcePenaltyOptions = {}) {
    this.budget = Math.max(1, options.budget ?? DEFAULT_PENALTY_BUDGET);
    this.decayPerSecond = Math.max(0, options.decayPerSecond ?? DEFAULT_PENALTY_DECAY_PER_SECOND);
    this.maxSources = Math.max(1, Math.floor(options.maxSources ?? 10_000));
    this.holdMs = Math.max(0, options.holdMs ?? DEFAULT_PENALTY_HOLD_MS);
    this.maxHeld = Math.max(0, Math.floor(options.maxHeld ?? 1024));
    this.#now = options.now ?? (() => performance.now());
    const proxies = options.trustedProxies ?? [];
    this.#proxies = proxies.length > 0 ? parseProxies(proxies) : null;
  }

  /** Whether X-Forwarded-For from this peer is believed. */
  isTrustedProxy(peer: string): boolean {
    const address = normaliseAddress(peer);
    return this.#proxies?.check(address, isIPv6(address) ? 'ipv6' : 'ipv4') ?? false;
  }

  /**
   * The source of a request: the peer, or behind trusted proxies the last
   * address in X-Forwarded-For that is not itself a trusted proxy (the ones
   * before it could have been written by anyone). A malformed entry stops the
   * walk at the proxy that appended it.
   */
  sourceOf(peer: string | undefined, forwardedFor?: string | string[]): string {
    let source = normaliseAddress(peer ?? '');
    if (this.#proxies === null || forwardedFor === undefined || !this.isTrustedProxy(source)) {
      return source;
    }
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normaliseAddress((hops[i] as string).trim());
      if (!isIPv4(hop) && !isIPv6(hop)) break;
      source = hop;
      if (!this.isTrustedProxy(hop)) break;
    }
    return source;
  }

  /** Whether any source has failures on record: when none has, no request needs its source looked up. */
  get tracking(): boolean {
    return this.#buckets.size > 0;
  }

  /** Whether `source` is over its budget now. A source without failures costs one Map lookup. */
  isPenalised(source: string): boolean {
    const bucket = this.#buckets.get(source);
    return bucket !== undefined && this.#drain(bucket) > this.budget;
  }

  /** Counts one authentication failure against `source`; true when it is now penalised. */
  recordFailure(source: string): boolean {
    this.#stats.failures++;
    let bucket = this.#buckets.get(source);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.maxSources) this.#forgetOldest();
      bucket = { level: 0, at: this.#now() };
    } else {
      this.#drain(bucket);
      this.#buckets.delete(source); // re-inserted last: the Map stays in order of last failure
    }
    // Capped at twice the budget: a source that stops is served again within budget/decay seconds.
    bucket.level = Math.min(bucket.level + 1, 2 * this.budget);
    this.#buckets.set(source, bucket);
    return bucket.level > this.budget;
  }

  /** A request refused (429) because its client behind a proxy is penalised. */
  countRefusedRequest(): void {
    this.#stats.refusedRequests++;
  }

  /**
   * Puts the gate in front of an HTTP server: a connection from a penalised
   * peer (never a trusted proxy: its clients are judged per request) is held
   * unread, then closed, and never reaches the HTTP parser. Installed by
   * taking over the server's own 'connection' listeners, so they run only for
   * connections that pass.
   */
  guard(server: Server): void {
    const listeners = server.listeners('connection') as Array<(socket: Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      const peer = normaliseAddress(socket.remoteAddress ?? '');
      if (this.#buckets.size > 0 && this.isPenalised(peer) && !this.isTrustedProxy(peer)) {
        this.#refuse(socket);
        return;
      }
      for (const listener of listeners) listener.call(server, socket);
    });
  }

  stats(): SourcePenaltyStats {
    let penalised = 0;
    for (const bucket of this.#buckets.values()) if (this.#drain(bucket) > this.budget) penalised++;
    return {
      ...this.#stats,
      trackedSources: this.#buckets.size,
      penalisedSources: penalised,
      heldConnections: this.#held.size,
    };
  }

  /** Closes the held connections (server shutdown). */
  releaseHeld(): void {
    for (const socket of this.#held) socket.destroy();
    this.#held.clear();
  }

  #refuse(socket: Socket): void {
    this.#stats.refusedConnections++;
    socket.on('error', () => undefined);
    if (this.holdMs === 0 || this.#held.size >= this.maxHeld) {
      socket.destroy();
      return;
    }
    // Held unread: the client waits instead of reconnecting at once, which would cost an accept.
    socket.pause();
    this.#held.add(socket);
    const timer = setTimeout(() => socket.destroy(), this.holdMs);
    timer.unref();
    socket.once('close', () => {
      clearTimeout(timer);
      this.#held.delete(socket);
    });
  }

  /** Brings the bucket's level to now; a drained bucket is forgotten. */
  #drain(bucket: Bucket): number {
    const now = this.#now();
    const level = Math.max(0, bucket.level - ((now - bucket.at) / 1000) * this.decayPerSecond);
    bucket.level = level;
    bucket.at = now;
    return level;
  }

  #forgetOldest(): void {
    const oldest = this.#buckets.keys().next();
    if (oldest.done) return;
    this.#buckets.delete(oldest.value);
    this.#stats.forgottenSources++;
  }
}
