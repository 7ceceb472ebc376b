/** `tokenctl user ...`: users, with the API's semantics, as root@pam. */
import { type Command, Option } from 'commander';
import { currentEpochSeconds } from '../../config/active.js';
import type { UserFields } from '../../config/users.js';
import { createUser, deleteUser, listUsers, updateUser } from '../../service/operations.js';
import { expireArgument, flagArgument, listArgument, useridArgument } from '../arguments.js';
import type { Cli } from '../context.js';
import { formatExpire } from '../dates.js';
import { yesNo } from '../output.js';

interface UserOptions {
  email?: string;
  firstname?: string;
  lastname?: string;
  comment?: string;
  expire?: number;
  groups?: string[];
  append?: boolean;
  disabled?: boolean;
  /** pveum's `--enable <boolean>`; a bare `--enable` (tokenctl's) is true. */
  enable?: boolean;
  disable?: boolean;
}

interface ListOptions {
  enabled?: boolean;
  full?: boolean;
}

type UserChanges = UserFields & { groups?: string[]; append?: boolean };

function changesOf(options: UserOptions): UserChanges {
  const changes: UserChanges = {};
  if (options.disabled || options.disable) changes.enable = false;
  else if (options.enable !== undefined) changes.enable = options.enable;
  for (const name of ['email', 'firstname', 'lastname', 'comment'] as const) {
    const value = options[name];
    if (value !== undefined) changes[name] = value;
  }
  if (options.expire !== undefined) changes.expire = options.expire;
  if (options.groups !== undefined) changes.groups = options.groups;
  if (options.append) changes.append = true;
  return changes;
}

function withUserFieldOptions(command: Command): Command {
  return command
    .option('--email <address>', 'e-mail address')
    .option('--firstname <text>', 'first name')
    .option('--lastname <text>', 'last name')
    .option('--comment <text>', 'free text')
    .addOption(
      new Option(
        '--expire <date>',
        'YYYY-MM-DD (00:00 UTC), epoch seconds, or 0 for never',
      ).argParser(expireArgument),
    )
    .addOption(new Option('--groups <list>', 'groups, comma separated').argParser(listArgument));
}

/** Registers `user ...` and returns it, so that pveum's `user token` can go below it. */
export function registerUserCommands(program: Command, cli: Cli): Command {
  const user = program.command('user').description('users');

  withUserFieldOptions(
    user
      .command('add')
      .description('create a user')
      .argument('<userid>', 'USER@REALM', useridArgument),
  )
    .addOption(new Option('--disabled', 'create it disabled').conflicts('enable'))
    .addOption(
      new Option('--enable <0|1>', "pveum's form: 0 creates it disabled").argParser(flagArgument),
    )
    .action(
      cli.action(async (ctx, userid: string, options: UserOptions) => {
        ctx.printDone(
          await ctx.write(createUser, { userid, fields: changesOf(options) }),
          `added user ${userid}`,
        );
      }),
    );

  user
    .command('list')
    .description('list users')
    .addOption(
      new Option('--enabled <0|1>', 'only enabled (1) or disabled (0) users').argParser(
        flagArgument,
      ),
    )
    .addOption(
      new Option(
        '--full <0|1>',
        "with each user's tokens (default 1; 0 leaves them out)",
      ).argParser(flagArgument),
    )
    .action(
      cli.action(async (ctx, options: ListOptions) => {
        const full = options.full ?? true;
        const users = await ctx.read(listUsers, {
          full,
          ...(options.enabled === undefined ? {} : { enabled: options.enabled }),
        });
        const now = currentEpochSeconds();
        const tokens = full
          ? [
              {
                header: 'TOKENS',
                cell: (u: (typeof users)[number]) => String(u.tokens?.length ?? 0),
              },
            ]
          : [];
        ctx.printList(users, [
          { header: 'USERID', cell: (u) => u.userid },
          { header: 'ENABLED', cell: (u) => yesNo(u.enable) },
          { header: 'EXPIRE', cell: (u) => formatExpire(u.expire, now) },
          { header: 'NAME', cell: (u) => [u.firstname, u.lastname].filter(Boolean).join(' ') },
          { header: 'EMAIL', cell: (u) => u.email },
          { header: 'GROUPS', cell: (u) => u.groups },
          ...tokens,
          { header: 'COMMENT', cell: (u) => u.comment },
        ]);
      }),
    );

  withUserFieldOptions(
    user
      .command('update')
      .alias('modify')
      .description('change a user')
      .argument('<userid>', 'USER@REALM', useridArgument),
  )
    .addOption(
      new Option(
        '--append [0|1]',
        'add --groups to the current groups instead of replacing them',
      ).argParser(flagArgument),
    )
    .addOption(
      new Option('--enable [0|1]', 'enable the user (pveum: --enable 0 disables it)')
        .argParser(flagArgument)
        .conflicts('disable'),
    )
    .addOption(new Option('--disable', 'disable the user'))
    .action(
      cli.action(async (ctx, userid: string, options: UserOptions) => {
        const changes = changesOf(options);
        if (changes.append && changes.groups === undefined) {
          ctx.usageError('--append needs --groups');
        }
        if (Object.keys(changes).length === 0) ctx.usageError('nothing to change');
        ctx.printDone(await ctx.write(updateUser, { userid, changes }), `updated user ${userid}`);
      }),
    );

  user
    .command('remove')
    .alias('delete')
    .description('remove a user with its tokens, their secrets and its ACL entries')
    .argument('<userid>', 'USER@REALM', useridArgument)
    .action(
      cli.action(async (ctx, userid: string) => {
        ctx.printDone(await ctx.write(deleteUser, { userid }), `removed user ${userid}`);
      }),
    );
  return user;
}
