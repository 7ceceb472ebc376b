/**
 * Cached user info: this process's parsed user.cfg, rebuilt when the
 * USER_AND_ACL generation moves or, at most once per TTL, when the file's
 * stamp changes (a hand edit, which then bumps the generation for everyone).
 * Saving takes the lock, replaces the file atomically and bumps the generation,
 * so every process sees a new, disabled or changed token on its next request.
 */
import { promises as fsp } from 'node:fs';
import { type AccessControlBackend, DEFAULT_ACCESS_BACKEND } from '../config/access-control.js';
import { parseUserConfig, type UserConfigDialect } from '../config/parse.js';
import type { UserConfig } from '../config/types.js';
import { writeUserConfig } from '../config/write.js';
import { ConfigError } from '../errors.js';
import { Freshness } from '../files/freshness.js';
import { type LockOptions, withFileLock } from '../files/lock.js';
import { publishUnderLock } from '../files/publish.js';
import {
  ABSENT,
  type FileStamp,
  isRacy,
  sameStamp,
  stampOf,
  stampPath,
  wallClockNs,
} from '../files/stamp.js';
import type { GenerationPage } from '../generations/page.js';
import { Slot } from '../generations/slots.js';
import { untrustworthy } from '../trust.js';

/** Where user.cfg is, the page that announces its changes, and how it is checked and written. */
export interface UserConfigStoreOptions {
  path: string;
  page: GenerationPage | null;
  ttlMs?: number;
  /** Group that may read user.cfg (mode 0640 either way). */
  gid?: number;
  lock?: LockOptions;
  dialect?: UserConfigDialect;
  /** initUserConfig runs on every parse (re-adds `root@pam` by default). */
  backend?: AccessControlBackend;
  onWarning?: (message: string) => void;
  /**
   * Warn (once, until it appears) when user.cfg does not exist: every token
   * would be refused without a word, as after a typo in the path. Default
   * true; off for the writers that create it (the manager, tokenctl).
   */
  warnIfMissing?: boolean;
  /**
   * Set when the tokens live in the token database: called on every parse to
   * give each user its tokens (src/store/stored-tokens.ts), and user.cfg is
   * written without token lines.
   */
  attachTokens?: (config: UserConfig) => void;
}

/**
 * What only tests give a UserConfigStore (not part of the package's public
 * face); userConfigStoreForTests takes them.
 */
export interface UserConfigStoreTestOptions {
  /** Monotonic milliseconds, for tests that control time. */
  clock?: () => number;
}

interface Loaded {
  config: UserConfig;
  text: string;
  stamp: FileStamp;
  readAtNs: bigint;
}

/** This process's parsed user.cfg, cached while its generation stands; `mutate` is the only way to change it. */
export class UserConfigStore {
  readonly path: string;
  readonly ttlMs: number;
  #page: GenerationPage | null;
  #gid: number | undefined;
  #lock: LockOptions;
  #dialect: UserConfigDialect;
  #backend: AccessControlBackend;
  #freshness: Freshness;
  #warn: (message: string) => void;
  #loaded: Loaded | null = null;
  #generation: number | null = null;
  /** Which of the page's mappings #generation was read from (GenerationPage.mapping). */
  #mapping = -1;
  #refreshing: Promise<UserConfig> | null = null;
  #reloads = 0;
  #warnIfMissing: boolean;
  #attachTokens: ((config: UserConfig) => void) | undefined;
  #missingWarned = false;

  constructor(options: UserConfigStoreOptions) {
    this.path = options.path;
    this.#page = options.page;
    this.ttlMs = options.ttlMs ?? 60_000;
    this.#gid = options.gid;
    this.#lock = options.lock ?? {};
    this.#dialect = options.dialect ?? 'token-shadow';
    this.#backend = options.backend ?? DEFAULT_ACCESS_BACKEND;
    const testing = options as UserConfigStoreOptions & UserConfigStoreTestOptions;
    this.#freshness = new Freshness(this.ttlMs, testing.clock ?? null);
    this.#warn =
      options.onWarning ?? ((m) => process.emitWarning(m, { code: 'TOKEN_SHADOW_USER_CFG' }));
    this.#warnIfMissing = options.warnIfMissing ?? true;
    this.#attachTokens = options.attachTokens;
  }

  /** How often the file was parsed (tests, stats). */
  get reloads(): number {
    return this.#reloads;
  }

