/**
 * Resource pools, as Proxmox VE keeps them in user.cfg:
 * `pool:NAME:COMMENT:VMIDS:STORAGES:`, the same in both dialects. Reading
 * follows parse_user_config of PVE 9.1 (pve-access-control 9.1.1), changing
 * follows PVE's /pools API (pve-manager's PVE/API2/Pool.pm), without its
 * permission checks, which belong to the caller.
 *
 * A nested pool ('a/b') needs its parent: creating one refuses a missing
 * parent, reading adds the missing parents, as PVE does, so that a file
 * written in a different order still reads the same.
 */
import { ConfigError, quote } from '../errors.js';
import { decodeText, encodeText } from './encoding.js';
import { isWellFormedText } from './syntax.js';
import type { PoolEntry, UserConfig } from './types.js';

/** PVE's verify_poolname: up to three levels of [A-Za-z0-9.-_]. */
const POOL_ID = /^[A-Za-z0-9.\-_]+(?:\/[A-Za-z0-9.\-_]+){0,2}$/;
/** For request schemas. */
export const POOL_ID_PATTERN = POOL_ID.source;
/** PVE's pve-storage-id, which its parser also applies to pool members. */
const STORAGE_ID = /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i;
/** PVE's pve-vmid, for ids being added; reading accepts any digits, as PVE does. */
const MIN_VMID = 100;
const MAX_VMID = 999_999_999;

/** The fields of a pool line, the type included. */
export const POOL_LINE_FIELDS = 5;

/** ACL paths stop at 1024 characters here (normalizeAclPath); '/pool/' takes 6. */
const MAX_POOL_ID = 1024 - '/pool/'.length;
/** A '.' or '..' level, which ACL paths here refuse (PVE would keep it as a name). */
const DOT_LEVEL = /(?:^|\/)\.\.?(?:\/|$)/;

/**
 * A valid pool id, and one whose ACL path ('/pool/ID') this project can hold:
 * PVE sets no length limit and takes '.' and '..' as names.
 */
export function isPoolId(value: string): boolean {
  return (
    typeof value === 'string' &&
    value.length <= MAX_POOL_ID &&
    POOL_ID.test(value) &&
    !DOT_LEVEL.test(value)
  );
}

export function isStorageId(value: string): boolean {
  return typeof value === 'string' && STORAGE_ID.test(value);
}

/** The parent of a nested pool, null for a top-level one. */
export function parentPool(poolid: string): string | null {
  const slash = poolid.lastIndexOf('/');
  return slash < 0 ? null : poolid.slice(0, slash);
}

/** The direct children of a pool, sorted. */
export function childPools(config: UserConfig, poolid: string): string[] {
  return [...config.pools.keys()].filter((id) => parentPool(id) === poolid).sort();
}

/** The pool a VM belongs to, or null. */
export function poolOfVm(config: UserConfig, vmid: number): string | null {
  for (const [poolid, pool] of config.pools) if (pool.vms.has(vmid)) return poolid;
  return null;
}

/** The member an ACL path names: a VM ('/vms/ID', as PVE writes ids) or a storage. */
function memberAt(path: string): { vmid: number } | { storeid: string } | null {
  const vm = /^\/vms\/([1-9][0-9]*)$/.exec(path);
  if (vm) {
    const vmid = Number(vm[1]);
    return Number.isSafeInteger(vmid) ? { vmid } : null;
  }
  const storage = /^\/storage\/([^/]+)$/.exec(path);
  return storage ? { storeid: storage[1] ?? '' } : null;
}

/** Which pools have the object at an ACL path as a member. */
export type PoolMembership = (path: string) => string[];

/**
 * The pools that have the object at an ACL path as a member: the one pool of
 * '/vms/ID', every pool of '/storage/ID', none for any other path. The VM id
 * must be written as PVE writes it (no leading zeros) to match, as in PVE.
 * One scan of the pools; indexPoolMembers() for many look-ups.
 */
