/** `tokenctl pool ...`: resource pools, as root@pam, with PVE's /pools semantics. */
import { type Command, Option } from 'commander';
import { createPool, deletePool, listPools, updatePool } from '../../service/operations.js';
import type { PoolInfo } from '../../service/pools.js';
import { listArgument, poolidArgument, vmidListArgument } from '../arguments.js';
import type { Cli } from '../context.js';

function vms(pool: PoolInfo): string {
  return (pool.members ?? []).flatMap((m) => ('vmid' in m ? [String(m.vmid)] : [])).join(',');
}

function storages(pool: PoolInfo): string {
  return (pool.members ?? []).flatMap((m) => ('storage' in m ? [m.storage] : [])).join(',');
}

interface UpdateOptions {
  comment?: string;
  vms?: number[];
  storage?: string[];
  delete?: boolean;
  allowMove?: boolean;
}

export function registerPoolCommands(program: Command, cli: Cli): void {
  const pool = program.command('pool').description('resource pools');

  pool
    .command('add')
    .description('create an empty pool; a nested one (a/b) needs its parent')
    .argument('<poolid>', 'pool name, up to three levels: a, a/b, a/b/c', poolidArgument)
    .option('--comment <text>', 'free text')
    .action(
      cli.action(async (ctx, poolid: string, options: { comment?: string }) => {
        const comment = options.comment === undefined ? {} : { comment: options.comment };
        ctx.printDone(await ctx.write(createPool, { poolid, ...comment }), `added pool ${poolid}`);
      }),
    );

  pool
    .command('list')
    .description('list pools with their VMs and storages')
    .action(
      cli.action(async (ctx) => {
        ctx.printList(await ctx.read(listPools, { members: true }), [
          { header: 'POOLID', cell: (p) => p.poolid },
          { header: 'VMS', cell: vms },
          { header: 'STORAGE', cell: storages },
          { header: 'COMMENT', cell: (p) => p.comment ?? '' },
        ]);
      }),
    );

  pool
    .command('modify')
    .alias('update')
    .description("change a pool's comment, add VMs and storages (or take them with --delete)")
    .argument('<poolid>', 'pool name', poolidArgument)
    .option('--comment <text>', 'free text')
    .addOption(new Option('--vms <list>', 'VM ids, comma separated').argParser(vmidListArgument))
    .addOption(
      new Option('--storage <list>', 'storage ids, comma separated').argParser(listArgument),
    )
    .addOption(new Option('--delete', 'remove the given VMs and storages').conflicts('allowMove'))
    .option('--allow-move', 'move a VM that is in another pool')
    .action(
      cli.action(async (ctx, poolid: string, options: UpdateOptions) => {
        const { comment, vms: vmids, storage } = options;
        if (comment === undefined && vmids === undefined && storage === undefined) {
          ctx.usageError('nothing to change: give --comment, --vms or --storage');
        }
        const params = {
          poolid,
          ...(comment === undefined ? {} : { comment }),
          ...(vmids === undefined ? {} : { vms: vmids }),
          ...(storage === undefined ? {} : { storage }),
          ...(options.delete ? { delete: true } : {}),
          ...(options.allowMove ? { allowMove: true } : {}),
        };
        ctx.printDone(await ctx.write(updatePool, params), `updated pool ${poolid}`);
      }),
    );

  pool
    .command('delete')
    .alias('remove')
    .description('remove an empty pool and the ACL entries on it')
    .argument('<poolid>', 'pool name', poolidArgument)
    .action(
      cli.action(async (ctx, poolid: string) => {
        ctx.printDone(await ctx.write(deletePool, { poolid }), `removed pool ${poolid}`);
      }),
    );
}
