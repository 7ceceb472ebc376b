/**
 * The per-process cache of secrets already verified: token id -> the hash the
 * secret was verified against, plus a keyed digest of the secret (never the
 * secret). Digests live in one preallocated slab, 32 bytes per entry, so an
 * entry costs a Map slot, a small object and 32 bytes. Bounded: when full, the
 * second-chance (CLOCK) policy evicts an entry not hit since it was last
 * considered — LRU-like, without reordering the Map on every hit.
 */
import { type Addon, loadAddon } from '../native.js';
import { ownCopy } from '../strings.js';

interface Entry {
  /** The stored hash this secret was verified against. */
  hash: string;
  /** Index of the digest in the slab. */
  readonly slot: number;
  /** Hit since the eviction hand last passed it. */
  used: boolean;
}

export class VerifiedSecretCache {
  readonly capacity: number;
  #addon: Addon;
  #slab: Uint8Array;
  #width: number;
  #free: number[] = [];
  #next = 0;
  #entries = new Map<string, Entry>();
  #evictions = 0;

  constructor(capacity: number, addon: Addon = loadAddon()) {
    this.capacity = Math.max(1, Math.floor(capacity));
    this.#addon = addon;
    this.#width = addon.digestSize;
    this.#slab = new Uint8Array(this.capacity * this.#width);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Entries evicted to make room (not invalidations). */
  get evictions(): number {
    return this.#evictions;
  }

  /** true/false when `tokenid` is cached (does `secret` match?), undefined when not. */
  matches(tokenid: string, secret: string): boolean | undefined {
    const entry = this.#entries.get(tokenid);
    if (entry === undefined) return undefined;
    const equal = this.#addon.digestEquals(this.#slab, entry.slot * this.#width, secret);
    if (equal) entry.used = true;
    return equal;
  }

  /** Records that `secret` verified against `hash` for `tokenid`. */
  set(tokenid: string, hash: string, secret: string): void {
    let entry = this.#entries.get(tokenid);
    if (entry === undefined) {
      entry = { hash, slot: this.#allocate(), used: false };
      // The id may be a slice of the request header: keep a copy, not the header.
      this.#entries.set(ownCopy(tokenid), entry);
    }
    entry.hash = hash;
    this.#addon.digestInto(this.#slab, entry.slot * this.#width, secret);
  }

  clear(): number {
    const n = this.#entries.size;
    this.#entries.clear();
    this.#slab.fill(0);
    this.#free = [];
    this.#next = 0;
    return n;
  }

  /**
   * Keeps exactly the entries whose hash is still the stored one in `current`
   * (a rotation writes a new salted hash, a delete removes it) and returns how
   * many were dropped. This is what spares a full re-hash after every change.
   */
  retainMatching(current: ReadonlyMap<string, string>): number {
    let dropped = 0;
    for (const [tokenid, entry] of this.#entries) {
      const hash = current.get(tokenid);
      if (hash === entry.hash) {
        entry.hash = hash; // share the new snapshot's string, release the old
      } else {
        this.#release(tokenid, entry);
        dropped++;
      }
    }
    return dropped;
  }

  /** retainMatching for the ids in `changed` alone: the others are known to be unchanged. */
  retainChanged(changed: readonly string[], current: ReadonlyMap<string, string>): number {
    let dropped = 0;
    for (const tokenid of changed) {
      const entry = this.#entries.get(tokenid);
      if (entry !== undefined && current.get(tokenid) !== entry.hash) {
        this.#release(tokenid, entry);
        dropped++;
      }
    }
    return dropped;
  }

  #release(tokenid: string, entry: Entry): void {
    this.#entries.delete(tokenid);
    this.#slab.fill(0, entry.slot * this.#width, (entry.slot + 1) * this.#width);
    this.#free.push(entry.slot);
  }

  #allocate(): number {
    const free = this.#free.pop();
    if (free !== undefined) return free;
    if (this.#next < this.capacity) return this.#next++;
    this.#evictOne();
    return this.#free.pop() as number;
  }

  /** Second chance: walk from the oldest; a used entry is cleared and moved to the back. */
  #evictOne(): void {
    for (;;) {
      const first = this.#entries.entries().next();
      if (first.done) throw new Error('cache full but empty');
      const [tokenid, entry] = first.value;
      if (!entry.used) {
        this.#release(tokenid, entry);
        this.#evictions++;
        return;
      }
      entry.used = false;
      this.#entries.delete(tokenid);
      this.#entries.set(tokenid, entry);
    }
  }
}
