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
} as const;

export type SlotName = keyof typeof Slot;

/** Bytes 0-7 hold the magic; slot i is the u64 at byte 8 + 8 * i. */
export const PAGE_SIZE = 4096;
export const SLOT_COUNT = (PAGE_SIZE - 8) / 8;
