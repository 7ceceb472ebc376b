/**
 * The fence: the FENCE slot of the page holds the instant (CLOCK_MONOTONIC,
 * microseconds, the same clock for every process of the host) until which
 * this host may trust its copy of the cluster store. The sync agent moves it
 * forward after each confirmed lease keepalive; a dead or cut-off agent stops
 * moving it, so the host fences itself without anyone's help. 0 means "no
 * fence" (single-host mode): then the check is one load and a compare.
 */
import type { GenerationPage } from './page.js';
import { Slot } from './slots.js';

/** Stored to fence at once: a deadline that has always passed. */
const FENCED = 1;

/**
 * CLOCK_MONOTONIC in microseconds. performance.now() is uv_hrtime (monotonic)
 * minus this process's start, so one BigInt read at load time gives the offset
 * and the hot path reads only performance.now().
 */
const originUs = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;

export function monotonicUs(): number {
  return originUs + performance.now() * 1000;
}

export type FenceState = 'none' | 'open' | 'fenced';

/** Whether the fence on `page` has passed: the hot path of every multi-host request. */
export function fencePassed(page: GenerationPage): boolean {
  const deadline = page.load(Slot.FENCE);
  return deadline !== 0 && monotonicUs() >= deadline;
}

export function fenceState(page: GenerationPage | null): FenceState {
  if (page === null) return 'none';
  const deadline = page.load(Slot.FENCE);
  if (deadline === 0) return 'none';
  return monotonicUs() >= deadline ? 'fenced' : 'open';
}

/** Microseconds of trust left (negative once fenced), null without a fence. */
export function fenceRemainingUs(page: GenerationPage): number | null {
  const deadline = page.load(Slot.FENCE);
  return deadline === 0 ? null : deadline - monotonicUs();
}

/** The writer's side, for the sync agent (the only writer of the slot). */
export const fenceWriter = {
  /** Refuse every token from now on, until `extend` is called. */
  close(page: GenerationPage): void {
    page.store(Slot.FENCE, FENCED);
  },
  /** Trust the copy until `deadlineUs` (monotonic µs); never moves backwards. */
  extend(page: GenerationPage, deadlineUs: number): void {
    const target = Math.max(FENCED + 1, Math.floor(deadlineUs));
    if (page.load(Slot.FENCE) < target) page.store(Slot.FENCE, target);
  },
  /** Back to single-host mode: no fence at all. */
  remove(page: GenerationPage): void {
    page.store(Slot.FENCE, 0);
  },
};
