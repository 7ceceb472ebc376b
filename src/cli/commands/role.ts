/** `tokenctl role ...`: roles, as pveum's `role` commands, as root@pam. */
import { type Command, Option } from 'commander';
import { createRole, deleteRole, listRoles, updateRole } from '../../service/operations.js';
import { flagArgument, listArgument } from '../arguments.js';
import type { Cli } from '../context.js';
import { yesNo } from '../output.js';

const privsOption = () =>
  new Option('--privs <list>', 'privileges, comma separated').argParser(listArgument);

export function registerRoleCommands(program: Command, cli: Cli): void {
  const role = program.command('role').description('roles (built-in ones cannot be changed)');

  role
    .command('list')
    .description('list roles and their privileges')
    .action(
      cli.action(async (ctx) => {
        ctx.printList(await ctx.read(listRoles, {}), [
          { header: 'ROLEID', cell: (r) => r.roleid },
          { header: 'BUILTIN', cell: (r) => yesNo(r.special === 1) },
          { header: 'PRIVS', cell: (r) => r.privs },
        ]);
      }),
    );

  role
    .command('add')
    .description('create a custom role')
    .argument('<roleid>', 'role name (not starting with PVE)')
    .addOption(privsOption())
    .action(
      cli.action(async (ctx, roleid: string, options: { privs?: string[] }) => {
        ctx.printDone(
          await ctx.write(createRole, { roleid, privs: options.privs ?? [] }),
          `added role ${roleid}`,
        );
      }),
    );

  role
    .command('modify')
    .description("replace a custom role's privileges (or add to them with --append 1)")
    .argument('<roleid>', 'role name')
    .addOption(privsOption().makeOptionMandatory())
    .addOption(
      new Option('--append <0|1>', 'add --privs instead of replacing').argParser(flagArgument),
    )
    .action(
      cli.action(async (ctx, roleid: string, options: { privs: string[]; append?: boolean }) => {
        ctx.printDone(
          await ctx.write(updateRole, {
            roleid,
            privs: options.privs,
            append: options.append ?? false,
          }),
          `updated role ${roleid}`,
        );
      }),
    );

  role
    .command('delete')
    .alias('remove')
    .description('remove a custom role and the ACL entries granting it')
    .argument('<roleid>', 'role name')
    .action(
      cli.action(async (ctx, roleid: string) => {
        ctx.printDone(await ctx.write(deleteRole, { roleid }), `removed role ${roleid}`);
      }),
    );
}
