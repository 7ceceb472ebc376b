/**
 * Moving a deployment's tokens from the files into the token database: every
 * token line of user.cfg with its hash from token.shadow becomes a row of
 * `access.db`, then user.cfg is written without token lines and token.shadow
 * goes. From the moment `access.db` exists every process that opens the
 * deployment keeps its tokens there (src/service/deployment.ts); processes
 * that were running read the files until they restart, and since the files
 * lose their tokens, they refuse every token meanwhile (never accept one).
 *
 * Crash-safe by order: the database is built beside (`access.db.new`) and
 * renamed into place complete (a journal of an earlier access.db, removed by
 * hand, goes first); until then the files are untouched. After the
 * rename, a user.cfg still holding token lines is read without them, and a
 * token.shadow left behind is not read at all.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { DEFAULT_ACCESS_BACKEND } from '../config/access-control.js';
import { parseUserConfig } from '../config/parse.js';
import { writeUserConfig } from '../config/write.js';
import { ConfigError } from '../errors.js';
import { fsyncDirectory, writeFileAtomic } from '../files/atomic.js';
import { withFileLock } from '../files/lock.js';
import { publishUnderLock } from '../files/publish.js';
import type { GenerationPage } from '../generations/page.js';
import { Slot } from '../generations/slots.js';
import { readShadow, serializeShadow } from '../shadow/file.js';
import { filesOf, tokenRowsOf } from '../store/interop.js';
import { TokenDatabaseWriter } from '../store/token-database.js';
import type { Settings } from './settings.js';

export interface Migrated {
  tokens: number;
  /** Tokens that had no secret in token.shadow (they authenticate nobody, as before). */
  withoutSecret: number;
}

async function readOrEmpty(file: string): Promise<string> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
}

function exists(file: string): Promise<boolean> {
  return fsp.stat(file).then(
    () => true,
    () => false,
  );
}

/** user.cfg as both moves publish it. */
function userCfgOf(settings: Settings, page: GenerationPage | null) {
  return {
    path: settings.userCfgPath,
    page,
    slot: Slot.USER_AND_ACL,
    mode: 0o640,
    ...(settings.gid === undefined ? {} : { gid: settings.gid }),
  };
}

export async function moveTokensToDatabase(
  settings: Settings,
  page: GenerationPage | null,
  now = Math.floor(Date.now() / 1000),
): Promise<Migrated> {
  const target = settings.tokenDatabasePath;
  const fresh = `${target}.new`;
  const gid = settings.gid === undefined ? {} : { gid: settings.gid };
  // token.shadow's lock outside, user.cfg's inside: no writer of either runs meanwhile.
  return withFileLock(settings.shadowPath, async () => {
    // Under the lock: a migration that ran meanwhile must not be replaced by an empty one.
    if (await exists(target)) {
      throw new ConfigError('exists', `${target} exists: the tokens are there already`);
    }
    const secrets = (await readShadow(settings.shadowPath)).entries;
    const migrated = await publishUnderLock(userCfgOf(settings, page), async (publish) => {
      const text = await readOrEmpty(settings.userCfgPath);
      const { config } = parseUserConfig(text, {});
      DEFAULT_ACCESS_BACKEND.initUserConfig(config);
      // Creation times are unknown for existing tokens: the migration's time stands for them.
      const rows = tokenRowsOf(config, secrets, now);
      for (const suffix of ['', '-journal']) await fsp.rm(`${fresh}${suffix}`, { force: true });
      const writer = new TokenDatabaseWriter(fresh, gid);
      try {
        if (rows.length > 0) writer.put(rows);
      } finally {
        writer.close();
      }
      await fsp.rm(`${fresh}-journal`, { force: true }); // kept by PERSIST, header zeroed
      // A journal of an access.db removed by hand belongs to no database; left there, one that
      // is hot (its commit cut short) would be rolled back into this one at its first open.
      await fsp.rm(`${target}-journal`, { force: true });
      await fsp.rename(fresh, target);
      await fsyncDirectory(path.dirname(target));
      await publish(writeUserConfig(config, { tokens: false }));
      return { tokens: rows.length, withoutSecret: rows.filter((r) => r.hash === '').length };
    });
    if (page !== null && !page.readOnly) page.increment(Slot.TOKEN_SHADOW);
    await fsp.rm(settings.shadowPath, { force: true });
    return migrated;
  });
}

export interface MovedBack {
  tokens: number;
  /** Rows of users user.cfg no longer has (they authenticated nobody): not written. */
  orphans: number;
}

/**
 * The way back: the token database's rows become user.cfg's token lines and
 * token.shadow again, and `access.db` goes. Run with the daemons stopped (or
 * restart them after): processes that had the database open read an emptied
 * one until they restart, so they refuse every token meanwhile, never
 * accepting one a later change on the files revoked.
 *
 * Crash-safe by order: token.shadow and user.cfg are written complete first
 * (neither is read for tokens while `access.db` exists), then the rename of
 * `access.db` aside is the switch; what is left aside is emptied and removed.
 */
export async function moveTokensToFiles(
  settings: Settings,
  page: GenerationPage | null,
): Promise<MovedBack> {
  const target = settings.tokenDatabasePath;
  const aside = `${target}.old`;
  const gid = settings.gid === undefined ? {} : { gid: settings.gid };
  return withFileLock(settings.shadowPath, async () => {
    if (!(await exists(target))) {
      throw new ConfigError('invalid', `${target} does not exist: the tokens are on the files`);
    }
    const moved = await publishUnderLock(userCfgOf(settings, page), async (publish) => {
      const { config } = parseUserConfig(await readOrEmpty(settings.userCfgPath), {
        tokensElsewhere: true,
      });
      DEFAULT_ACCESS_BACKEND.initUserConfig(config);
      const writer = new TokenDatabaseWriter(target, gid);
      let files: ReturnType<typeof filesOf>;
      try {
        files = filesOf(config, writer.rows());
      } finally {
        writer.close();
      }
      await writeFileAtomic(settings.shadowPath, serializeShadow(files.shadow), {
        mode: settings.gid === undefined ? 0o600 : 0o640,
        ...gid,
      });
      await publish(writeUserConfig(files.config));
      await fsp.rename(target, aside);
      await fsyncDirectory(path.dirname(target));
      let tokens = 0;
      for (const user of files.config.users.values()) tokens += user.tokens.size;
      return { tokens, orphans: files.orphans.length };
    });
    // Whoever still has the database open finds it empty: every token refused until it restarts.
    const old = new TokenDatabaseWriter(aside, gid);
    try {
      old.remove([...old.rows()].map((row) => row.id));
    } finally {
      old.close();
    }
    if (page !== null && !page.readOnly) page.increment(Slot.TOKEN_SHADOW);
    for (const suffix of ['', '-journal']) await fsp.rm(`${aside}${suffix}`, { force: true });
    await fsp.rm(`${target}-journal`, { force: true });
    return moved;
  });
}
