/**
 * `tokenctl database migrate`: moves the tokens from user.cfg's token lines
 * and token.shadow into the token database (access.db), where a change costs
 * what it changes (src/service/token-database-migration.ts). Running daemons
 * must be restarted after it: until then they refuse every token.
 */
import type { Command } from 'commander';
import { moveTokensToDatabase, moveTokensToFiles } from '../../service/token-database-migration.js';
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

async function toFiles(ctx: CliContext): Promise<void> {
  await ctx.writer();
  const deployment = ctx.reader();
  const params = { database: ctx.settings.tokenDatabasePath };
  let moved: Awaited<ReturnType<typeof moveTokensToFiles>>;
  try {
    moved = await moveTokensToFiles(ctx.settings, deployment.page);
  } catch (error) {
    await ctx.recordChange('database.to-files', params, error);
    throw error;
  }
  await ctx.recordChange('database.to-files', params);
  ctx.printRecord({ ...params, ...moved }, [
    ['tokens', String(moved.tokens)],
    ['dropped (no such user)', String(moved.orphans)],
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
  database
    .command('to-files')
    .description('move the tokens back into user.cfg and token.shadow (the way back from migrate)')
    .action(cli.action(async (ctx) => toFiles(ctx)));
}
