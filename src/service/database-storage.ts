/**
 * The storage of a deployment whose tokens live in the token database
 * (`access.db`, src/store): user.cfg keeps users, groups, roles, pools and the
 * ACL, without token lines; each user's tokens are read from the database
 * when looked at (StoredTokens). A change of tokens alone (create, edit,
 * regenerate, delete, bulk revoke) never parses or writes user.cfg: under
 * user.cfg's lock (so no writer of users runs meanwhile) it runs on this
 * process's config, and what it did to the tokens it looked at is one durable
 * transaction, then one bump of TOKEN_SHADOW. Its cost is what it changes.
 */
import type { UserConfigStore } from '../access/user-info.js';
import type { UserConfig } from '../config/types.js';
import type { HashPool } from '../hashing/pool.js';
import { parseTokenid } from '../ids.js';
import { newSecret, type SecretFormat } from '../secret-format.js';
import { changeTokens, type TokenChange, type TokenDiff } from '../store/stored-tokens.js';
import type { TokenStore } from '../store/token-store.js';
import type { AccessStorage, ConfigChangeOptions } from './storage.js';

export interface DatabaseStorageOptions {
  users: UserConfigStore;
  store: TokenStore;
  pool: HashPool;
  secretFormat: SecretFormat;
  /** Epoch seconds now (a new token's creation time). */
  now?: () => number;
}

export class DatabaseStorage implements AccessStorage {
  readonly users: UserConfigStore;
  readonly store: TokenStore;
  readonly #pool: HashPool;
  readonly #secretFormat: SecretFormat;
  readonly #now: () => number;
  /** Hashes of secrets made for tokens not stored yet, by token id (see newSecret). */
  readonly #pending = new Map<string, string>();

  constructor(options: DatabaseStorageOptions) {
    this.users = options.users;
    this.store = options.store;
    this.#pool = options.pool;
    this.#secretFormat = options.secretFormat;
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000));
  }

  readConfig(): Promise<UserConfig> {
    return this.users.get();
  }

  /**
   * A change of anything: user.cfg is read fresh and changed; under its lock,
   * what the change did to tokens is stored first, then user.cfg is written
   * (without tokens). That order keeps every moment safe: a deleted user's
   * tokens are gone before the user is, a re-created user's old tokens before
   * it exists again, and new tokens are inert until their user exists; if the
   * database refuses, user.cfg stays as it was. The secrets of removed tokens
   * go with their rows (`options` has no part here).
   */
  async mutateConfig<T>(
    change: (config: UserConfig) => T,
    _options?: ConfigChangeOptions<T>,
  ): Promise<T> {
    let run: TokenChange<T> | null = null;
    let gone: string[] = [];
    try {
      return await this.users.mutate(
        (config) => {
          const before = [...config.users.keys()];
          run = changeTokens(config, change);
          gone = before.filter((userid) => !config.users.has(userid));
          return run.result;
        },
        async () => {
          if (run !== null) await this.#store(run.diff, gone);
        },
      );
    } finally {
      // Whatever was stored or not, the maps the change looked at read the database again.
      (run as TokenChange<T> | null)?.session.discard();
    }
  }

  /**
   * A change of tokens only: no parse, no write of user.cfg, one database
   * transaction. When `options.changesMoreThanTokens` says the change would
   * also change the config (under the lock, on the current config), it runs
   * as mutateConfig instead.
   */
  async mutateTokens<T>(
    change: (config: UserConfig) => T,
    options: ConfigChangeOptions<T> = {},
  ): Promise<T> {
    const fast = await this.users.underLock(async () => {
      const config = await this.users.get();
      if (options.changesMoreThanTokens?.(config) === true) return null;
      const { result, diff, session } = changeTokens(config, change);
      try {
        await this.#store(diff, []);
      } finally {
        session.discard();
      }
      return { result };
    });
    return fast === null ? this.mutateConfig(change, options) : fast.result;
  }

  /**
   * A new secret. For a token not stored yet (a create stores the secret
   * first) the hash waits here and is stored with the token's row, in the
   * same transaction; for a stored one it is stored now.
   */
  async newSecret(tokenid: string, keepPrevious = false): Promise<string> {
    parseTokenid(tokenid);
    const secret = newSecret(tokenid, this.#secretFormat);
    const hash = await this.#pool.hash(secret);
    if (this.store.get(tokenid) === undefined) {
      this.#pending.set(tokenid, hash);
      return secret;
    }
    const { result: found } = await this.store.setSecret(tokenid, hash, keepPrevious);
    if (!found) this.#pending.set(tokenid, hash); // deleted meanwhile: a create may follow
    return secret;
  }

  async deleteSecret(tokenid: string): Promise<boolean> {
    const pending = this.#pending.delete(tokenid);
    const had = (this.store.get(tokenid)?.hash ?? '') !== '';
    if (had) await this.store.setSecret(tokenid, '', false);
    return had || pending;
  }

  async #store(diff: TokenDiff, gone: readonly string[]): Promise<void> {
    const usersGone = [...gone, ...diff.replaced];
    if (diff.put.length === 0 && diff.removed.length === 0 && usersGone.length === 0) return;
    const entries = diff.put.map((put) => {
      const hash = this.#pending.get(put.id);
      return hash === undefined ? put : { ...put, hash };
    });
    await this.store.applyChange({ entries, removed: diff.removed, usersGone }, this.#now());
    for (const { id } of entries) this.#pending.delete(id);
  }
}