export function poolsWithMember(config: UserConfig, path: string): string[] {
  if (config.pools.size === 0) return [];
  const member = memberAt(path);
  if (member === null) return [];
  if ('vmid' in member) {
    const poolid = poolOfVm(config, member.vmid);
    return poolid === null ? [] : [poolid];
  }
  return [...config.pools]
    .filter(([, pool]) => pool.storage.has(member.storeid))
    .map(([poolid]) => poolid);
}

/**
 * poolsWithMember() from an index built once: for many look-ups (a permission
 * tree) on a configuration that does not change meanwhile.
 */
export function indexPoolMembers(config: UserConfig): PoolMembership {
  const vms = new Map<number, string>();
  const storages = new Map<string, string[]>();
  for (const [poolid, pool] of config.pools) {
    for (const vmid of pool.vms) if (!vms.has(vmid)) vms.set(vmid, poolid);
    for (const storeid of pool.storage)
      storages.set(storeid, [...(storages.get(storeid) ?? []), poolid]);
  }
  return (path) => {
    const member = memberAt(path);
    if (member === null) return [];
    if ('vmid' in member) {
      const poolid = vms.get(member.vmid);
      return poolid === undefined ? [] : [poolid];
    }
    return storages.get(member.storeid) ?? [];
  };
}

/** Every '/vms/ID' and '/storage/ID' path that some pool has as a member, sorted. */
export function poolMemberPaths(config: UserConfig): string[] {
  const paths = new Set<string>();
  for (const pool of config.pools.values()) {
    for (const vmid of pool.vms) paths.add(`/vms/${vmid}`);
    for (const storeid of pool.storage) paths.add(`/storage/${storeid}`);
  }
  return [...paths].sort();
}

function newPoolEntry(comment = ''): PoolEntry {
  return { comment, vms: new Set(), storage: new Set() };
}

/** The pool, created with its missing parents (reading only). */
function poolEntryOf(config: UserConfig, poolid: string): PoolEntry {
  for (let id: string | null = poolid; id !== null; id = parentPool(id)) {
    if (!config.pools.has(id)) config.pools.set(id, newPoolEntry());
  }
  return config.pools.get(poolid) as PoolEntry;
}

/**
 * While a file is read, VM id -> pool, so that finding a duplicate VM costs
 * one look-up, not a scan of every pool. Only parsePoolLine() adds VMs to a
 * configuration being read, so the index stays exact; it is built from the
 * pools on first use and dies with the configuration.
 */
const vmOwnersWhileReading = new WeakMap<UserConfig, Map<number, string>>();

function vmOwners(config: UserConfig): Map<number, string> {
  let owners = vmOwnersWhileReading.get(config);
  if (!owners) {
    owners = new Map();
    for (const [poolid, pool] of config.pools) {
      for (const vmid of pool.vms) if (!owners.has(vmid)) owners.set(vmid, poolid);
    }
    vmOwnersWhileReading.set(config, owners);
  }
  return owners;
}

/** What the pool parser needs of a line, from parse.ts. */
export interface PoolLineContext {
  readonly config: UserConfig;
  readonly fields: readonly string[];
  /**
   * The items of the list field at `index`, without a last item that a line
   * cut short may have cut (a prefix of an id can name another VM or storage).
   */
  listAt(index: number): string[];
  /** Warns when the line was cut short. */
  warnIfCut(): void;
  warn(detail: string): void;
}

/**
 * One `pool:` line, read as PVE reads it: an invalid id skips the line; an
 * invalid or already pooled VM id and an invalid storage id skip that member;
 * a second line for the same pool adds to it. Returns why the whole line was
 * skipped, or undefined.
 */
