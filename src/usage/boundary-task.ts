/**
 * A task run at every multiple of an interval on the wall clock (plus an
 * offset), one run at a time. Workers report and the manager writes on the
 * same boundaries, so the manager's one write per interval carries every
 * worker's batch of that boundary. The timer is unref'd: it never keeps a
 * process up.
 */

/** Milliseconds until the wall clock reaches the next multiple of `intervalMs`, plus `offsetMs`. */
export function untilNextBoundary(intervalMs: number, offsetMs = 0, nowMs = Date.now()): number {
  return intervalMs - (nowMs % intervalMs) + offsetMs;
}

export class BoundaryTask {
  intervalMs: number;
  offsetMs: number;
  #task: () => Promise<void>;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #stopped = false;

  /** `task` must not reject: it reports its own failures. */
  constructor(intervalMs: number, offsetMs: number, task: () => Promise<void>) {
    this.intervalMs = Math.max(1, intervalMs);
    this.offsetMs = offsetMs;
    this.#task = task;
    this.#schedule();
  }

  /** Runs the task now, or joins the run under way. */
  run(): Promise<void> {
    this.#running ??= this.#task().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  /** From the next boundary on, runs every `intervalMs` (a reload); a run under way finishes first. */
  retime(intervalMs: number, offsetMs: number): void {
    this.intervalMs = Math.max(1, intervalMs);
    this.offsetMs = offsetMs;
    // A timer's own run schedules the next when it ends, with the new values.
    if (this.#timer === null) return;
    clearTimeout(this.#timer);
    this.#schedule();
  }

  /** No more runs on the timer; resolves when a run under way has finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        this.run().finally(() => this.#schedule());
      },
      untilNextBoundary(this.intervalMs, this.offsetMs),
    );
    this.#timer.unref();
  }
}
