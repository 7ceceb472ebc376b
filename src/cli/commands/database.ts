/**
 * `tokenctl database migrate`: moves the tokens from user.cfg's token lines
 * and token.shadow into the token database (access.db), where a change costs
 * what it changes (src/service/token-database-migration.ts). Running daemons
 * must be restarted after it: until then they refuse every token.
 */
import type { Command } from 'commander';
import { moveTokensToDatabase } from '../../service/token-database-migration.js';
import type { Cli, CliContext } from '../context.js';

async function migrate(ctx: CliContext): Promise<void> {
  await ctx.writer(); // the directories, and the page every change must be announced on
  const deployment = ctx.reader();
  const params = { database: ctx.settings.tokenDatabasePath };
  let migrated: Awaited<ReturnType<typeof moveTokensToDatabase>>;
  try {
    migrated = await moveTokensToDatabase(ctx.settings, deployment.page);
  } catch (error) {
    await ctx.recordChange('database.migrate', params, error);
    throw error;
  }
  await ctx.recordChange('database.migrate', params);
  ctx.printRecord({ ...params, ...migrated }, [
    ['database', params.database],
    ['tokens', String(migrated.tokens)],
    ['without a secret', String(migrated.withoutSecret)],
  ]);
  if (ctx.format === 'text') {
    ctx.warn('restart the manager and the API daemon: until then they refuse every token');
  }
}

export function registerDatabaseCommands(program: Command, cli: Cli): void {
  const database = program
    .command('database')
    .description('the token database (access.db), where a change costs what it changes');
  database
    .command('migrate')
    .description('move the tokens from user.cfg and token.shadow into the token database')
    .action(cli.action(async (ctx) => migrate(ctx)));
}
