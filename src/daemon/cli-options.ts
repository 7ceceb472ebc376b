/** The command-line options both daemons share, turned into Settings. */
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { parseDuration } from '../service/durations.js';
import { resolveGroupId } from '../service/group.js';
import { resolveSettings, type Settings, type SettingsInput } from '../service/settings.js';
import type { ReloadableSettings } from './settings-file.js';

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
    .option('--ttl <ms>', 'how long a stat of a file is trusted', (v) => Number(v))
    .option(
      '--last-used-interval <duration>',
      'how often workers report token uses to the manager and it writes them (e.g. 10s)',
      duration,
    )
    .option(
      '--expiry-window <duration>',
      'tokens and users expiring within it are logged daily and counted (e.g. 14d)',
      duration,
    )
    .option(
      '--settings-file <file>',
      'JSON file of settings a SIGHUP reloads (default: api.json in the config directory)',
    );
}

function duration(text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

export function settingsFrom(
  options: Record<string, unknown>,
  extra: SettingsInput = {},
): Settings {
  const input: SettingsInput = { ...extra };
  if (typeof options.configDir === 'string') input.configDir = options.configDir;
  if (typeof options.runtimeDir === 'string') input.runtimeDir = options.runtimeDir;
  if (typeof options.group === 'string') input.gid = resolveGroupId(options.group);
  // A number that is not one (`--ttl abc`) is passed on, for resolveSettings to refuse.
  if (typeof options.ttl === 'number') input.ttlMs = options.ttl;
  if (typeof options.lastUsedInterval === 'number') {
    input.lastUsedIntervalMs = options.lastUsedInterval;
  }
  if (typeof options.expiryWindow === 'number') {
    input.expiryWindowSeconds = Math.round(options.expiryWindow / 1000);
  }
  return resolveSettings(input);
}

/** The settings file: `--settings-file`, else api.json in the configuration directory. */
export function settingsFilePath(options: Record<string, unknown>, configDir: string): string {
  return typeof options.settingsFile === 'string'
    ? options.settingsFile
    : path.join(configDir, 'api.json');
}

/** What the settings file gives that the shared options also set (the command line wins later). */
export function fileInput(file: ReloadableSettings): SettingsInput {
  return {
    ...(file.lastUsedIntervalMs === undefined
      ? {}
      : { lastUsedIntervalMs: file.lastUsedIntervalMs }),
    ...(file.expiryWindowSeconds === undefined
      ? {}
      : { expiryWindowSeconds: file.expiryWindowSeconds }),
    ...(file.secretFormat === undefined ? {} : { secretFormat: file.secretFormat }),
  };
}
