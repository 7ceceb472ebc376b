/**
 * `tokenctl import-pve <file>`: moving from Proxmox VE; `tokenctl export-pve
 * [file]`: back again (user.cfg in PVE's dialect, what it cannot hold said). Its user.cfg is read in
 * PVE's dialect and written in ours through the store, so the generation moves
 * and every running process sees the new configuration at once.
 *
 * PVE keeps token secrets elsewhere (/etc/pve/priv/token.cfg), so imported
 * tokens have none here until rotated. Secrets already in token.shadow belong
 * to tokens being replaced and are removed first: an imported token must never
 * accept the secret of an earlier token that happened to have the same id.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { SUPERUSER } from '../../config/access-control.js';
import { exportPveUserConfig } from '../../config/export.js';
import { importPveUserConfig } from '../../config/import.js';
import type { UserConfig } from '../../config/types.js';
import { ConfigError, quote } from '../../errors.js';
import { readShadow } from '../../shadow/file.js';
import type { Cli, CliContext } from '../context.js';
import { printable } from '../output.js';

/** For a command line the administrator may paste: a user name may contain a quote. */
function shellQuote(value: string): string {
  return `'${printable(value).replace(/'/g, "'\\''")}'`;
}

/** Anything besides a bare root@pam (which every read adds) counts as an existing configuration. */
function hasContent(config: UserConfig): boolean {
  const others = [...config.users.keys()].some((userid) => userid !== SUPERUSER);
  const rootTokens = (config.users.get(SUPERUSER)?.tokens.size ?? 0) > 0;
  return (
    others ||
    rootTokens ||
    config.groups.size > 0 ||
    config.roles.size > 0 ||
    config.acl.size > 0 ||
    config.pools.size > 0
  );
}

function refuseUnlessForced(config: UserConfig, force: boolean, path: string): void {
  if (force || !hasContent(config)) return;
  throw new ConfigError(
    'exists',
    `${path} already has users, tokens, groups, pools, roles or ACL entries besides root@pam; ` +
      'give --force to replace them (their token secrets are removed too)',
  );
}

function replaceContent(target: UserConfig, source: UserConfig): void {
  target.users = source.users;
  target.groups = source.groups;
  target.roles = source.roles;
  target.acl = source.acl;
  target.pools = source.pools;
}

async function importPve(ctx: CliContext, file: string, force: boolean): Promise<void> {
  const imported = importPveUserConfig(await readFile(file, 'utf8'));
  const warnings = imported.warnings.map((w) => `${file}: ${w.message}`);
  for (const warning of warnings) ctx.warn(warning);

  await ctx.writer();
  const userCfg = ctx.settings.userCfgPath;
  refuseUnlessForced(await ctx.config(), force, userCfg);
  const replaced = [...(await readShadow(ctx.settings.shadowPath)).entries.keys()];
  const config = imported.config;
  const tokenids = [...config.users].flatMap(([userid, user]) =>
    [...user.tokens.keys()].map((name) => `${userid}!${name}`),
  );
  const record = {
    file: path.resolve(file),
    users: config.users.size,
    tokens: tokenids.length,
    'removed-secrets': replaced.length,
  };
  // In multi-host mode each transaction below carries this record into the cluster's trail.
  const stores = await ctx.recordingWriter('config.import', record);
  // user.cfg first, decided under its lock: a refused import changes nothing. Then the secrets
  // of the tokens it replaced, which no longer exist in user.cfg and so are accepted by nobody.
  await stores.mutateConfig((current) => {
    refuseUnlessForced(current, force, userCfg);
    replaceContent(current, imported.config);
  });
  for (const tokenid of replaced) await stores.deleteSecret(tokenid);
  await ctx.recordChange('config.import', record);
  const summary = {
    users: config.users.size,
    tokens: tokenids.length,
    groups: config.groups.size,
    pools: config.pools.size,
    roles: config.roles.size,
    acl: config.acl.size,
    warnings,
    'removed-secrets': replaced.length,
    'tokens-without-secret': tokenids,
  };
  ctx.printDone(
    summary,
    `imported ${summary.users} users, ${summary.tokens} tokens, ${summary.groups} groups, ` +
      `${summary.pools} pools, ${summary.roles} roles and ACLs at ${summary.acl} paths from ${quote(file, 200)}` +
      (replaced.length > 0 ? `; removed ${replaced.length} secrets of replaced tokens` : ''),
  );
  if (ctx.format === 'text' && tokenids.length > 0) {
    ctx.cli.io.stderr(
      `PVE keeps token secrets elsewhere: give each imported token a new one with\n${tokenids
        .map((id) => `  tokenctl token rotate ${shellQuote(id)}\n`)
        .join('')}`,
    );
  }
}

/**
 * Writes the configuration as Proxmox VE's user.cfg: to `file` (created 0600,
 * never over an existing one) or standard output. Token secrets stay here:
 * PVE keeps them in a form of its own.
 */
async function exportPve(ctx: CliContext, file: string | undefined): Promise<void> {
  const exported = exportPveUserConfig(await ctx.config());
  for (const warning of exported.warnings) ctx.warn(`${file ?? 'user.cfg'}: ${warning.message}`);
  if (file === undefined || file === '-') {
    ctx.cli.io.stdout(exported.text);
    return;
  }
  await writeFile(file, exported.text, { mode: 0o600, flag: 'wx' });
  ctx.printDone(
    { file: path.resolve(file), warnings: exported.warnings.map((w) => w.message) },
    `wrote ${quote(file, 200)} for Proxmox VE` +
      (exported.warnings.length > 0 ? ` (${exported.warnings.length} warnings)` : ''),
  );
}

export function registerImportCommand(program: Command, cli: Cli): void {
  program
    .command('export-pve')
    .description(
      "write the configuration as Proxmox VE's user.cfg (no secrets; what PVE cannot hold is said)",
    )
    .argument('[file]', 'a new file (default: standard output)')
    .action(cli.action(async (ctx, file: string | undefined) => exportPve(ctx, file)));
  program
    .command('import-pve')
    .description('import a Proxmox VE user.cfg (users, tokens, groups, pools, roles, ACLs)')
    .argument('<file>', 'e.g. a copy of /etc/pve/user.cfg')
    .option('--force', 'replace a configuration that has more than root@pam')
    .action(
      cli.action(async (ctx, file: string, options: { force?: boolean }) =>
        importPve(ctx, file, options.force ?? false),
      ),
    );
}
