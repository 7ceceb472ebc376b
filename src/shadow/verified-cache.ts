/**
 * The per-process cache of secrets already verified: token id -> the hash the
 * secret was verified against, plus a keyed digest of the secret (never the
 * secret). Laid out by slot, so that a lookup touches as little memory as it
 * can: the Map takes an id to a small integer (no entry object to chase), the
 * digest is at slot x 32 in one preallocated slab, and the hash, the id and
 * the "used" bit sit in arrays indexed by slot, read only when revalidating or
 * evicting. Bounded: when full, the second-chance (CLOCK) hand walks the slots
 * and evicts one not hit since it last passed — LRU-like, with nothing
 * reordered on a hit.
 */
import { type Addon, loadAddon } from '../native.js';
import { ownCopy } from '../strings.js';

export class VerifiedSecretCache {
  readonly capacity: number;
  #addon: Addon;
  #slab: Uint8Array;
  #width: number;
  /** id -> slot. */
  #index = new Map<string, number>();
  /** By slot: the cached id (its own copy), or undefined when the slot is free. */
  #ids: Array<string | undefined>;
  /** By slot: the stored hash the secret was verified against. */
  #hashes: Array<string | undefined>;
  /** By slot: 1 when hit since the eviction hand last passed it. */
  #used: Uint8Array;
  #free: number[] = [];
  #next = 0;
  #hand = 0;
  #evictions = 0;

  constructor(capacity: number, addon: Addon = loadAddon('the verified-secret cache')) {
    this.capacity = Math.max(1, Math.floor(capacity));
    this.#addon = addon;
    this.#width = addon.digestSize;
    this.#slab = new Uint8Array(this.capacity * this.#width);
    this.#used = new Uint8Array(this.capacity);
    this.#ids = [];
    this.#hashes = [];
  }

  get size(): number {
    return this.#index.size;
  }

  /** Entries evicted to make room (not invalidations). */
  get evictions(): number {
    return this.#evictions;
  }

  /** true/false when `tokenid` is cached (does `secret` match?), undefined when not. */
  matches(tokenid: string, secret: string): boolean | undefined {
    const slot = this.#index.get(tokenid);
    if (slot === undefined) return undefined;
    const equal = this.#addon.digestEquals(this.#slab, slot * this.#width, secret);
    if (equal) this.#used[slot] = 1;
    return equal;
  }

  /** Records that `secret` verified against `hash` for `tokenid`. */
  set(tokenid: string, hash: string, secret: string): void {
    let slot = this.#index.get(tokenid);
    if (slot === undefined) {
      slot = this.#allocate();
      // The id may be a slice of the request header: keep a copy, not the header.
      const own = ownCopy(tokenid);
      this.#index.set(own, slot);
      this.#ids[slot] = own;
      this.#used[slot] = 0;
    }
    this.#hashes[slot] = hash;
    this.#addon.digestInto(this.#slab, slot * this.#width, secret);
  }

  clear(): number {
    const n = this.#index.size;
    this.#index.clear();
    this.#slab.fill(0);
    this.#used.fill(0);
    this.#ids = [];
    this.#hashes = [];
    this.#free = [];
    this.#next = 0;
    this.#hand = 0;
    return n;
  }

  /**
   * Keeps exactly the entries whose hash is still the stored one in `current`
   * (a rotation writes a new salted hash, a delete removes it) and returns how
   * many were dropped. This is what spares a full re-hash after every change.
   */
  retainMatching(current: ReadonlyMap<string, string>): number {
    let dropped = 0;
    for (const [tokenid, slot] of this.#index) {
      const hash = current.get(tokenid);
      if (hash === this.#hashes[slot]) {
        this.#hashes[slot] = hash; // share the new snapshot's string, release the old
      } else {
        this.#release(tokenid, slot);
        dropped++;
      }
    }
    return dropped;
  }

  /** retainMatching for the ids in `changed` alone: the others are known to be unchanged. */
  retainChanged(changed: readonly string[], current: ReadonlyMap<string, string>): number {
    let dropped = 0;
    for (const tokenid of changed) {
      const slot = this.#index.get(tokenid);
      if (slot !== undefined && current.get(tokenid) !== this.#hashes[slot]) {
        this.#release(tokenid, slot);
        dropped++;
      }
    }
    return dropped;
  }

  #release(tokenid: string, slot: number): void {
    this.#index.delete(tokenid);
    this.#ids[slot] = undefined;
    this.#hashes[slot] = undefined;
    this.#used[slot] = 0;
    this.#slab.fill(0, slot * this.#width, (slot + 1) * this.#width);
    this.#free.push(slot);
  }

  #allocate(): number {
    const free = this.#free.pop();
    if (free !== undefined) return free;
    if (this.#next < this.capacity) return this.#next++;
    this.#evictOne();
    return this.#free.pop() as number;
  }

  /** Second chance: the hand clears the bit of a used slot and moves on; an unused one goes. */
  #evictOne(): void {
    for (let steps = 0; steps <= 2 * this.capacity; steps++) {
      const slot = this.#hand;
      this.#hand = (slot + 1) % this.capacity;
      const tokenid = this.#ids[slot];
      if (tokenid === undefined) continue;
      if (this.#used[slot] === 1) {
        this.#used[slot] = 0;
        continue;
      }
      this.#release(tokenid, slot);
      this.#evictions++;
      return;
    }
    throw new Error('cache full but empty');
  }
}
