/**
 * "Has the TTL passed since the file was last checked?" on the hot path of
 * every request. Without an injected clock, an unref'd timer flips a flag when
 * the TTL runs out, so a request reads no clock at all; tests inject a clock
 * they move by hand.
 */
export class Freshness {
  readonly ttlMs: number;
  #clock: (() => number) | null;
  #checkedAt = Number.NEGATIVE_INFINITY;
  #expired = true;
  #timer: NodeJS.Timeout | null = null;

  constructor(ttlMs: number, clock: (() => number) | null = null) {
    this.ttlMs = ttlMs;
    this.#clock = clock;
  }

  expired(): boolean {
    return this.#clock === null ? this.#expired : this.#clock() - this.#checkedAt >= this.ttlMs;
  }

  /** The file was just checked: trust it for another TTL. */
  touch(): void {
    if (this.#clock !== null) {
      this.#checkedAt = this.#clock();
      return;
    }
    this.#expired = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#expired = true;
      this.#timer = null;
    }, this.ttlMs);
    this.#timer.unref();
  }
}
