/**
 * The API primary's workers: started, replaced when one dies, restarted one
 * by one on reload, drained on stop.
 *
 * A rolling restart never lowers capacity: the replacement of a worker is
 * listening before the old one is told to drain, and a draining worker takes
 * no new connection (the primary hands them to the others) while it finishes
 * what it has. Old workers drain side by side, so a reload of N workers takes
 * N worker start-ups plus one drain, not N drains.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from './logger.js';

/** What a worker tells the primary once its server listens. */
export type FromWorker = { type: 'listening'; port: number };

/** The message that asks a worker to drain and exit. */
export const SHUTDOWN = 'shutdown';

export class WorkerStartError extends Error {}

/**
 * How long to wait before the next replacement: none after a worker that
 * served, then doubling from `firstMs` to `maxMs` while replacements die
 * before they listen (a changed certificate, an unreadable file), so a
 * worker that cannot start is not re-forked in a tight loop.
 */
export class Backoff {
  readonly firstMs: number;
  readonly maxMs: number;
  #failures = 0;

  constructor(firstMs = 100, maxMs = 10_000) {
    this.firstMs = firstMs;
    this.maxMs = maxMs;
  }

  /** The wait before the next attempt. */
  next(): number {
    return this.#failures === 0
      ? 0
      : Math.min(this.maxMs, this.firstMs * 2 ** (this.#failures - 1));
  }

  failed(): void {
    this.#failures++;
  }

  succeeded(): void {
    this.#failures = 0;
  }
}

export class WorkerPool {
  readonly #log: Logger;
  #env: Record<string, string>;
  #size: number;
  /** Workers that listen and are not draining: the ones that count as serving. */
  readonly #serving = new Map<number, Worker>();
  readonly #retiring = new Map<number, Promise<void>>();
  #stopping = false;
  #port: number | null = null;
  readonly #backoff = new Backoff();
  readonly #pendingReplacements = new Set<NodeJS.Timeout>();
  /** Called whenever the set of serving workers changes. */
  onChange: (serving: number) => void = () => undefined;

  constructor(log: Logger, env: Record<string, string>, size: number) {
    this.#log = log;
    this.#env = env;
    this.#size = size;
    cluster.on('exit', (worker, code, signal) => this.#exited(worker, code, signal));
  }

  get serving(): number {
    return this.#serving.size;
  }

  get port(): number | null {
    return this.#port;
  }

  /** The workers metrics are gathered from: serving and draining ones, all still count. */
  workers(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  }

  /** Starts the workers; resolves with the port once all listen, rejects if one exits first. */
  async start(): Promise<number> {
    await Promise.all(Array.from({ length: this.#size }, () => this.#fork()));
    return this.#port as number;
  }

  /**
   * Restarts every worker with `env`, one at a time, and grows or shrinks to
   * `size`. Rejects with WorkerStartError when a replacement exits before it
   * listens: the workers not yet replaced keep serving with the old settings.
   * Resolves once every old worker has drained and exited.
   */
  async roll(env: Record<string, string>, size: number): Promise<void> {
    this.#env = env;
    this.#size = size;
    const old = [...this.#serving.values()];
    const drained: Array<Promise<void>> = [];
    try {
      for (let i = 0; i < Math.max(old.length, size); i++) {
        if (i < size) await this.#fork();
        const previous = old[i];
        if (previous) drained.push(this.#retire(previous));
      }
    } finally {
      await Promise.all(drained);
    }
  }

  /** Drains every worker; resolves when all have exited. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const timer of this.#pendingReplacements) clearTimeout(timer);
    await Promise.all([...this.#serving.values()].map((w) => this.#retire(w)));
    await Promise.all(this.#retiring.values());
  }

  #fork(): Promise<Worker> {
    const worker = cluster.fork(this.#env);
    return new Promise((resolve, reject) => {
      const onMessage = (message: FromWorker) => {
        if (message?.type !== 'listening') return;
        worker.off('message', onMessage);
        worker.off('exit', onEarlyExit);
        this.#port ??= message.port;
        this.#serving.set(worker.id, worker);
        this.#log.info({ worker: worker.process.pid, port: message.port }, 'worker listening');
        this.onChange(this.#serving.size);
        resolve(worker);
      };
      const onEarlyExit = (code: number | null, signal: string | null) => {
        worker.off('message', onMessage);
        reject(new WorkerStartError(`a worker exited (${code ?? signal}) before it was listening`));
      };
      worker.on('message', onMessage);
      worker.once('exit', onEarlyExit);
    });
  }

  #retire(worker: Worker): Promise<void> {
    const existing = this.#retiring.get(worker.id);
    if (existing) return existing;
    this.#serving.delete(worker.id);
    this.onChange(this.#serving.size);
    const exited = new Promise<void>((resolve) => {
      if (worker.isDead()) resolve();
      else worker.once('exit', () => resolve());
    });
    this.#retiring.set(worker.id, exited);
    try {
      worker.send(SHUTDOWN);
    } catch {
      worker.kill();
    }
    return exited;
  }

  #exited(worker: Worker, code: number | null, signal: string | null): void {
    if (this.#retiring.delete(worker.id)) return;
    // A worker that never listened is reported by #fork's promise instead.
    if (!this.#serving.delete(worker.id)) return;
    this.onChange(this.#serving.size);
    if (this.#stopping) return;
    this.#replace({ worker: worker.process.pid, code, signal }, 'worker died, starting a new one');
  }

  /** Forks a replacement after the backoff's wait, and tries again (waiting longer) if it dies. */
  #replace(details: Record<string, unknown>, message: string): void {
    const restartInMs = this.#backoff.next();
    this.#log.warn({ ...details, restartInMs }, message);
    const timer = setTimeout(() => {
      this.#pendingReplacements.delete(timer);
      if (this.#stopping) return;
      this.#fork().then(
        () => this.#backoff.succeeded(),
        (error) => {
          this.#backoff.failed();
          if (!this.#stopping) this.#replace({ err: String(error) }, 'replacement failed');
        },
      );
    }, restartInMs);
    this.#pendingReplacements.add(timer);
  }
}
