/** `tokenctl group ...`: groups, as root@pam. */
import type { Command } from 'commander';
import { createGroup, deleteGroup, listGroups, updateGroup } from '../../service/operations.js';
import { groupidArgument } from '../arguments.js';
import type { Cli } from '../context.js';

export function registerGroupCommands(program: Command, cli: Cli): void {
  const group = program.command('group').description('groups');

  group
    .command('add')
    .description('create a group')
    .argument('<groupid>', 'group name', groupidArgument)
    .option('--comment <text>', 'free text')
    .action(
      cli.action(async (ctx, groupid: string, options: { comment?: string }) => {
        const comment = options.comment === undefined ? {} : { comment: options.comment };
        ctx.printDone(
          await ctx.write(createGroup, { groupid, ...comment }),
          `added group ${groupid}`,
        );
      }),
    );

  group
    .command('list')
    .description('list groups and their members')
    .action(
      cli.action(async (ctx) => {
        ctx.printList(await ctx.read(listGroups, {}), [
          { header: 'GROUPID', cell: (g) => g.groupid },
          { header: 'USERS', cell: (g) => g.users },
          { header: 'COMMENT', cell: (g) => g.comment },
        ]);
      }),
    );

  group
    .command('modify')
    .alias('update')
    .description("change a group's comment")
    .argument('<groupid>', 'group name', groupidArgument)
    .option('--comment <text>', 'free text')
    .action(
      cli.action(async (ctx, groupid: string, options: { comment?: string }) => {
        if (options.comment === undefined) ctx.usageError('nothing to change: give --comment');
        ctx.printDone(
          await ctx.write(updateGroup, { groupid, comment: options.comment }),
          `updated group ${groupid}`,
        );
      }),
    );

  group
    .command('delete')
    .alias('remove')
    .description('remove a group and its ACL entries; its users stay')
    .argument('<groupid>', 'group name', groupidArgument)
    .action(
      cli.action(async (ctx, groupid: string) => {
        ctx.printDone(await ctx.write(deleteGroup, { groupid }), `removed group ${groupid}`);
      }),
    );
}
