/**
 * One process's view of a deployment: the generation page (or none), the
 * hashing pool and the two stores, opened the same way by the manager, the API
 * workers and tokenctl so that they all agree on paths and generations.
 */
import { existsSync, promises as fsp, mkdirSync } from 'node:fs';
import { UserConfigStore } from '../access/user-info.js';
import { init, PVE_ACCESS_CONTROL } from '../config/access-control.js';
import type { TokensExpiringBetween } from '../config/expiring.js';
import {
  type GenerationPage,
  openGenerationPageOrNull,
  type WarningSink,
} from '../generations/page.js';
import { claimPageRecord, type PageRecord, readPageRecord } from '../generations/record.js';
import { Slot } from '../generations/slots.js';
import { HashPool } from '../hashing/pool.js';
import type { SecretVerifier } from '../shadow/secret-verifier.js';
import { TokenShadow } from '../shadow/token-shadow.js';
import { DatabaseSecrets } from '../store/database-secrets.js';
import { attachStoredTokens, type TokenRows } from '../store/stored-tokens.js';
import { TokenDatabaseReader } from '../store/token-database.js';
import { TokenStore } from '../store/token-store.js';
import { resolveSettings, type Settings } from './settings.js';

export type Role = 'manager' | 'worker' | 'cli';

export interface Deployment {
  settings: Settings;
  page: GenerationPage | null;
  pool: HashPool;
  users: UserConfigStore;
  /** token.shadow (used while the tokens are in the files). */
  shadow: TokenShadow;
  /** Where secrets are verified: `shadow`, or the token database when it exists. */
  secrets: SecretVerifier;
  /** The token database's writer (manager, tokenctl) when the tokens are there; else null. */
  tokenStore: TokenStore | null;
  /** With the tokens in the database: the tokens expiring soon, without looking at every one. */
  tokensExpiring: TokensExpiringBetween | undefined;
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

/**
 * The page this process must map to see every writer's bumps: the one the
 * configuration directory records, whatever page this process was given
 * (src/generations/record.ts). A process that may write records its own page
 * when there is no record yet. Null, after one warning saying why, when this
 * process cannot know which page its writers bump: then it must not cache.
 */
function recordedPagePath(settings: Settings, role: Role, warn: WarningSink): string | null {
  const where = settings.pageRecordPath;
  let record: PageRecord = readPageRecord(where);
  if (record.kind === 'absent' && role !== 'worker') {
    try {
      record = claimPageRecord(where, settings.givenPagePath, settings.gid);
    } catch (error) {
      const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      warn(
        `generation page unavailable, caching disabled: cannot record this process's page in ${where} (${why}), ` +
          'so a writer given other paths could bump a page this process does not map',
      );
      return null;
    }
  }
  switch (record.kind) {
    case 'absent':
      warn(
        `generation page unavailable, caching disabled: ${where} does not exist (no writer has run on these files), ` +
          'so this process cannot know which page its writers will bump',
      );
      return null;
    case 'invalid':
      warn(
        `generation page unavailable, caching disabled: the record ${where} cannot be trusted (${record.reason})`,
      );
      return null;
    case 'recorded':
      if (record.pagePath !== settings.givenPagePath) {
        warn(
          `generation page: using ${record.pagePath}, which ${where} records for these files, not ${settings.givenPagePath}`,
        );
      }
      return record.pagePath;
  }
}

export function openDeployment(given: Settings, role: Role, options: OpenOptions = {}): Deployment {
  const warn = options.warn ?? ((m: string) => process.emitWarning(m, { code: 'TOKEN_SHADOW' }));
  const pagePath = given.caching ? recordedPagePath(given, role, warn) : null;
  const settings: Settings = pagePath === null ? given : { ...given, pagePath };
  const page =
    pagePath !== null
      ? openGenerationPageOrNull(
          pagePath,
          {
            mkdir: role !== 'worker',
            // The manager owns the page: one cut short or overwritten is recreated at its start.
            repair: role === 'manager',
            onRepair: warn,
            recordPath: settings.pageRecordPath,
            ...(settings.gid === undefined ? {} : { gid: settings.gid }),
          },
          warn,
        )
      : null;
  const pool = new HashPool({ threads: settings.hashThreads, maxQueue: settings.hashQueue });
  init(PVE_ACCESS_CONTROL);
  const gid = settings.gid === undefined ? {} : { gid: settings.gid };
  const database = openTokenDatabase(settings, role, page);
  const users = new UserConfigStore({
    path: settings.userCfgPath,
    page,
    ttlMs: settings.ttlMs,
    onWarning: warn,
    // The manager and tokenctl create it; a worker or an app only reads it.
    warnIfMissing: role === 'worker',
    ...(database === null
      ? {}
      : { attachTokens: (config) => attachStoredTokens(config, database.rows) }),
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
  const secrets =
    database === null
      ? shadow
      : new DatabaseSecrets({ database: database.reader, page, pool, ttlMs: settings.ttlMs });
  return {
    settings,
    page,
    pool,
    users,
    shadow,
    secrets,
    tokenStore: database?.store ?? null,
    tokensExpiring: database?.reader.expiringBetween.bind(database.reader),
    async close() {
      await pool.close();
      database?.close();
      page?.close();
    },
  };
}

/**
 * The token database when it exists (its presence is what puts a deployment's
 * tokens there): a reader for every process, the writer for the manager and
 * tokenctl, and the rows each user's StoredTokens load from.
 */
function openTokenDatabase(
  settings: Settings,
  role: Role,
  page: GenerationPage | null,
): {
  reader: TokenDatabaseReader;
  store: TokenStore | null;
  rows: TokenRows;
  close(): void;
} | null {
  const path = settings.tokenDatabasePath;
  if (!existsSync(path)) return null;
  const store =
    role === 'worker'
      ? null
      : new TokenStore(path, {
          page,
          ...(settings.gid === undefined ? {} : { gid: settings.gid }),
        });
  const reader = new TokenDatabaseReader(path);
  const rows: TokenRows = {
    generation: () => page?.load(Slot.TOKEN_SHADOW) ?? null,
    rowsOf: (userid) => reader.rowsOf(userid),
    usersWithTokensMatching: (filter) => reader.usersWithTokensMatching(filter),
  };
  return {
    reader,
    store,
    rows,
    close() {
      reader.close();
      store?.close();
    },
  };
}

/** What `openTokenShadow` opens: the same stores, page and pool the daemons and tokenctl use. */
export interface TokenShadowDeploymentOptions {
  /** Where user.cfg and token.shadow live (a deployment: /etc/token-shadow). */
  configDir: string;
  /**
   * Where the generation page is created when these files have none yet
   * (default: `$RUNTIME_DIRECTORY`, else /run/token-shadow). Once a page is
   * recorded for the files, every process maps that one, whatever it was given.
   */
  runtimeDir?: string;
  /** Hashing threads (see HashPool; default: the core count). */
  hashThreads?: number;
  /** Hashes that may wait before a verify fails with BusyError (default 16). */
  hashQueue?: number;
  /** How often the files are stat-checked for hand edits, ms (default 60 000). */
  ttlMs?: number;
  /** Group sharing the files and the page with other processes. */
  gid?: number;
  /** Where warnings go (default: process.emitWarning). */
  warn?: WarningSink;
}

/** One process's view of the token files, opened as the daemons and tokenctl open it. */
export interface TokenShadowDeployment {
  /** user.cfg: users, tokens, ACLs. */
  readonly users: UserConfigStore;
  /** token.shadow and the verified-secret cache. */
  readonly shadow: TokenShadow;
  /** The argon2id pool `shadow` hashes on. */
  readonly pool: HashPool;
  /** The shared page, or null (no caching: one warning said why). */
  readonly page: GenerationPage | null;
  /** Closes the pool and unmaps the page. */
  close(): Promise<void>;
}

/**
 * Opens user.cfg, token.shadow, the generation page and a hashing pool for an
 * application, by the same rule as the daemons and tokenctl: the page is the
 * one the configuration directory records, so a revocation by any of them is
 * seen on this process's next request. Without the addon, or when the page
 * cannot be known, `page` is null after one warning (correct, every verify hashes).
 */
export function openTokenShadow(options: TokenShadowDeploymentOptions): TokenShadowDeployment {
  // The first process on new files records its page there, so the directory must exist.
  mkdirSync(options.configDir, { recursive: true, mode: 0o750 });
  const settings = resolveSettings({
    configDir: options.configDir,
    workers: 1,
    ...(options.runtimeDir === undefined ? {} : { runtimeDir: options.runtimeDir }),
    ...(options.hashThreads === undefined ? {} : { hashThreads: options.hashThreads }),
    ...(options.hashQueue === undefined ? {} : { hashQueue: options.hashQueue }),
    ...(options.ttlMs === undefined ? {} : { ttlMs: options.ttlMs }),
    ...(options.gid === undefined ? {} : { gid: options.gid }),
  });
  // Where this process's page goes if it is the first (the page's own directory is made on open).
  if (settings.pageRecord.kind === 'absent') {
    try {
      mkdirSync(settings.runtimeDir, { recursive: true, mode: 0o750 });
    } catch {
      // Then the page cannot be opened either, which warns once and names the path.
    }
  }
  const { users, shadow, pool, page, close } = openDeployment(settings, 'cli', {
    ...(options.warn === undefined ? {} : { warn: options.warn }),
  });
  return { users, shadow, pool, page, close };
}
