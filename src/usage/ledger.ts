/**
 * The manager's view of last uses: what the workers reported (tagged with this
 * host's name in multi-host mode), and what other hosts recorded, merged
 * (latest second wins, with its source and host), handed to
 * the sinks at most once per batch interval. Writes happen a little after each
 * multiple of the interval on the wall clock, when the workers' batches of
 * that moment are in, so one write serves all workers.
 * It never touches user.cfg or token.shadow, nor their locks.
 */
import { ParameterError } from '../errors.js';
import { isTokenid } from '../ids.js';
import { BoundaryTask } from './boundary-task.js';
import { type LastUse, type LastUsedMap, lastUseOf, mergeLatest } from './notes.js';
import { DEFAULT_REPORT_INTERVAL_MS, MAX_REPORT_ENTRIES } from './reporter.js';
import type { LastUsedSink } from './sink.js';
import { isHostName, isSourceAddress, shownAddress } from './where.js';

/** A worker's clock may run a little ahead; anything further ahead is taken as now. */
const FUTURE_SLACK_SECONDS = 60;

export interface LastUsedLedgerOptions {
  sinks: LastUsedSink[];
  /** What was recorded before (the file as loaded at start). */
  initial?: { since: number | null; tokens: ReadonlyMap<string, LastUse> };
  /** This host's name in multi-host mode: the host of the uses its workers report. */
  host?: string;
  intervalMs?: number;
  /** How long after each boundary to write (default: a tenth of the interval, at most 1 s). */
  settleMs?: number;
  /**
   * Which tokens exist now: reports for others are dropped, and so are their
   * entries at each write (a token deleted outside the manager, by tokenctl).
   */
  known?: () => Promise<(tokenid: string) => boolean>;
  /** Epoch seconds (tests substitute their own). */
  now?: () => number;
  onError?: (error: unknown) => void;
}

export class LastUsedLedger {
  readonly since: number;
  #sinks: LastUsedSink[];
  #host: string | undefined;
  #all: LastUsedMap = new Map();
  #changed: LastUsedMap = new Map();
  #known: () => Promise<(tokenid: string) => boolean>;
  #now: () => number;
  #onError: (error: unknown) => void;
  #task: BoundaryTask;
  #settleMs: number | undefined;
  #closed = false;
  #dirty = false;
  #reports = 0;

