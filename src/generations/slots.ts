/**
 * Named slots of the generation page. The numbers are fixed forever and new
 * names are only ever appended: every process of every version must agree on
 * them. The order follows Proxmox Datacenter Manager's ConfigVersionCache.
 */
export const Slot = {
  USER_AND_ACL: 0,
  TRAFFIC_CONTROL: 1,
  REMOTE_MAPPING: 2,
  TOKEN_SHADOW: 3,
  /**
   * Multi-host mode: the CLOCK_MONOTONIC microsecond until which this host may
   * trust its copy of the cluster store; 0 (single-host mode) means no fence.
   * Not a counter: the sync agent stores it (see fence.ts).
   */
  FENCE: 4,
  /** Multi-host mode: the last store revision this host published and acked (stored). */
  CLUSTER_ACKED: 5,
  /** Multi-host mode: the latest store revision the agent saw at its last check (stored). */
  CLUSTER_SEEN: 6,
} as const;

/**
 * The slots that count changes (bumped by writers); the others are stored
 * values (the fence, revisions), which a bump would corrupt: FENCE from 0 to 1
 * would fence a single host for good.
 */
export const COUNTER_SLOTS: readonly number[] = Object.freeze([
  Slot.USER_AND_ACL,
  Slot.TRAFFIC_CONTROL,
  Slot.REMOTE_MAPPING,
  Slot.TOKEN_SHADOW,
]);

/** The name of a slot of the generation page. */
export type SlotName = keyof typeof Slot;

/** Bytes 0-7 hold the magic; slot i is the u64 at byte 8 + 8 * i. */
export const PAGE_SIZE = 4096;
export const SLOT_COUNT = (PAGE_SIZE - 8) / 8;

/**
 * Words at the end of the page belong to the page itself, not to a file:
 * RETIRED is set (with every counter slot bumped) by a writer that found the
 * page no longer at its path, so its readers fall to the slow path and remap,
 * and a retired page is never trusted again. The last word (SLOT_COUNT - 1)
 * held a writer's record of the page's inode in earlier versions: reserved.
 * Named slots grow from 0 and never reach them.
 */
export const PageWord = {
  RETIRED: SLOT_COUNT - 2,
} as const;
