/**
 * What GET /pools answers, as PVE 9.1's /api2/json/pools (pve-manager's
 * PVE/API2/Pool.pm): the pools on whose /pool/NAME the caller has Pool.Audit,
 * with their comment; with `poolid`, that one pool and its members. (The
 * pool operations themselves are in operations.ts, with the others.)
 *
 * Where this differs from PVE: asked for one pool without Pool.Audit on it, PVE
 * answers anyway (its check's result is ignored); the operation's rule answers
 * 403, also for a pool that does not exist, so the answer does not tell which
 * exist. PVE describes members from the cluster's VM list (type qemu/lxc,
 * node, usage); this project knows no cluster, so a member is `{ vmid }` or
 * `{ type: 'storage', storage }`.
 */
import { checkPrivileges } from '../access/permissions.js';
import { getPool } from '../config/pools.js';
import type { PoolEntry, UserConfig } from '../config/types.js';
import type { Caller } from './rules.js';

export const POOL_AUDIT = ['Pool.Audit'] as const;

export type PoolMember = { vmid: number } | { type: 'storage'; storage: string };

export interface PoolInfo {
  poolid: string;
  /** Left out when empty, as PVE does. */
  comment?: string;
  members?: PoolMember[];
}

/** The ACL path of a pool. */
export function poolPath(poolid: string): string {
  return `/pool/${poolid}`;
}

function members(pool: PoolEntry): PoolMember[] {
  return [
    ...[...pool.vms].sort((a, b) => a - b).map((vmid) => ({ vmid })),
    ...[...pool.storage].sort().map((storage) => ({ type: 'storage' as const, storage })),
  ];
}

function info(poolid: string, pool: PoolEntry, withMembers: boolean): PoolInfo {
  return {
    poolid,
    ...(pool.comment !== '' ? { comment: pool.comment } : {}),
    ...(withMembers ? { members: members(pool) } : {}),
  };
}

/** One pool with its members (ConfigError 'not-found' when it does not exist). */
export function poolWithMembers(config: UserConfig, poolid: string): PoolInfo {
  return info(poolid, getPool(config, poolid), true);
}

/** The pools `caller` has Pool.Audit on, sorted by id; `withMembers` for tokenctl's table. */
export function visiblePools(config: UserConfig, caller: Caller, withMembers = false): PoolInfo[] {
  return [...config.pools.keys()]
    .sort()
    .filter((poolid) => checkPrivileges(config, caller, poolPath(poolid), POOL_AUDIT))
    .map((poolid) => info(poolid, config.pools.get(poolid) as PoolEntry, withMembers));
}