  constructor(options: LastUsedLedgerOptions) {
    this.#sinks = options.sinks;
    this.#host = options.host;
    this.#known = options.known ?? (async () => () => true);
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000));
    this.#onError = options.onError ?? (() => undefined);
    this.since = options.initial?.since ?? this.#now();
    if (options.initial) mergeLatest(this.#all, options.initial.tokens);
    // A file that did not exist yet is written at the first boundary, so `since` is kept.
    if (options.initial?.since == null) this.#dirty = true;
    this.#settleMs = options.settleMs;
    const intervalMs = Math.max(1, options.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS);
    this.#task = new BoundaryTask(intervalMs, this.#settleFor(intervalMs), () => this.#write());
  }

  get intervalMs(): number {
    return this.#task.intervalMs;
  }

  /** Writes every `intervalMs` from the next boundary on (the workers' new interval, a reload). */
  retime(intervalMs: number): void {
    this.#task.retime(intervalMs, this.#settleFor(Math.max(1, intervalMs)));
  }

  #settleFor(intervalMs: number): number {
    return this.#settleMs ?? Math.min(1000, Math.floor(intervalMs / 10));
  }

  /** Reports taken so far (messages, not uses). */
  get reports(): number {
    return this.#reports;
  }

  lastUse(tokenid: string): LastUse | undefined {
    return this.#all.get(tokenid);
  }

  /**
   * Merges one worker message: a list of [token id, epoch second] or
   * [token id, epoch second, source address] (ReportedUse). Anything else is a
   * ParameterError; entries of unknown tokens are dropped, and so is a source
   * that is not an address (the time is kept; an IPv4-mapped one is kept as IPv4); a second too far in the future
   * is taken as now. Returns how many entries were taken.
   */
  async report(uses: unknown): Promise<number> {
    if (!Array.isArray(uses) || uses.length > MAX_REPORT_ENTRIES) {
      throw new ParameterError(`uses must be a list of at most ${MAX_REPORT_ENTRIES} entries`, {
        uses: 'invalid',
      });
    }
    const entries: Array<[unknown, LastUse]> = [];
    for (const entry of uses) {
      if (!Array.isArray(entry) || (entry.length !== 2 && entry.length !== 3)) continue;
      const [tokenid, seconds, source] = entry as [unknown, unknown, unknown];
      if (typeof seconds !== 'number') continue;
      const where = isSourceAddress(source) ? shownAddress(source) : undefined;
      entries.push([tokenid, lastUseOf(seconds, where, this.#host)]);
    }
    const taken = this.#take(entries, await this.#known(), this.#changed);
    this.#reports++;
    return taken;
  }

  /**
   * Merges uses recorded elsewhere (other hosts): the later second wins, and
   * the view is marked for writing only when something was newer. They are
   * not this host's changes (LastUsedBatch.changed). Same checks as report().
   */
  async absorb(uses: Iterable<readonly [string, LastUse]>): Promise<number> {
    return this.#take(uses, await this.#known(), null);
  }

  /** Takes the well-formed, newer entries of known tokens; records them in `changed` if given. */
  #take(
    uses: Iterable<readonly [unknown, LastUse]>,
    isKnown: (tokenid: string) => boolean,
    changed: LastUsedMap | null,
  ): number {
    const now = this.#now();
    let taken = 0;
    for (const [tokenid, use] of uses) {
      if (typeof tokenid !== 'string' || !isTokenid(tokenid) || !isKnown(tokenid)) continue;
      const { seconds, source, host } = use;
      if (typeof seconds !== 'number' || !Number.isSafeInteger(seconds) || seconds < 0) continue;
      const second = seconds > now + FUTURE_SLACK_SECONDS ? now : seconds;
      const known = this.#all.get(tokenid);
      if (known !== undefined && known.seconds >= second) continue;
      const kept = lastUseOf(
        second,
        isSourceAddress(source) ? source : undefined,
        isHostName(host) ? host : undefined,
      );
      this.#all.set(tokenid, kept);
      changed?.set(tokenid, kept);
      this.#dirty = true;
      taken++;
    }
    return taken;
  }

  /** A deleted token's record goes with it, so that a new token of the same name starts unused. */
  forget(tokenid: string): void {
    if (this.#all.delete(tokenid)) this.#dirty = true;
    this.#changed.delete(tokenid);
  }

  /** Hands the current view to every sink if anything changed; one write at a time. */
  flush(): Promise<void> {
    return this.#task.run();
  }

  /** Stops the timer and writes what is left (the manager's shutdown). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#task.stop();
    await this.flush();
  }

  async #write(): Promise<void> {
    let isKnown: (tokenid: string) => boolean;
    try {
      isKnown = await this.#known();
    } catch (error) {
      this.#onError(error);
      isKnown = () => true; // cannot tell now: prune at a later write
    }
    for (const tokenid of this.#all.keys()) {
      if (!isKnown(tokenid)) this.forget(tokenid);
    }
    for (const sink of this.#sinks) {
      if (!sink.gather) continue;
      try {
        this.#take(await sink.gather(), isKnown, null);
      } catch (error) {
        this.#onError(error);
      }
    }
    // Nothing new here: only a sink still holding something of its own writes.
    const sinks = this.#dirty ? this.#sinks : this.#sinks.filter((sink) => sink.pending);
    if (sinks.length === 0) return;
    const changed = this.#changed;
    this.#changed = new Map();
    this.#dirty = false;
    const batch = { since: this.since, all: this.#all, changed };
    const results = await Promise.allSettled(sinks.map((sink) => sink.write(batch)));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) {
      // Keep the changes for the next attempt (newer reports win in the merge).
      mergeLatest(this.#changed, changed);
      this.#dirty = true;
      for (const failure of failed) this.#onError(failure.reason);
    }
  }
}
