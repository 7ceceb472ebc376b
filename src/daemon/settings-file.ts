/**
 * The daemons' optional settings file (`--settings-file`, by default api.json
 * in the configuration directory): the settings a SIGHUP can change without a
 * restart. The API daemon applies them with a rolling restart of its workers;
 * the manager reads only the two it uses, `lastUsedInterval` and
 * `expiryWindow`, which take the durations their options take. Addresses,
 * ports and directories stay on the command line: changing them needs a
 * restart. Options given on the command line win over the file.
 *
 *   { "workers": 4, "ttlMs": 60000, "hashThreads": 1, "hashQueue": 16, "logLevel": "info",
 *     "lastUsedInterval": "10s", "expiryWindow": "14d" }
 */
import { promises as fsp } from 'node:fs';
import { ConfigError, quote } from '../errors.js';
import { SECRET_FORMATS, type SecretFormat } from '../secret-format.js';
import { parseDuration } from '../service/durations.js';

export interface ReloadableSettings {
  workers?: number;
  ttlMs?: number;
  hashThreads?: number;
  hashQueue?: number;
  logLevel?: string;
  /** `lastUsedInterval`, as Settings.lastUsedIntervalMs. */
  lastUsedIntervalMs?: number;
  /** `expiryWindow`, as Settings.expiryWindowSeconds. */
  expiryWindowSeconds?: number;
  /** `secretFormat`: 'scannable' (default) or 'uuid', for the secrets the manager makes. */
  secretFormat?: SecretFormat;
}

/** The keys holding durations, as the options `--last-used-interval` and `--expiry-window` take them. */
const DURATIONS = {
  lastUsedInterval: (ms: number) => ({ lastUsedIntervalMs: ms }),
  expiryWindow: (ms: number) => ({ expiryWindowSeconds: Math.round(ms / 1000) }),
} as const;

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
const COUNTS = ['workers', 'ttlMs', 'hashThreads', 'hashQueue'] as const;

/** The settings in `file`; {} when it does not exist. Throws ConfigError naming the bad key. */
export async function readSettingsFile(file: string): Promise<ReloadableSettings> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError('invalid', `${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError('invalid', `${file} is not JSON: ${(error as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('invalid', `${file} must hold one JSON object`);
  }
  const out: ReloadableSettings = {};
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'secretFormat') {
      if (!(SECRET_FORMATS as readonly unknown[]).includes(value)) {
        throw new ConfigError(
          'invalid',
          `${file}: secretFormat must be one of ${SECRET_FORMATS.join(', ')}`,
        );
      }
      out.secretFormat = value as SecretFormat;
      continue;
    }
    if ((COUNTS as readonly string[]).includes(key)) {
      const minimum = key === 'ttlMs' || key === 'hashQueue' ? 0 : 1;
      if (!Number.isSafeInteger(value) || (value as number) < minimum) {
        throw new ConfigError('invalid', `${file}: ${key} must be an integer >= ${minimum}`);
      }
      out[key as (typeof COUNTS)[number]] = value as number;
    } else if (Object.hasOwn(DURATIONS, key)) {
      let ms: number;
      try {
        if (typeof value !== 'string') throw new RangeError('expected a duration like 10s or 14d');
        ms = parseDuration(value);
      } catch (error) {
        throw new ConfigError('invalid', `${file}: ${key}: ${(error as Error).message}`);
      }
      Object.assign(out, DURATIONS[key as keyof typeof DURATIONS](ms));
    } else if (key === 'logLevel') {
      if (typeof value !== 'string' || !LOG_LEVELS.has(value)) {
        throw new ConfigError('invalid', `${file}: logLevel must be one of ${[...LOG_LEVELS]}`);
      }
      out.logLevel = value;
    } else {
      throw new ConfigError('invalid', `${file}: unknown setting ${quote(key)}`);
    }
  }
  return out;
}
