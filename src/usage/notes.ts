/**
 * A worker's notes of which token was used when, kept in memory only: the
 * request path pays a Map lookup and, at most once per token and second, a
 * Map write of a small integer. No clock is read per request: a coarse clock
 * advanced by an unref'd timer at each second boundary says what second it is.
 * The notes leave the process in batches (see UsageReporter); a crash loses
 * only what was noted since the last batch.
 */
import { ownCopy } from '../strings.js';

/** What a request path needs: record that a token just authenticated. */
export interface UseRecorder {
  /** Called with the token id after every successful authentication; must not block. */
  note(tokenid: string, source?: string): void;
}

/** Token id to the epoch second of its last use. */
export type LastUsedMap = Map<string, number>;

/** The current epoch second, advanced by a timer instead of read per call. */
export interface SecondClock {
  /** The current epoch second. */
  readonly seconds: number;
  /** Stops whatever advances it (a timer). */
  stop?(): void;
}

/** A SecondClock ticking at each wall-clock second boundary (unref'd: never keeps a process up). */
export class TickingClock implements SecondClock {
  /** The current epoch second, as of the last tick. */
  seconds = Math.floor(Date.now() / 1000);
  #timer: NodeJS.Timeout | null = null;

  constructor() {
    this.#schedule();
  }

  /** Stops ticking. */
  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #schedule(): void {
    const now = Date.now();
    // Never backwards (a clock step): take() relies on seconds that only grow.
    this.seconds = Math.max(this.seconds, Math.floor(now / 1000));
    // +1 ms so that the timer lands in the next second, not at its last instant.
    this.#timer = setTimeout(() => this.#schedule(), 1001 - (now % 1000));
    this.#timer.unref();
  }
}

/** The notes of one process; give it to an Authenticator as `usage`. */
export class UsageNotes implements UseRecorder {
  #clock: SecondClock;
  #uses: LastUsedMap = new Map();
  /** The second at which the last batch was taken (see take()). */
  #takenAt = Number.NEGATIVE_INFINITY;
  #total = 0;

  constructor(clock: SecondClock = new TickingClock()) {
    this.#clock = clock;
  }

  /** Uses noted since this process started (the aggregate metric; no per-token count). */
  get total(): number {
    return this.#total;
  }

  /** Tokens with a note kept (bounded by the tokens used within about two batches). */
  get size(): number {
    return this.#uses.size;
  }

  /** The request path's part: a Map lookup, and a write at most once per token and second. */
  note(tokenid: string): void {
    this.#total++;
    const seconds = this.#clock.seconds;
    const last = this.#uses.get(tokenid);
    if (last === seconds) return;
    // A new key may be a slice of the request header: keep a copy, never the header.
    this.#uses.set(last === undefined ? ownCopy(tokenid) : tokenid, seconds);
  }

  /** The last use this process noted, if it still holds a note for the token. */
  lastUse(tokenid: string): number | undefined {
    return this.#uses.get(tokenid);
  }

  /**
   * The uses noted since the previous take(). The Map is kept, not swapped, so
   * a token in steady use is updated in place and costs no allocation; a note
   * older than the previous take was already in that batch and is dropped here.
   * Exact because JavaScript runs one thing at a time: a note written after the
   * previous take carries a second no earlier than the second that take ran in.
   */
  take(): LastUsedMap {
    const since = this.#takenAt;
    const batch: LastUsedMap = new Map();
    for (const [tokenid, seconds] of this.#uses) {
      if (seconds >= since) batch.set(tokenid, seconds);
      else this.#uses.delete(tokenid);
    }
    this.#takenAt = this.#clock.seconds;
    return batch;
  }

  /** Stops the clock (the notes stay readable). */
  close(): void {
    this.#clock.stop?.();
  }
}

/** Merges `from` into `into`, keeping the later second per token. */
export function mergeLatest(into: LastUsedMap, from: Iterable<readonly [string, number]>): void {
  for (const [tokenid, seconds] of from) {
    const known = into.get(tokenid);
    if (known === undefined || known < seconds) into.set(tokenid, seconds);
  }
}