export function parsePoolLine(context: PoolLineContext): string | undefined {
  const { config, fields } = context;
  const poolid = fields[1] ?? '';
  if (!isPoolId(poolid)) return `ignoring pool ${quote(poolid)}: invalid pool id`;
  context.warnIfCut();
  const pool = poolEntryOf(config, poolid);
  const owners = vmOwners(config);
  const comment = decodeText(fields[2] ?? '');
  if (comment !== '') pool.comment = comment;
  for (const text of context.listAt(3)) {
    const vmid = /^\d+$/.test(text) ? Number(text) : Number.NaN;
    const member = () => `${quote(text)} of pool ${quote(poolid)}`;
    if (!Number.isSafeInteger(vmid)) {
      context.warn(`ignoring invalid vm id ${member()}`);
      continue;
    }
    const owner = owners.get(vmid);
    if (owner !== undefined) {
      context.warn(`ignoring vm id ${member()}: already in pool ${quote(owner)}`);
      continue;
    }
    owners.set(vmid, poolid);
    pool.vms.add(vmid);
  }
  for (const storeid of context.listAt(4)) {
    if (isStorageId(storeid)) pool.storage.add(storeid);
    else context.warn(`ignoring invalid storage id ${quote(storeid)} of pool ${quote(poolid)}`);
  }
  return undefined;
}

function ensureWritable(ok: boolean, what: string, value: string): void {
  if (!ok) throw new ConfigError('invalid', `cannot write ${what} ${quote(value)}`);
}

/**
 * The pool lines, sorted by id (so parents come first). VM ids are sorted as
 * numbers, storage ids as text; both comma separated, as PVE writes them.
 */
export function poolLines(config: UserConfig): string[] {
  return [...config.pools.keys()].sort().map((poolid) => {
    ensureWritable(isPoolId(poolid), 'pool id', poolid);
    const pool = config.pools.get(poolid) as PoolEntry;
    const vms = [...pool.vms].sort((a, b) => a - b);
    for (const vmid of vms) {
      ensureWritable(Number.isSafeInteger(vmid) && vmid >= 0, 'vm id', String(vmid));
    }
    const storage = [...pool.storage].sort();
    for (const storeid of storage) ensureWritable(isStorageId(storeid), 'storage id', storeid);
    return `pool:${poolid}:${encodeText(pool.comment)}:${vms.join(',')}:${storage.join(',')}:`;
  });
}

/** The pool, or ConfigError 'not-found'. */
export function getPool(config: UserConfig, poolid: string): PoolEntry {
  const pool = typeof poolid === 'string' ? config.pools.get(poolid) : undefined;
  if (!pool) throw new ConfigError('not-found', `no such pool ${quote(String(poolid))}`);
  return pool;
}

function checkComment(poolid: string, comment: unknown): string | undefined {
  if (comment === undefined) return undefined;
  if (typeof comment !== 'string' || !isWellFormedText(comment)) {
    throw new ConfigError('invalid', `comment of pool ${quote(poolid)} must be well-formed text`);
  }
  return comment;
}

/**
 * Creates an empty pool, as PVE's POST /pools: a valid id whose last level
 * starts with a letter, not taken, and whose parent exists.
 */
export function addPool(
  config: UserConfig,
  poolid: string,
  fields: { comment?: string } = {},
): PoolEntry {
  if (!isPoolId(poolid))
    throw new ConfigError('invalid', `invalid pool id ${quote(String(poolid))}`);
  const comment = checkComment(poolid, fields.comment) ?? '';
  if (config.pools.has(poolid)) throw new ConfigError('exists', `pool ${quote(poolid)} exists`);
  const parent = parentPool(poolid);
  if (parent !== null && !config.pools.has(parent)) {
    throw new ConfigError(
      'not-found',
      `parent ${quote(parent)} of pool ${quote(poolid)} does not exist`,
    );
  }
  if (!/^[A-Za-z]/.test(poolid.slice(poolid.lastIndexOf('/') + 1))) {
    throw new ConfigError('invalid', `pool name ${quote(poolid)} must start with a letter`);
  }
  const pool = newPoolEntry(comment);
  config.pools.set(poolid, pool);
  return pool;
}

/** A change of a pool: its comment, members added, or with `delete` removed. */
export interface PoolChanges {
  comment?: string;
  /** VM ids to add (or with `delete` to remove). */
  vms?: Iterable<number>;
  /** Storage ids to add (or with `delete` to remove). */
  storage?: Iterable<string>;
  /** Remove the given members instead of adding them. */
  delete?: boolean;
  /** Move a VM that is in another pool instead of refusing it. */
  allowMove?: boolean;
}

