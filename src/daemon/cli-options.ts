/** The command-line options both daemons share, turned into Settings. */
import { Command } from 'commander';
import { resolveGroupId } from '../service/group.js';
import { resolveSettings, type Settings, type SettingsInput } from '../service/settings.js';

export function daemonCommand(name: string, description: string): Command {
  return new Command(name)
    .description(description)
    .option(
      '--config-dir <dir>',
      'directory of user.cfg and token.shadow',
      process.env.TOKEN_SHADOW_CONFIG_DIR,
    )
    .option(
      '--runtime-dir <dir>',
      'directory of the generation page and the socket',
      process.env.TOKEN_SHADOW_RUNTIME_DIR,
    )
    .option(
      '--group <group>',
      'group sharing the files, the page and the socket with the API daemon',
    )
    .option('--ttl <ms>', 'how long a stat of a file is trusted', (v) => Number(v));
}

export function settingsFrom(
  options: Record<string, unknown>,
  extra: SettingsInput = {},
): Settings {
  const input: SettingsInput = { ...extra };
  if (typeof options.configDir === 'string') input.configDir = options.configDir;
  if (typeof options.runtimeDir === 'string') input.runtimeDir = options.runtimeDir;
  if (typeof options.group === 'string') input.gid = resolveGroupId(options.group);
  if (typeof options.ttl === 'number' && Number.isFinite(options.ttl)) input.ttlMs = options.ttl;
  return resolveSettings(input);
}
