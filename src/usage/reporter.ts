/**
 * Hands a worker's usage notes to the manager in batches: at every multiple of
 * the interval on the wall clock (so the workers of a host report together and
 * the manager writes once for all of them) and once more at shutdown. A batch
 * the manager did not take is kept and sent with the next one, so only a crash
 * of this process loses notes: those since its last batch.
 */
import { BoundaryTask } from './boundary-task.js';
import { type LastUse, type LastUsedMap, mergeLatest, type UsageNotes } from './notes.js';

/** Entries per message, so that one message stays far below the RPC's line limit. */
export const MAX_REPORT_ENTRIES = 256;

export const DEFAULT_REPORT_INTERVAL_MS = 10_000;

/**
 * One use as it travels to the manager: the token id, the epoch second and,
 * when known, the source address (left out, not null, when unknown: the
 * two-element form is what workers sent before sources were kept).
 */
export type ReportedUse =
  | [tokenid: string, seconds: number]
  | [tokenid: string, seconds: number, source: string];

/** The message form of one noted use. */
export function reportedUse(tokenid: string, use: LastUse): ReportedUse {
  return use.source === undefined ? [tokenid, use.seconds] : [tokenid, use.seconds, use.source];
}

export interface UsageReporterOptions {
  notes: UsageNotes;
  intervalMs?: number;
  /** Delivers one message of at most MAX_REPORT_ENTRIES uses; rejects when it was not taken. */
  send: (uses: ReportedUse[]) => Promise<void>;
  onError?: (error: unknown) => void;
}

export class UsageReporter {
  readonly intervalMs: number;
  #notes: UsageNotes;
  #send: UsageReporterOptions['send'];
  #onError: (error: unknown) => void;
  /** Uses of batches that did not reach the manager, sent with the next one. */
  #pending: LastUsedMap = new Map();
  #task: BoundaryTask;
  #closed = false;
  #batches = 0;

  constructor(options: UsageReporterOptions) {
    this.#notes = options.notes;
    this.intervalMs = Math.max(1, options.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS);
    this.#send = options.send;
    this.#onError = options.onError ?? (() => undefined);
    this.#task = new BoundaryTask(this.intervalMs, 0, () => this.#deliver());
  }

  /** Batches delivered so far. */
  get batches(): number {
    return this.#batches;
  }

  /** Sends what was noted since the last batch; one flush at a time. */
  flush(): Promise<void> {
    return this.#task.run();
  }

  /**
   * Stops the timer and sends the last batch (the shutdown path), waiting at
   * most `timeoutMs` for the manager: a stuck manager must not hold a worker's
   * exit, and what it did not take is what a crash would have lost.
   */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    let timer: NodeJS.Timeout | undefined;
    const last = (async () => {
      await this.#task.stop();
      await this.flush();
    })();
    const gaveUp = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([last, gaveUp]);
    clearTimeout(timer);
    this.#notes.close();
  }

  async #deliver(): Promise<void> {
    const batch = this.#notes.take();
    mergeLatest(batch, this.#pending);
    this.#pending.clear();
    if (batch.size === 0) return;
    const entries = [...batch];
    for (let i = 0; i < entries.length; i += MAX_REPORT_ENTRIES) {
      try {
        const part = entries.slice(i, i + MAX_REPORT_ENTRIES);
        await this.#send(part.map(([tokenid, use]) => reportedUse(tokenid, use)));
      } catch (error) {
        mergeLatest(this.#pending, entries.slice(i));
        this.#onError(error);
        return;
      }
    }
    this.#batches++;
  }
}
