/**
 * Per-source authentication failure budgets, so that a flood from one source
 * costs the server next to nothing and leaves every other client alone.
 *
 * A source is the peer address of the connection, or, when the peer is a
 * configured trusted proxy, the client the proxy names in X-Forwarded-For;
 * grouped by network prefix (by default an IPv4 address alone and an IPv6
 * /64, the block one subscriber gets, so that the 2^64 addresses of one
 * client are one source). Never a token id: penalising an id would let anyone
 * lock a victim's token out by sending wrong secrets for it.
 *
 * Each source has a leaky bucket: a 401 adds 1, and `decayPerSecond` drains
 * away continuously. A 503 for a full hashing queue adds 1 only when the
 * source has another request waiting for a hash (it helps fill the queue);
 * otherwise it says the server was busy, which its receiver need not have
 * caused (enterSlowPath keeps the count). Past `budget` the source is
 * penalised until it has drained below the budget again; the level is capped
 * at twice the budget, so a source that stops failing is served again within
 * budget / decay seconds.
 *
 * A penalised source is still answered from the verified-secret cache: a
 * valid token the cache proves costs less to accept than to refuse, and a
 * NAT, an administrator or a neighbour of a failing client must not be locked
 * out by its failures. Whatever would need a hash is refused: a direct peer's
 * request is held unanswered for `holdMs`, then answered 429 and its
 * connection closed (so a flood waits instead of retrying at once); a client
 * behind a trusted proxy gets 429 at once (the proxy's connection carries
 * others too).
 *
 * Budgets can be shared by processes: `onFailure` tells whoever shares them
 * (the API daemon's primary: src/daemon/host-penalties.ts) of each failure,
 * and `raise` brings a source up to the level the host has seen.
 *
 * Memory is bounded: at most `maxSources` buckets, the least recently failing
 * one forgotten first (a Map kept in order of last failure), and at most
 * `maxHeld` held requests (beyond that they are answered at once).
 */
