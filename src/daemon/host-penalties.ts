/**
 * Per-source failure budgets for the whole API daemon, not per worker: a
 * source gets its budget once, however many workers the cluster has.
 *
 * The primary keeps the authoritative ledger (a SourcePenalties of the same
 * budget and decay, used for its buckets alone). Every worker tells it of
 * each failure it records; when a source's host-wide level is past the
 * budget, the primary sends that level to every worker, which raises its own
 * bucket to it. A worker still counts its own failures at once, so its local
 * bucket bounds a burst on its own while the messages are on their way. A
 * worker joins before it listens: it asks for the sources penalised now and
 * waits for them, so a replacement (a crash, a reload) serves no request
 * with an empty table.
 *
 * The slack: failures that other workers record between the failure that
 * takes the host past its budget and the level's arrival (one IPC round
 * trip through the primary, well under a millisecond on an idle host), plus
 * the requests already admitted to hashing before then. Without the primary
 * (a lost message) it degrades to per-worker budgets, never to none.
 *
 * Messages are batched per turn of the event loop: the first failure of a
 * turn is sent at once (the common case of one failure), the rest of that
 * turn together.
 */
import cluster, { type Worker } from 'node:cluster';
import { SourcePenalties } from '../http/source-penalties.js';
import type { PenaltySettings } from '../service/settings.js';

const FAILURES = 'token-shadow:penalty-failures';
const LEVELS = 'token-shadow:penalty-levels';
const JOIN = 'token-shadow:penalty-join';
/** How long a joining worker waits for the primary; then it starts with its own budgets alone. */
const JOIN_TIMEOUT_MS = 5000;

/** Worker to primary: failures recorded, by source. */
interface FailuresMessage {
  type: typeof FAILURES;
  sources: string[];
}

/** Primary to workers: host-wide levels of penalised sources (the answer to a join, or news). */
interface LevelsMessage {
  type: typeof LEVELS;
  levels: Array<[string, number]>;
  joined?: true;
}

interface JoinMessage {
  type: typeof JOIN;
}

/** Collects items and hands them to `send`: the first of a turn at once, the others after it. */
function batcher<T>(send: (items: T[]) => void): (item: T) => void {
  let pending: T[] | null = null;
  return (item) => {
    if (pending !== null) {
      pending.push(item);
      return;
    }
    send([item]);
    pending = [];
    setImmediate(() => {
      const items = pending ?? [];
      pending = null;
      if (items.length > 0) send(items);
    });
  };
}

/** In the primary: the authoritative ledger. Call configure() before the first worker forks. */
export class HostPenalties {
  #ledger: SourcePenalties | null = null;
  #settings = '';
  #broadcast = batcher<[string, number]>((levels) => {
    for (const worker of Object.values(cluster.workers ?? {})) {
      if (worker?.isConnected()) send(worker, { type: LEVELS, levels });
    }
  });

  constructor() {
    cluster.on('message', (worker, message) => this.#receive(worker, message));
  }

  /** Takes the workers' settings; the ledger starts afresh only when budget or decay changed. */
  configure(settings: PenaltySettings): void {
    const key = JSON.stringify([settings.budget, settings.decayPerSecond]);
    if (key === this.#settings) return;
    this.#settings = key;
    this.#ledger =
      settings.budget > 0
        ? new SourcePenalties({ budget: settings.budget, decayPerSecond: settings.decayPerSecond })
        : null;
  }

  /** Sources over the budget host-wide now (for metrics and tests). */
  penalised(): number {
    return this.#ledger?.penalised().length ?? 0;
  }

  #receive(worker: Worker, message: unknown): void {
    const type = (message as { type?: unknown } | null)?.type;
    if (type === JOIN) {
      send(worker, { type: LEVELS, levels: this.#ledger?.penalised() ?? [], joined: true });
      return;
    }
    if (type !== FAILURES || this.#ledger === null) return;
    const ledger = this.#ledger;
    for (const source of (message as FailuresMessage).sources) {
      if (typeof source !== 'string') continue;
      if (ledger.recordFailure(source)) this.#broadcast([source, ledger.levelOf(source)]);
    }
  }
}

function send(worker: Worker, message: LevelsMessage): void {
  try {
    worker.send(message);
  } catch {
    // a worker that is exiting: its replacement joins afresh
  }
}

/**
 * In a worker: shares `penalties`' failures with the primary and takes its
 * levels. Resolves once the sources penalised now are in (before the worker
 * listens); the returned function stops sharing.
 */
export async function shareWithHost(penalties: SourcePenalties): Promise<() => void> {
  if (process.send === undefined) return () => undefined; // not a cluster worker: nothing to share
  const report = batcher<string>((sources) => {
    try {
      process.send?.({ type: FAILURES, sources } satisfies FailuresMessage);
    } catch {
      // the primary is gone: this worker is about to be, too
    }
  });
  penalties.onFailure = report;
  let joined: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    joined = resolve;
  });
  const onMessage = (message: unknown) => {
    if ((message as { type?: unknown } | null)?.type !== LEVELS) return;
    const { levels, joined: answer } = message as LevelsMessage;
    for (const [source, level] of levels) penalties.raise(source, level);
    if (answer) joined();
  };
  process.on('message', onMessage);
  process.send?.({ type: JOIN } satisfies JoinMessage);
  // A primary that keeps no ledger (not ours) never answers: per-worker budgets, not none.
  const timer = setTimeout(joined, JOIN_TIMEOUT_MS);
  await ready;
  clearTimeout(timer);
  return () => {
    process.off('message', onMessage);
    penalties.onFailure = null;
  };
}
