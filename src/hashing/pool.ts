/**
 * The hashing pool: a bounded piscina pool, so that slow hashing never runs on
 * the event loop and a flood of uncached verifies fails fast with BusyError
 * instead of queueing without end.
 *
 * Sizing: node-argon2 computes on libuv's process-wide thread pool
 * (UV_THREADPOOL_SIZE, 4 by default), not on the piscina thread that calls it.
 * Effective argon2 concurrency is min(threads, UV_THREADPOOL_SIZE), and libuv's
 * queue is unbounded and invisible, so keep threads <= UV_THREADPOOL_SIZE (set
 * that variable before the process starts, as the daemons' units do).
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { BusyError } from '../errors.js';
import { loadAddon } from '../native.js';
import { hashCostProblem } from './cost.js';
import { type Argon2Params, DEFAULT_ARGON2, isLegacyHash, legacyPurpose } from './params.js';
import type { HashTask } from './worker.js';

/** How many threads hash, how many tasks may wait, and the argon2 parameters of new hashes. */
export interface HashPoolOptions {
  /** Worker threads. Default: the core count. */
  threads?: number;
  /** Tasks allowed to wait beyond the running ones. Default 4 x threads. */
  maxQueue?: number;
  argon2?: Partial<Argon2Params>;
}

/** What the pool has done and holds now. */
export interface HashPoolStats {
  hashes: number;
  verifies: number;
  busyRejections: number;
  /** Verifies refused because the stored hash exceeds the cost limits. */
  refusedCostly: number;
  queued: number;
  running: number;
  threads: number;
  maxQueue: number;
}

const workerFile = new URL('./worker.js', import.meta.url).href;

export function uvThreadpoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.UV_THREADPOOL_SIZE);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : 4;
}

/** Longest close() waits for the threads to finish loading before it stops them anyway. */
const CLOSE_PING_MS = 5_000;

/** Hashing and verifying off the event loop, in worker threads, with a bounded queue (BusyError when full). */
export class HashPool {
  readonly threads: number;
  readonly maxQueue: number;
  readonly argon2: Argon2Params;
  #piscina: Piscina;
  #hashes = 0;
  #verifies = 0;
  #busy = 0;
  #closed = false;
  #inFlight = 0;
  #refusedCostly = 0;
  #warnedCost = new Set<string>();

  constructor(options: HashPoolOptions = {}) {
    this.threads = Math.max(1, options.threads ?? availableParallelism());
    this.maxQueue = Math.max(0, options.maxQueue ?? this.threads * 4);
    this.argon2 = Object.freeze({ ...DEFAULT_ARGON2, ...options.argon2 });
    this.#piscina = new Piscina({
      filename: workerFile,
      minThreads: this.threads,
      maxThreads: this.threads,
      maxQueue: this.maxQueue,
      concurrentTasksPerWorker: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
    });
    if (this.threads > uvThreadpoolSize()) {
      process.emitWarning(
        `hash pool has ${this.threads} threads but UV_THREADPOOL_SIZE is ${uvThreadpoolSize()}: ` +
          'argon2 will queue inside libuv; set UV_THREADPOOL_SIZE >= threads',
        { code: 'TOKEN_SHADOW_UV_THREADPOOL' },
      );
    }
  }

  /** A new argon2id hash of `secret` with this pool's parameters. */
  async hash(secret: string, signal?: AbortSignal): Promise<string> {
    this.#hashes++;
    return (await this.#run({ op: 'hash', secret, params: this.argon2 }, signal)) as string;
  }

  /**
   * Whether `secret` matches `hash` (argon2, $5$, $6$, $y$). A hash that would
   * cost more than the limits in cost.ts verifies nothing, at once, with one
   * warning per hash kind and reason (never the hash itself).
   */
  async verify(hash: string, secret: string, signal?: AbortSignal): Promise<boolean> {
    const tooCostly = hashCostProblem(hash);
    if (tooCostly !== null) {
      this.#refusedCostly++;
      if (!this.#warnedCost.has(tooCostly)) {
        this.#warnedCost.add(tooCostly);
        process.emitWarning(`refusing to verify a stored hash: ${tooCostly}`, {
          code: 'TOKEN_SHADOW_HASH_COST',
        });
      }
      return false;
    }
    // Legacy crypt(3) needs the addon; say so here, as a typed error, rather
    // than let the worker fail with an error that loses its class in transit.
    if (isLegacyHash(hash)) loadAddon(legacyPurpose(hash));
    this.#verifies++;
    return (await this.#run({ op: 'verify', hash, secret }, signal)) === true;
  }

  /** Tasks submitted and not yet settled: running plus queued. */
  get inFlight(): number {
    return this.#inFlight;
  }

  stats(): HashPoolStats {
    return {
      hashes: this.#hashes,
      verifies: this.#verifies,
      busyRejections: this.#busy,
      refusedCostly: this.#refusedCostly,
      queued: Math.max(0, this.#inFlight - this.threads),
      running: Math.min(this.#inFlight, this.threads),
      threads: this.threads,
      maxQueue: this.maxQueue,
    };
  }

  /**
   * Waits for running and queued tasks, then stops the threads. Idempotent.
   * First every thread answers a ping, that is, has finished loading its
   * module: Node aborts the whole process when a worker thread is terminated
   * in the middle of loading an ES module or inside the addon (seen as
   * `Assertion failed: facade->InstantiateModule` on Node 20 and "terminate
   * called after throwing an instance of 'Napi::Error'"), which a pool made
   * and closed at once (a tokenctl command that hashes nothing) could do.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const loaded = Promise.all(
      Array.from({ length: this.threads }, () =>
        this.#piscina.run({ op: 'ping' } satisfies HashTask).catch(() => undefined),
      ),
    );
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise((resolve) => {
      timer = setTimeout(resolve, CLOSE_PING_MS);
    });
    await Promise.race([loaded, bound]);
    clearTimeout(timer);
    await this.#piscina.close();
  }

  async #run(task: HashTask, signal?: AbortSignal): Promise<unknown> {
    if (this.#closed) throw new BusyError('hash pool is closed');
    // Our own count decides, so the refusal is immediate and exact.
    if (this.#inFlight >= this.threads + this.maxQueue) {
      this.#busy++;
      throw new BusyError();
    }
    this.#inFlight++;
    try {
      return await this.#piscina.run(task, signal ? { signal } : {});
    } catch (error) {
      if (/queue is at limit/i.test(String((error as Error)?.message))) {
        this.#busy++;
        throw new BusyError();
      }
      throw error;
    } finally {
      this.#inFlight--;
    }
  }
}