import { BlockList, isIPv4, isIPv6, type Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import {
  DEFAULT_PENALTY_BUDGET,
  DEFAULT_PENALTY_DECAY_PER_SECOND,
  DEFAULT_PENALTY_HOLD_MS,
  DEFAULT_PENALTY_IPV4_PREFIX,
  DEFAULT_PENALTY_IPV6_PREFIX,
} from './penalty-defaults.js';

export interface SourcePenaltyOptions {
  /** Failures a source may have in its bucket before it is penalised (default 20). */
  budget?: number;
  /** Failures forgiven per second (default 1): a source at the budget waits ~1 s per failure. */
  decayPerSecond?: number;
  /** Sources tracked at most (default 10,000); the least recently failing is forgotten first. */
  maxSources?: number;
  /** How long a penalised peer's refused request is held before its 429, ms (default 2000). */
  holdMs?: number;
  /** Requests held at most; more are answered at once (default 1024). */
  maxHeld?: number;
  /** Proxies whose X-Forwarded-For is believed: addresses or CIDR blocks (default none). */
  trustedProxies?: readonly string[];
  /** Prefix length by which IPv4 addresses are grouped into one source (default 32). */
  ipv4Prefix?: number;
  /** Prefix length by which IPv6 addresses are grouped into one source (default 64). */
  ipv6Prefix?: number;
  /** Monotonic milliseconds; tests substitute their own. */
  now?: () => number;
}

export interface SourcePenaltyStats {
  /** Authentication failures recorded here. */
  failures: number;
  /** Sources with a bucket now. */
  trackedSources: number;
  /** Sources over their budget now (counted when stats() is called). */
  penalisedSources: number;
  /** Requests of penalised direct peers held, answered 429 and their connection closed. */
  refusedConnections: number;
  /** Requests of penalised sources answered 429 (direct peers' and proxied clients'). */
  refusedRequests: number;
  /** Requests being held now. */
  heldConnections: number;
  /** Buckets forgotten to stay within maxSources. */
  forgottenSources: number;
}

interface Bucket {
  level: number;
  /** now() when level was last brought up to date. */
  at: number;
}

interface Held {
  timer: NodeJS.Timeout;
  /** Answers now and forgets the hold. */
  release: () => void;
}

export {
  DEFAULT_PENALTY_BUDGET,
  DEFAULT_PENALTY_DECAY_PER_SECOND,
  DEFAULT_PENALTY_HOLD_MS,
  DEFAULT_PENALTY_IPV4_PREFIX,
  DEFAULT_PENALTY_IPV6_PREFIX,
};

/** '::ffff:1.2.3.4' (an IPv4 peer on a dual-stack socket) and '1.2.3.4' are one source. */
export function normaliseAddress(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function prefixLength(value: number | undefined, fallback: number, max: number, name: string) {
  const bits = value ?? fallback;
  if (!Number.isInteger(bits) || bits < 0 || bits > max) {
    throw new TypeError(`${name} prefix length must be an integer from 0 to ${max}: ${bits}`);
  }
  return bits;
}

/** The network of `address` (a valid IPv4 or IPv6 address) with its first `bits` bits kept. */
function networkOf(address: string, bits: number): string {
  const parsed = ipaddr.parse(address);
  const bytes = parsed.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    bytes[i] = (bytes[i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
  return `${ipaddr.fromByteArray(bytes).toString()}/${bits}`;
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

/**
 * Where a request comes from: its peer, or behind trusted proxies the last
 * address in X-Forwarded-For that is not itself a trusted proxy (the ones
 * before it could have been written by anyone). A malformed entry stops the
 * walk at the proxy that appended it. What the penalties group into sources,
 * and what a token's allowed-ips and last use are checked against.
 */
export class ClientAddresses {
  readonly #proxies: BlockList | null;

  constructor(trustedProxies: readonly string[] = []) {
    this.#proxies = trustedProxies.length > 0 ? parseProxies(trustedProxies) : null;
  }

  /** Whether X-Forwarded-For from this peer is believed. */
  isTrustedProxy(peer: string): boolean {
    const address = normaliseAddress(peer);
    return this.#proxies?.check(address, isIPv6(address) ? 'ipv6' : 'ipv4') ?? false;
  }

  /** The last peer looked at and its normal form: a connection's requests repeat it. */
  #lastPeer: string | undefined = undefined;
  #lastNormal = '';

  /** The client's address ('' when the peer is unknown), IPv4 unmapped. */
  of(peer: string | undefined, forwardedFor?: string | string[]): string {
    // On every request of a token that is noted or restricted: the same peer costs a compare.
    if (peer !== this.#lastPeer) {
      this.#lastPeer = peer;
      this.#lastNormal = normaliseAddress(peer ?? '');
    }
    let client = this.#lastNormal;
    if (this.#proxies !== null && forwardedFor !== undefined && this.isTrustedProxy(client)) {
      const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
      for (let i = hops.length - 1; i >= 0; i--) {
        const hop = normaliseAddress((hops[i] as string).trim());
        if (!isIPv4(hop) && !isIPv6(hop)) break;
        client = hop;
        if (!this.isTrustedProxy(hop)) break;
      }
    }
    return client;
  }
}

export class SourcePenalties {
  readonly budget: number;
  readonly decayPerSecond: number;
  readonly maxSources: number;
  readonly holdMs: number;
  readonly maxHeld: number;
  readonly ipv4Prefix: number;
  readonly ipv6Prefix: number;
  /** Told of each failure recorded here (not of levels raised from elsewhere): who shares the budgets. */
  onFailure: ((source: string) => void) | null = null;
  readonly clients: ClientAddresses;
  #now: () => number;
  #buckets = new Map<string, Bucket>();
  #held = new Set<Held>();
  /** Requests on the slow path (that may wait for a hash) by source; only while there are some. */
  #slow = new Map<string, number>();
  #stats = {
    failures: 0,
    refusedConnections: 0,
    refusedRequests: 0,
    forgottenSources: 0,
  };

  constructor(options: SourcePenaltyOptions = {}) {
    this.budget = Math.max(1, options.budget ?? DEFAULT_PENALTY_BUDGET);
    this.decayPerSecond = Math.max(0, options.decayPerSecond ?? DEFAULT_PENALTY_DECAY_PER_SECOND);
    this.maxSources = Math.max(1, Math.floor(options.maxSources ?? 10_000));
    this.holdMs = Math.max(0, options.holdMs ?? DEFAULT_PENALTY_HOLD_MS);
    this.maxHeld = Math.max(0, Math.floor(options.maxHeld ?? 1024));
    this.ipv4Prefix = prefixLength(options.ipv4Prefix, DEFAULT_PENALTY_IPV4_PREFIX, 32, 'IPv4');
    this.ipv6Prefix = prefixLength(options.ipv6Prefix, DEFAULT_PENALTY_IPV6_PREFIX, 128, 'IPv6');
    this.#now = options.now ?? (() => performance.now());
    this.clients = new ClientAddresses(options.trustedProxies ?? []);
  }

  /** Whether X-Forwarded-For from this peer is believed. */
  isTrustedProxy(peer: string): boolean {
    return this.clients.isTrustedProxy(peer);
  }

  /**
   * The source of a request: the network (ipv4Prefix, ipv6Prefix) of its
   * client (ClientAddresses: the peer, or the client trusted proxies name).
   * An address kept whole (/32, /128) is its own source name.
   */
  sourceOf(peer: string | undefined, forwardedFor?: string | string[]): string {
    return this.#group(this.clients.of(peer, forwardedFor));
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

  /** The level of `source`'s bucket now (0 without one). */
  levelOf(source: string): number {
    const bucket = this.#buckets.get(source);
    return bucket === undefined ? 0 : this.#drain(bucket);
  }

  /** Counts one authentication failure against `source`; true when it is now penalised. */
  recordFailure(source: string): boolean {
    this.#stats.failures++;
    const penalised = this.#add(source, 1);
    this.onFailure?.(source);
    return penalised;
  }

  /**
   * Brings `source` up to `level` (the level seen by the whole host), if it
   * is below; a level above the cap is capped. Counts no failure here.
   */
  raise(source: string, level: number): void {
    this.#add(source, level - this.levelOf(source));
  }

  /** The sources over their budget now, with their levels (for a process that starts afresh). */
  penalised(): Array<[string, number]> {
    const out: Array<[string, number]> = [];
    for (const [source, bucket] of this.#buckets) {
      const level = this.#drain(bucket);
      if (level > this.budget) out.push([source, level]);
    }
    return out;
  }

  /**
   * A request of `source` goes down the slow path, where it may wait for a
   * hash; call the function returned when it is done. What a 503 is charged
   * by: a source with no other request waiting did not fill the queue.
   */
  enterSlowPath(source: string): () => void {
    this.#slow.set(source, (this.#slow.get(source) ?? 0) + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const count = (this.#slow.get(source) ?? 1) - 1;
      if (count > 0) this.#slow.set(source, count);
      else this.#slow.delete(source);
    };
  }

  /** Requests of `source` on the slow path now. */
  onSlowPath(source: string): number {
    return this.#slow.get(source) ?? 0;
  }

  /**
   * Refuses a request of a penalised source: `answer` (the 429) is called
   * after holdMs when `socket` (a direct peer's) is given and fewer than
   * maxHeld are held, else at once; never when the socket closes first.
   */
  refuse(socket: Socket | null, answer: () => void): void {
    this.#stats.refusedRequests++;
    if (socket === null) {
      answer();
      return;
    }
    this.#stats.refusedConnections++;
    if (this.holdMs === 0 || this.#held.size >= this.maxHeld || socket.destroyed) {
      answer();
      return;
    }
    // Held: the client waits instead of retrying at once, and nothing is hashed for it meanwhile.
    const forget = () => {
      clearTimeout(held.timer);
      this.#held.delete(held);
    };
    const held: Held = {
      timer: setTimeout(() => held.release(), this.holdMs),
      release: () => {
        forget();
        socket.off('close', forget);
        answer();
      },
    };
    held.timer.unref();
    socket.once('close', forget);
    this.#held.add(held);
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

  /** Answers every held request at once (server shutdown: nothing may wait out its hold). */
  releaseHeld(): void {
    for (const held of [...this.#held]) held.release();
  }

  /** The source name of an address: itself, or its network when grouped by a shorter prefix. */
  #group(address: string): string {
    if (isIPv4(address)) {
      return this.ipv4Prefix === 32 ? address : networkOf(address, this.ipv4Prefix);
    }
    if (isIPv6(address)) {
      // A zone (fe80::1%eth0) names the link, not the client.
      const bare = address.split('%', 1)[0] as string;
      return this.ipv6Prefix === 128 ? bare : networkOf(bare, this.ipv6Prefix);
    }
    return address;
  }

  /** Adds `amount` (negative: nothing) to `source`'s bucket, capped at twice the budget. */
  #add(source: string, amount: number): boolean {
    let bucket = this.#buckets.get(source);
    if (bucket === undefined) {
      if (amount <= 0) return false;
      if (this.#buckets.size >= this.maxSources) this.#forgetOldest();
      bucket = { level: 0, at: this.#now() };
    } else {
      this.#drain(bucket);
      this.#buckets.delete(source); // re-inserted last: the Map stays in order of last failure
    }
    // Capped at twice the budget: a source that stops is served again within budget/decay seconds.
    bucket.level = Math.min(bucket.level + Math.max(0, amount), 2 * this.budget);
    this.#buckets.set(source, bucket);
    return bucket.level > this.budget;
  }

  /** Brings the bucket's level to now. */
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
