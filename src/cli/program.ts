/**
 * The tokenctl command line: global options, then one module per command
 * group. Commander reports usage errors; main() turns them into exit code 2.
 */
import { Command, Option } from 'commander';
import { accessConfigOrDefault } from '../config/access-control.js';
import type { UserConfig } from '../config/types.js';
import { DEFAULT_CONFIG_DIR, DEFAULT_RUNTIME_DIR } from '../service/settings.js';
import { VERSION } from '../version.js';
import { registerAclCommands } from './commands/acl.js';
import { registerAuditCommands } from './commands/audit.js';
import { registerClusterCommands } from './commands/cluster.js';
import { registerDatabaseCommands } from './commands/database.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerGenerationsCommand } from './commands/generations.js';
import { registerGroupCommands } from './commands/group.js';
import { registerImportCommand } from './commands/import-pve.js';
import { registerPermissionsCommand } from './commands/permissions.js';
import { registerPoolCommands } from './commands/pool.js';
import { registerRoleCommands } from './commands/role.js';
import { registerTokenCommands } from './commands/token.js';
import { registerUserCommands } from './commands/user.js';
import { bashCompletion, ID_KINDS, type IdKind } from './completion.js';
import type { Cli } from './context.js';
import { OUTPUT_FORMATS } from './output.js';

/** pveum's one-word commands, as the two words tokenctl has for each. */
export const PVEUM_ALIASES: ReadonlyMap<string, readonly [string, string]> = new Map([
  ['useradd', ['user', 'add']],
  ['usermod', ['user', 'modify']],
  ['userdel', ['user', 'delete']],
  ['groupadd', ['group', 'add']],
  ['groupmod', ['group', 'modify']],
  ['groupdel', ['group', 'delete']],
  ['roleadd', ['role', 'add']],
  ['rolemod', ['role', 'modify']],
  ['roledel', ['role', 'delete']],
  ['aclmod', ['acl', 'modify']],
  ['acldel', ['acl', 'delete']],
]);

/** The global options that take a value (so the word after them is not the command). */
const GLOBALS_WITH_VALUE = new Set([
  '--config-dir',
  '--runtime-dir',
  '--group',
  '--output',
  '--output-format',
]);

/**
 * `argv` with a pveum alias in the command's place (`tokenctl aclmod / ...`)
 * written out as tokenctl's two words; anything else unchanged.
 */
export function expandPveumAlias(argv: readonly string[]): string[] {
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    if (word === '--') break;
    if (word.startsWith('-')) {
      if (GLOBALS_WITH_VALUE.has(word)) i++;
      continue;
    }
    const expanded = PVEUM_ALIASES.get(word);
    return expanded ? [...argv.slice(0, i), ...expanded, ...argv.slice(i + 1)] : [...argv];
  }
  return [...argv];
}

function idsOf(config: UserConfig, kind: IdKind): string[] {
  switch (kind) {
    case 'userid':
      return [...config.users.keys()];
    case 'tokenid':
      return [...config.users].flatMap(([userid, user]) =>
        [...user.tokens.keys()].map((name) => `${userid}!${name}`),
      );
    case 'groupid':
      return [...config.groups.keys()];
    case 'roleid':
      return [...accessConfigOrDefault().roles.keys(), ...config.roles.keys()];
    case 'poolid':
      return [...config.pools.keys()];
  }
}

export function buildProgram(cli: Cli): Command {
  const program = new Command('tokenctl')
    .description(
      'Manage token-shadow users, API tokens, groups, ACLs and pools on this host, as root@pam.',
    )
    .addOption(
      new Option('--config-dir <dir>', 'directory of user.cfg and token.shadow')
        .env('TOKEN_SHADOW_CONFIG_DIR')
        .default(DEFAULT_CONFIG_DIR),
    )
    .addOption(
      new Option('--runtime-dir <dir>', 'directory of the generation page and the manager socket')
        .env('TOKEN_SHADOW_RUNTIME_DIR')
        .default(DEFAULT_RUNTIME_DIR),
    )
    .addOption(
      new Option(
        '--group <group>',
        "group shared with the API daemon (default: the config directory's group unless root)",
      ).env('TOKEN_SHADOW_GROUP'),
    )
    .addOption(
      new Option('--output <format>', 'text (tables) for people, the others for scripts')
        .choices([...OUTPUT_FORMATS, 'table'])
        .default('text'),
    )
    .addOption(
      new Option('--output-format <format>', "the same as --output (pveum's name)")
        .choices([...OUTPUT_FORMATS, 'table'])
        .hideHelp(),
    )
    .option('--noborder', 'text tables without borders')
    .option('--noheader', 'text tables without the header line')
    .version(VERSION, '--version', 'print the version and exit')
    .addHelpText(
      'after',
      `\npveum's aliases work too: ${[...PVEUM_ALIASES]
        .map(([alias, words]) => `${alias} (${words.join(' ')})`)
        .join(', ')}.`,
    )
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => cli.io.stdout(text),
      writeErr: (text) => cli.io.stderr(text),
      outputError: (text, write) => write(`tokenctl: ${text.replace(/^error: /, '')}`),
    });
  registerTokenCommands(program, cli);
  const user = registerUserCommands(program, cli);
  // pveum's places for the same commands: `user token ...` and `user permissions`.
  registerTokenCommands(user, cli);
  registerPermissionsCommand(user, cli);
  registerPermissionsCommand(program, cli);
  registerRoleCommands(program, cli);
  registerGroupCommands(program, cli);
  registerAclCommands(program, cli);
  registerPoolCommands(program, cli);
  registerImportCommand(program, cli);
  registerGenerationsCommand(program, cli);
  registerDoctorCommand(program, cli);
  registerAuditCommands(program, cli);
  registerClusterCommands(program, cli);
  registerDatabaseCommands(program, cli);
  program
    .command('completion')
    .description('print a shell completion script (bash): source <(tokenctl completion bash)')
    .argument('<shell>', 'bash')
    .action((shell: string) => {
      if (shell !== 'bash')
        program.error(`error: no completion for ${shell}; only bash`, { exitCode: 2 });
      cli.io.stdout(bashCompletion(program));
    });
  // For the completion script: the ids of one kind, one per line (hidden from help).
  program
    .command('complete-ids', { hidden: true })
    .argument('<kind>', ID_KINDS.join('|'))
    .action(
      cli.action(async (ctx, kind: string) => {
        if (!(ID_KINDS as readonly string[]).includes(kind)) ctx.usageError(`no id kind ${kind}`);
        const ids = idsOf(await ctx.config(), kind as IdKind);
        if (ids.length > 0) cli.io.stdout(`${ids.join('\n')}\n`);
      }),
    );
  return program;
}