function checkVmid(vmid: unknown): number {
  if (typeof vmid !== 'number' || !Number.isInteger(vmid) || vmid < MIN_VMID || vmid > MAX_VMID) {
    throw new ConfigError('invalid', `invalid vm id ${quote(String(vmid))}`);
  }
  return vmid;
}

function checkStorageId(storeid: unknown): string {
  if (typeof storeid !== 'string' || !isStorageId(storeid)) {
    throw new ConfigError('invalid', `invalid storage id ${quote(String(storeid))}`);
  }
  return storeid;
}

/**
 * Changes a pool as PVE's PUT /pools does; every check runs before anything
 * changes. Who may add or remove a member (Permissions.Modify on it, and
 * Pool.Allocate on the pool a VM moves from) is the caller's check.
 */
export function updatePool(config: UserConfig, poolid: string, changes: PoolChanges): PoolEntry {
  const pool = getPool(config, poolid);
  const comment = checkComment(poolid, changes.comment);
  const vms = [...(changes.vms ?? [])].map(checkVmid);
  const storage = [...(changes.storage ?? [])].map(checkStorageId);
  const moves: Array<[number, PoolEntry]> = [];
  for (const vmid of vms) {
    const owner = poolOfVm(config, vmid);
    if (changes.delete === true) {
      if (owner !== poolid) throw new ConfigError('invalid', `VM ${vmid} is not a pool member`);
    } else if (owner === poolid) {
      throw new ConfigError('exists', `VM ${vmid} is already a pool member`);
    } else if (owner !== null) {
      if (!changes.allowMove) {
        throw new ConfigError(
          'exists',
          `VM ${vmid} belongs already to pool ${quote(owner)} and 'allow-move' is not set`,
        );
      }
      moves.push([vmid, getPool(config, owner)]);
    }
  }
  const removing = changes.delete === true;
  for (const storeid of storage) {
    if (removing !== pool.storage.has(storeid)) {
      throw new ConfigError(
        removing ? 'invalid' : 'exists',
        `storage ${quote(storeid)} is ${removing ? 'not' : 'already'} a pool member`,
      );
    }
  }
  if (comment !== undefined) pool.comment = comment;
  for (const [vmid, from] of moves) from.vms.delete(vmid);
  for (const vmid of vms) removing ? pool.vms.delete(vmid) : pool.vms.add(vmid);
  for (const storeid of storage) {
    removing ? pool.storage.delete(storeid) : pool.storage.add(storeid);
  }
  return pool;
}

/**
 * Removes an empty pool (no child pools, no members) and every ACL entry at
 * its path and below it, so that a pool created later under the same name
 * does not inherit them. PVE also skips members that no longer exist in the
 * cluster; this library does not know the cluster, so members must be removed
 * first.
 */
export function removePool(config: UserConfig, poolid: string): void {
  const pool = getPool(config, poolid);
  const child = childPools(config, poolid)[0];
  if (child !== undefined) {
    throw new ConfigError(
      'invalid',
      `pool ${quote(poolid)} is not empty (contains pool ${quote(child)})`,
    );
  }
  const vmid = [...pool.vms].sort((a, b) => a - b)[0];
  if (vmid !== undefined) {
    throw new ConfigError('invalid', `pool ${quote(poolid)} is not empty (contains VM ${vmid})`);
  }
  const storeid = [...pool.storage].sort()[0];
  if (storeid !== undefined) {
    throw new ConfigError(
      'invalid',
      `pool ${quote(poolid)} is not empty (contains storage ${quote(storeid)})`,
    );
  }
  config.pools.delete(poolid);
  const path = `/pool/${poolid}`;
  for (const candidate of [...config.acl.keys()]) {
    if (candidate === path || candidate.startsWith(`${path}/`)) config.acl.delete(candidate);
  }
}
