/** Pools: PVE's /pools. Pool.Audit to see a pool, Pool.Allocate to change it (and PVE's member rules). */
import type { PoolChanges } from '../../config/pools.js';
import * as poolConfig from '../../config/pools.js';
import type { UserConfig } from '../../config/types.js';
import {
  defined,
  flagOf,
  integerList,
  list,
  optionalText,
  type ParameterSchema,
  type Raw,
  schema,
  splitList,
  text,
} from '../params.js';
import { POOL_AUDIT, type PoolInfo, poolPath, poolWithMembers, visiblePools } from '../pools.js';
import { type Caller, requirePrivileges } from '../rules.js';
import { idAndComment, read, write } from './operation.js';

const poolIdSchema = {
  type: 'string',
  pattern: poolConfig.POOL_ID_PATTERN,
  maxLength: 1000,
} as const;

interface PoolListParams {
  poolid?: string;
  /** Every listed pool with its members (tokenctl); not an API parameter. */
  members?: boolean;
}

export const listPools = read<PoolListParams, PoolInfo[]>({
  name: 'pool.list',
  summary: 'the pools with Pool.Audit, or one pool with its members',
  parameters: {
    type: 'object',
    properties: { poolid: poolIdSchema },
  },
  fromApi: (input) => defined({ poolid: input.poolid as string | undefined }),
  parse: (raw) =>
    defined({ poolid: optionalText(raw, 'poolid'), members: raw.members === true || undefined }),
  authorize: (caller, params, config) => {
    if (params.poolid !== undefined) {
      requirePrivileges(config, caller, poolPath(params.poolid), POOL_AUDIT);
    }
  },
  run: (config, caller, params) =>
    params.poolid === undefined
      ? visiblePools(config, caller, params.members ?? false)
      : [poolWithMembers(config, params.poolid)],
});

const vmidListSchema = { type: 'string', pattern: '^[0-9,;\\s]*$', maxLength: 65536 } as const;

interface PoolParams {
  poolid: string;
}

const poolParameters: ParameterSchema = {
  type: 'object',
  required: ['poolid'],
  properties: { poolid: poolIdSchema },
};

const requirePoolAllocate = (caller: Caller, params: PoolParams, config: UserConfig) =>
  requirePrivileges(config, caller, poolPath(params.poolid), ['Pool.Allocate']);

export const createPool = write({
  name: 'pool.create',
  summary: 'a new, empty pool (a nested one under an existing parent)',
  parameters: {
    type: 'object',
    required: ['poolid'],
    properties: { poolid: poolIdSchema, comment: schema.text },
  },
  ...idAndComment('poolid'),
  authorize: requirePoolAllocate,
  async run(writer, params) {
    await writer.change((config) => {
      poolConfig.addPool(config, params.poolid, defined({ comment: params.comment }));
    });
    return null;
  },
});

type PoolUpdateParams = PoolParams &
  Omit<PoolChanges, 'vms' | 'storage'> & {
    vms?: number[];
    storage?: string[];
  };

/**
 * PVE's rule for PUT /pools: Pool.Allocate on the pool; for every member added
 * or removed, what check_perm_modify asks (Permissions.Modify, or VM.Allocate
 * on a VM, Datastore.Allocate on a storage); Pool.Allocate on the pool a VM
 * is moved out of.
 */
function authorizePoolUpdate(caller: Caller, params: PoolUpdateParams, config: UserConfig): void {
  requirePoolAllocate(caller, params, config);
  for (const vmid of params.vms ?? []) {
    requirePrivileges(config, caller, `/vms/${vmid}`, ['Permissions.Modify', 'VM.Allocate'], true);
    const owner = params.delete ? null : poolConfig.poolOfVm(config, vmid);
    if (owner !== null && owner !== params.poolid && params.allowMove) {
      requirePrivileges(config, caller, poolPath(owner), ['Pool.Allocate']);
    }
  }
  for (const storeid of params.storage ?? []) {
    const privileges = ['Permissions.Modify', 'Datastore.Allocate'];
    requirePrivileges(config, caller, `/storage/${storeid}`, privileges, true);
  }
}

export const updatePool = write({
  name: 'pool.update',
  summary: "a pool's comment, or (with delete, without) its VMs and storages",
  parameters: {
    type: 'object',
    required: ['poolid'],
    properties: {
      poolid: poolIdSchema,
      comment: schema.text,
      vms: vmidListSchema,
      storage: schema.list,
      'allow-move': schema.flag,
      delete: schema.flag,
    },
  },
  fromApi: (input: Raw): PoolUpdateParams => ({
    poolid: input.poolid as string,
    ...defined({
      comment: input.comment as string | undefined,
      vms: splitList(input.vms)?.map(Number),
      storage: splitList(input.storage),
      allowMove: flagOf(input['allow-move']),
      delete: flagOf(input.delete),
    }),
  }),
  parse: (raw: Raw): PoolUpdateParams => ({
    poolid: text(raw, 'poolid'),
    ...defined({
      comment: optionalText(raw, 'comment'),
      vms: raw.vms === undefined ? undefined : integerList(raw, 'vms'),
      storage: raw.storage === undefined ? undefined : list(raw, 'storage'),
      allowMove: raw.allowMove === true || undefined,
      delete: raw.delete === true || undefined,
    }),
  }),
  authorize: authorizePoolUpdate,
  async run(writer, params) {
    const { poolid, ...changes } = params;
    await writer.change((config) => {
      poolConfig.updatePool(config, poolid, changes);
    });
    return null;
  },
});

export const deletePool = write({
  name: 'pool.delete',
  summary: 'an empty pool, with the ACL entries on it',
  parameters: poolParameters,
  fromApi: (input: Raw): PoolParams => ({ poolid: input.poolid as string }),
  parse: (raw: Raw): PoolParams => ({ poolid: text(raw, 'poolid') }),
  authorize: requirePoolAllocate,
  async run(writer, params) {
    await writer.change((config) => poolConfig.removePool(config, params.poolid));
    return null;
  },
});