  /**
   * What announces a change of tokens that leaves user.cfg alone: with the
   * tokens in the database (attachTokens), the TOKEN_SHADOW slot; else 0 (a
   * token's change is a change of user.cfg, and of the config object).
   */
  tokensGeneration(): number {
    if (this.#attachTokens === undefined || this.#page === null) return 0;
    return this.#page.load(Slot.TOKEN_SHADOW);
  }

  /** The cached config when it is provably current, else null (then call get()). */
  current(): UserConfig | null {
    const page = this.#page;
    if (page === null || this.#loaded === null) return null;
    if (page.load(Slot.USER_AND_ACL) !== this.#generation || page.mapping !== this.#mapping) {
      return null;
    }
    if (this.#freshness.expired()) return null;
    return this.#loaded.config;
  }

  /** The current config, re-reading the file when the generation or the file moved. */
  async get(): Promise<UserConfig> {
    const cached = this.current();
    if (cached !== null) return cached;
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /**
   * Changes the config under the lock: read fresh, apply `change`, write
   * canonically, bump USER_AND_ACL, adopt. `change` may throw to abort
   * (nothing is written). Returns what `change` returned.
   */
  async mutate<T>(
    change: (config: UserConfig) => T,
    beforePublish?: (result: T, config: UserConfig) => Promise<void>,
  ): Promise<T> {
    const page = this.#page;
    const target = {
      path: this.path,
      page,
      slot: Slot.USER_AND_ACL,
      mode: 0o640,
      gid: this.#gid,
      lock: this.#lock,
    };
    return publishUnderLock(target, async (publish) => {
      const fresh = await this.#read();
      const result = change(fresh.config);
      const text = writeUserConfig(fresh.config, { tokens: this.#attachTokens === undefined });
      // Under the lock, before user.cfg: what goes with the change elsewhere (its tokens, in
      // the database); when it throws, user.cfg is left as it was.
      await beforePublish?.(result, fresh.config);
      if (text === fresh.text) return result;
      const { stamp, writtenAtNs, generation } = await publish(text);
      const loaded = { config: fresh.config, text, stamp, readAtNs: writtenAtNs };
      this.#adopt(loaded, generation, page?.mapping ?? -1);
      return result;
    });
  }

  /** A private copy of the config as the file holds it now, read and parsed afresh. */
  async readFresh(): Promise<UserConfig> {
    return (await this.#read()).config;
  }

  /**
   * Runs `fn` under user.cfg's lock without writing user.cfg (a change of
   * tokens kept in the database): no writer of user.cfg runs meanwhile, so
   * `get()` inside gives the config every other writer left.
   */
  async underLock<T>(fn: () => Promise<T>): Promise<T> {
    return withFileLock(this.path, () => fn(), this.#lock);
  }

  async #refresh(): Promise<UserConfig> {
    const page = this.#livePage();
    const generation = page?.load(Slot.USER_AND_ACL) ?? null;
    const mapping = page?.mapping ?? -1;
    const before = this.#loaded;
    const ttlCheck = generation === this.#generation && this.#freshness.expired();
    const stamp = await stampPath(this.path);
    if (before !== null && sameStamp(stamp, before.stamp) && !isRacy(stamp, before.readAtNs)) {
      this.#adopt(before, generation, mapping);
      return before.config;
    }
    const loaded = await this.#read();
    this.#adopt(loaded, generation, mapping);
    // A TTL check found a change nobody announced: a hand edit. Tell everyone.
    if (ttlCheck && before !== null && loaded.text !== before.text && page && !page.readOnly) {
      page.increment(Slot.USER_AND_ACL);
    }
    return loaded.config;
  }

  /** The page, unless it went bad and no good page is at its path (see GenerationPage.usable). */
  #livePage(): GenerationPage | null {
    const page = this.#page;
    if (page === null) return null;
    if (page.usable(this.#warn)) return page;
    this.#generation = null;
    return null;
  }

  async #read(): Promise<Loaded> {
    const readAtNs = wallClockNs();
    let text = '';
    let stamp: FileStamp = ABSENT;
    try {
      const handle = await fsp.open(this.path, 'r');
      try {
        const st = await handle.stat({ bigint: true });
        const insecure = untrustworthy(st, { groupMayWrite: false });
        if (insecure !== null) {
          throw new ConfigError('insecure', `${this.path}: refusing user.cfg: ${insecure}`);
        }
        stamp = stampOf(st);
        text = await handle.readFile('utf8');
      } finally {
        await handle.close();
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    this.#noteMissing(stamp === ABSENT);
    const { config, warnings } = parseUserConfig(text, {
      dialect: this.#dialect,
      tokensElsewhere: this.#attachTokens !== undefined,
    });
    for (const w of warnings) this.#warn(`${this.path}:${w.line}: ${w.message}`);
    this.#backend.initUserConfig(config);
    this.#attachTokens?.(config);
    this.#reloads++;
    return { config, text, stamp, readAtNs };
  }

  /** Whether user.cfg was missing at the last read (no user but `root@pam`, no token). */
  get missing(): boolean {
    return this.#loaded !== null && this.#loaded.stamp === ABSENT;
  }

  #noteMissing(missing: boolean): void {
    if (!missing) {
      this.#missingWarned = false;
      return;
    }
    if (!this.#warnIfMissing || this.#missingWarned) return;
    this.#missingWarned = true;
    this.#warn(
      `${this.path} does not exist: every token is refused until it does (is the configuration directory right?)`,
    );
  }

  #adopt(loaded: Loaded, generation: number | null, mapping: number): void {
    this.#loaded = loaded;
    this.#generation = generation;
    this.#mapping = mapping;
    this.#freshness.touch();
  }
}

/** A UserConfigStore with the test-only options (src/ only: the package does not export this). */
export function userConfigStoreForTests(
  options: UserConfigStoreOptions & UserConfigStoreTestOptions,
): UserConfigStore {
  return new UserConfigStore(options);
}
