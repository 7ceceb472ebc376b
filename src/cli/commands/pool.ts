/** `tokenctl pool ...`: resource pools, as root@pam (read only, like the API). */
import type { Command } from 'commander';
import { listPools } from '../../service/operations.js';
import type { PoolInfo } from '../../service/pools.js';
import type { Cli } from '../context.js';

function vms(pool: PoolInfo): string {
  return (pool.members ?? []).flatMap((m) => ('vmid' in m ? [String(m.vmid)] : [])).join(',');
}

function storages(pool: PoolInfo): string {
  return (pool.members ?? []).flatMap((m) => ('storage' in m ? [m.storage] : [])).join(',');
}

export function registerPoolCommands(program: Command, cli: Cli): void {
  const pool = program.command('pool').description('resource pools (read only)');

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
}
