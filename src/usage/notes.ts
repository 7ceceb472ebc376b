/**
 * A worker's notes of which token was used when and from where, kept in memory
 * only: the request path pays a Map lookup and, at most once per token and
 * second, a write of a small integer into the token's note; its source address
 * is compared and written only when it changed (no allocation for a token in
 * steady use from one source). No clock is read per request: a coarse clock
 * advanced by an unref'd timer at each second boundary says what second it is.
 * The notes leave the process in batches (see UsageReporter); a crash loses
 * only what was noted since the last batch.
 */
import { ownCopy } from '../strings.js';

/** What a request path needs: record that a token just authenticated. */
export interface UseRecorder {
  /**
   * Called with the token id after every successful authentication, and the
   * client's address as the authenticator decided it (undefined when unknown);
   * must not block.
   */
  note(tokenid: string, source?: string): void;
}

/** A token's last use: when, and where from when known. */
export interface LastUse {
  /** Epoch second. */
  readonly seconds: number;
  /** The client's address (the peer, or the client a trusted proxy names); never a secret. */
  readonly source?: string;
  /** The host name (multi-host mode's cluster settings) whose workers recorded it. */
  readonly host?: string;
}

/** Token id to its last use. */
export type LastUsedMap = Map<string, LastUse>;

/** A LastUse without the fields that are undefined (so that JSON and deepEqual see none). */
export function lastUseOf(seconds: number, source?: string, host?: string): LastUse {
  if (source === undefined) return host === undefined ? { seconds } : { seconds, host };
  return host === undefined ? { seconds, source } : { seconds, source, host };
}

/** A character beyond Latin-1: such text is copied as two-byte characters. */
const BEYOND_LATIN1 = /[\u0100-\uffff]/;

/**
 * ownCopy, but one byte per character where the text allows (it always does
 * for an id or an address): ownCopy's UTF-16 copy is a two-byte string, and
 * comparing it with the request's one-byte strings on every note costs about
 * twice as much as comparing two one-byte strings. Runs only when a note is
 * made or its source changes.
 */
function ownNoteCopy(value: string): string {
  return !BEYOND_LATIN1.test(value)
    ? Buffer.from(value, 'latin1').toString('latin1')
    : ownCopy(value);
}

/** One token's note, updated in place by note(): the same object for as long as the token is noted. */
class Note {
  /**
   * The source string last passed in, as given: a connection passes the same
   * string object on every request (its peer's, once normalised), so a
   * pointer compare settles most notes. Only ever compared, never reported:
   * `source` is the note's own copy. It may keep alive the string it was cut
   * from: the socket's peer name or an X-Forwarded-For header, never the
   * Authorization header (ClientAddresses reads no other).
   */
  seen: string | undefined;

  constructor(
    public seconds: number,
    public source: string | undefined,
  ) {
    this.seen = source;
  }
}

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
  #uses = new Map<string, Note>();
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

  /**
   * The request path's part: a Map lookup, and writes into the token's note
   * only when its second or its source changed. The source is compared by
   * value, so a new connection from the same address writes nothing.
   */
  note(tokenid: string, source?: string): void {
    this.#total++;
    const seconds = this.#clock.seconds;
    const last = this.#uses.get(tokenid);
    if (last === undefined) {
      // A new key (or source) may be a slice of the request header: keep a copy, never the header.
      const note = new Note(seconds, source === undefined ? undefined : ownNoteCopy(source));
      note.seen = source;
      this.#uses.set(ownNoteCopy(tokenid), note);
      return;
    }
    if (last.seconds !== seconds) last.seconds = seconds;
    if (source === last.seen) return;
    last.seen = source;
    // The latest use's source: an unknown one (undefined) replaces a known one too.
    if (last.source !== source) {
      last.source = source === undefined ? undefined : ownNoteCopy(source);
    }
  }

  /** The last use this process noted, if it still holds a note for the token. */
  lastUse(tokenid: string): LastUse | undefined {
    const note = this.#uses.get(tokenid);
    return note === undefined ? undefined : lastUseOf(note.seconds, note.source);
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
    for (const [tokenid, note] of this.#uses) {
      if (note.seconds >= since) batch.set(tokenid, lastUseOf(note.seconds, note.source));
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

/** Merges `from` into `into`, keeping the later use per token (the one already there on a tie). */
export function mergeLatest(into: LastUsedMap, from: Iterable<readonly [string, LastUse]>): void {
  for (const [tokenid, use] of from) {
    const known = into.get(tokenid);
    if (known === undefined || known.seconds < use.seconds) into.set(tokenid, use);
  }
}
