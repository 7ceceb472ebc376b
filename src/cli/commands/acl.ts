/** `tokenctl acl ...`: ACL entries, with the semantics of PVE's PUT /access/acl, as root@pam. */
import { type Command, Option } from 'commander';
import { readAcl, updateAcl } from '../../service/operations.js';
import { aclPathArgument, flagArgument, listArgument } from '../arguments.js';
import type { Cli } from '../context.js';
import { yesNo } from '../output.js';

interface AclOptions {
  roles: string[];
  users?: string[];
  groups?: string[];
  tokens?: string[];
  /** Undefined unless given: PVE's default is 1. */
  propagate?: boolean;
  delete?: boolean;
}

export function registerAclCommands(program: Command, cli: Cli): void {
  const acl = program.command('acl').description('access control list');

  const change = (name: string, alias: string, description: string, take: boolean) => {
    const command = acl
      .command(name)
      .alias(alias)
      .description(description)
      .argument('<path>', 'ACL path, e.g. / or /vms/100', aclPathArgument)
      .addOption(
        new Option('--roles <list>', 'roles, comma separated')
          .argParser(listArgument)
          .makeOptionMandatory(),
      )
      .addOption(new Option('--users <list>', 'user ids, comma separated').argParser(listArgument))
      .addOption(
        new Option('--groups <list>', 'group ids, comma separated').argParser(listArgument),
      )
      .addOption(
        new Option('--tokens <list>', 'token ids, comma separated').argParser(listArgument),
      )
      // pveum's `--propagate 0|1`, and tokenctl's `--no-propagate` (defined second, so
      // that neither sets a default and an absent flag means PVE's default, 1).
      .addOption(
        new Option('--propagate <0|1>', 'apply below the path too (default 1)').argParser(
          flagArgument,
        ),
      )
      .option('--no-propagate', 'apply at this path only, not below it');
    if (!take) command.option('--delete', 'take the roles away instead of granting them');
    command.action(
      cli.action(async (ctx, path: string, options: AclOptions) => {
        const targets = [options.users, options.groups, options.tokens];
        if (targets.every((list) => list === undefined || list.length === 0)) {
          ctx.usageError('give at least one of --users, --groups, --tokens');
        }
        if (options.roles.length === 0) ctx.usageError('--roles is empty');
        const result = await ctx.write(updateAcl, {
          path,
          roles: options.roles,
          propagate: options.propagate ?? true,
          delete: take || (options.delete ?? false),
          ...(options.users ? { users: options.users } : {}),
          ...(options.groups ? { groups: options.groups } : {}),
          ...(options.tokens ? { tokens: options.tokens } : {}),
        });
        ctx.printDone(result, `updated the ACL at ${path}`);
      }),
    );
  };
  change(
    'set',
    'modify',
    'grant roles at a path to users, groups and tokens (or take them with --delete)',
    false,
  );
  change('delete', 'remove', 'take roles at a path away from users, groups and tokens', true);

  acl
    .command('list')
    .description('list ACL entries')
    .action(
      cli.action(async (ctx) => {
        ctx.printList(await ctx.read(readAcl, {}), [
          { header: 'PATH', cell: (e) => e.path },
          { header: 'TYPE', cell: (e) => e.type },
          { header: 'UGID', cell: (e) => e.ugid },
          { header: 'ROLE', cell: (e) => e.roleid },
          { header: 'PROPAGATE', cell: (e) => yesNo(e.propagate) },
        ]);
      }),
    );
}
