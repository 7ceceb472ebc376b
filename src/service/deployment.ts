/**
 * One process's view of a deployment: the generation page (or none), the
 * hashing pool and the two stores, opened the same way by the manager, the API
 * workers and tokenctl so that they all agree on paths and generations.
 */
import { promises as fsp } from 'node:fs';
import { UserConfigStore } from '../access/user-info.js';
import { init, PVE_ACCESS_CONTROL } from '../config/access-control.js';
import { type GenerationPage, openGenerationPageOrNull } from '../generations/page.js';
import { HashPool } from '../hashing/pool.js';
import { TokenShadow } from '../shadow/token-shadow.js';
import type { Settings } from './settings.js';

export type Role = 'manager' | 'worker' | 'cli';

export interface Deployment {
  settings: Settings;
  page: GenerationPage | null;
  pool: HashPool;
  users: UserConfigStore;
  shadow: TokenShadow;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Where warnings go (the page is missing, user.cfg has a bad line...). */
  warn?: (message: string) => void;
}

/** Creates the configuration and runtime directories (the manager's job on first start). */
export async function ensureDirectories(settings: Settings): Promise<void> {
  await fsp.mkdir(settings.configDir, { recursive: true, mode: 0o750 });
  await fsp.mkdir(settings.runtimeDir, { recursive: true, mode: 0o750 });
  if (settings.gid !== undefined) {
    await fsp.chown(settings.configDir, -1, settings.gid);
    await fsp.chown(settings.runtimeDir, -1, settings.gid);
  }
}

export function openDeployment(
  settings: Settings,
  role: Role,
  options: OpenOptions = {},
): Deployment {
  const warn = options.warn ?? ((m: string) => process.emitWarning(m, { code: 'TOKEN_SHADOW' }));
  const page = settings.caching
    ? openGenerationPageOrNull(
        settings.pagePath,
        {
          mkdir: role !== 'worker',
          // The manager owns the page: one cut short or overwritten is recreated at its start.
          repair: role === 'manager',
          onRepair: warn,
          ...(settings.gid === undefined ? {} : { gid: settings.gid }),
        },
        warn,
      )
    : null;
  const pool = new HashPool({ threads: settings.hashThreads, maxQueue: settings.hashQueue });
  init(PVE_ACCESS_CONTROL);
  const gid = settings.gid === undefined ? {} : { gid: settings.gid };
  const users = new UserConfigStore({
    path: settings.userCfgPath,
    page,
    ttlMs: settings.ttlMs,
    onWarning: warn,
    // The manager and tokenctl create it; a worker or an app only reads it.
    warnIfMissing: role === 'worker',
    ...gid,
  });
  const shadow = new TokenShadow({
    path: settings.shadowPath,
    page,
    pool,
    ttlMs: settings.ttlMs,
    onWarning: warn,
    secretFormat: settings.secretFormat,
    ...gid,
  });
  return {
    settings,
    page,
    pool,
    users,
    shadow,
    async close() {
      await pool.close();
      page?.close();
    },
  };
}
