/**
 * `tokenctl permissions [USERID|TOKENID] [--path]`: the privileges someone
 * holds, per path, as GET /access/permissions answers them (root@pam's when no
 * id is given, as pveum shows the caller's). `(*)` marks a privilege that
 * propagates below the path, as pveum prints it.
 */
import type { Command } from 'commander';
import { isAuthid } from '../../ids.js';
import { readPermissions } from '../../service/operations.js';
import { aclPathArgument } from '../arguments.js';
import { CLI_CALLER, type Cli, type CliContext } from '../context.js';

interface PermissionRow {
  path: string;
  privileges: string;
}

/** Prints the privileges of `authid` (root@pam's when undefined), per path. */
export async function showPermissions(
  ctx: CliContext,
  authid: string | undefined,
  path: string | undefined,
): Promise<void> {
  if (authid !== undefined && !isAuthid(authid)) {
    ctx.usageError(`expected USER@REALM or USER@REALM!NAME, not ${JSON.stringify(authid)}`);
  }
  const tree = await ctx.read(readPermissions, {
    userid: authid ?? CLI_CALLER.authid,
    ...(path === undefined ? {} : { path }),
  });
  const rows: PermissionRow[] = Object.entries(tree)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([at, privileges]) => ({
      path: at,
      privileges: Object.entries(privileges)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, propagate]) => (propagate ? `${name} (*)` : name))
        .join(', '),
    }));
  // Scripts get the API's answer: path -> privilege -> 1 when it propagates.
  ctx.printList(
    rows,
    [
      { header: 'PATH', cell: (r) => r.path },
      { header: 'PRIVILEGES', cell: (r) => r.privileges },
    ],
    tree,
  );
}

/** Adds `permissions` to `parent` (tokenctl's top level, and pveum's `user`). */
export function registerPermissionsCommand(parent: Command, cli: Cli): void {
  parent
    .command('permissions')
    .description('the privileges a user or token holds, per path (root@pam without an id)')
    .argument('[id]', 'USER@REALM or USER@REALM!NAME')
    .option('--path <path>', 'only this path', aclPathArgument)
    .action(
      cli.action(async (ctx, authid: string | undefined, options: { path?: string }) =>
        showPermissions(ctx, authid, options.path),
      ),
    );
}
