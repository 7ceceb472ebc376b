/**
 * A user's tokens, read from the token database when first looked at: what
 * `UserEntry.tokens` is when the tokens live in `access.db` instead of
 * user.cfg. A process that parses user.cfg then holds its users, groups and
 * ACL, and only the tokens of the users it looked at, never all of them.
 *
 * Each look compares the TOKEN_SHADOW slot with the generation the map was
 * loaded at and reloads on a change (the writer commits before it bumps, so a
 * load after reading the slot sees everything the slot announced). While a
 * change runs (`TokenChangeSession`) every map it looks at is snapshotted at
 * its load, so that the change's effect on the tokens (sets, deletes, edits in
 * place) is found by comparing just those maps.
 */
import type { TokenEntry, UserConfig } from '../config/types.js';
import { entryOf } from './interop.js';
import type { TokenRow } from './token-database.js';

/** Where the maps load from: the current generation, and one user's rows. */
export interface TokenRows {
  /** The TOKEN_SHADOW slot now (null without a page: then every look reloads). */
  generation(): number | null;
  rowsOf(userid: string): TokenRow[];
  /** The users with a token matching (see TokenDatabaseReader.usersWithTokensMatching). */
  usersWithTokensMatching(filter: { glob?: string; createdBefore?: number }): string[];
}

function sameEntry(a: TokenEntry, b: TokenEntry): boolean {
  return (
    a.enable === b.enable &&
    a.expire === b.expire &&
    a.privsep === b.privsep &&
    a.comment === b.comment &&
    (a.allowedIps ?? '') === (b.allowedIps ?? '') &&
    (a.graceUntil ?? 0) === (b.graceUntil ?? 0)
  );
}

/**
 * What a change did to the tokens: entries to store (new or edited), ids
 * removed, and users whose tokens were replaced wholesale (a user created or
 * replaced during the change: its stored tokens not in `put` go).
 */
export interface TokenDiff {
  put: Array<{ id: string; userid: string; entry: TokenEntry }>;
  removed: string[];
  replaced: string[];
}

/** The maps one change looked at, each with its entries as loaded. */
export class TokenChangeSession {
  readonly #seen = new Map<StoredTokens, Map<string, TokenEntry>>();

  has(map: StoredTokens): boolean {
    return this.#seen.has(map);
  }

  /** Called by a map on its first look during the change (after loading). */
  note(map: StoredTokens, loaded: Map<string, TokenEntry>): void {
    if (!this.#seen.has(map)) this.#seen.set(map, loaded);
  }

  /** The diff of every map looked at, and of users whose tokens are a plain Map. */
  diff(config: UserConfig): TokenDiff {
    const put: TokenDiff['put'] = [];
    const removed: string[] = [];
    const replaced: string[] = [];
    for (const [map, before] of this.#seen) {
      const userid = map.userid;
      const current = config.users.get(userid)?.tokens === map ? map.peek() : new Map();
      for (const [name, entry] of current) {
        const old = before.get(name);
        if (old === undefined || !sameEntry(old, entry))
          put.push({ id: `${userid}!${name}`, userid, entry });
      }
      for (const name of before.keys()) {
        if (!current.has(name)) removed.push(`${userid}!${name}`);
      }
    }
    for (const [userid, user] of config.users) {
      if (user.tokens instanceof StoredTokens) continue;
      replaced.push(userid);
      for (const [name, entry] of user.tokens) put.push({ id: `${userid}!${name}`, userid, entry });
    }
    return { put, removed, replaced };
  }

  /** After a change that threw: the maps it looked at reload on their next look. */
  discard(): void {
    for (const map of this.#seen.keys()) map.forget();
    this.#seen.clear();
  }
}

/** The session of the change running now in this process (changes run one at a time). */
let session: TokenChangeSession | null = null;

/** A change run by changeTokens: what it returned, what it did to the tokens, its session. */
export interface TokenChange<T> {
  result: T;
  diff: TokenDiff;
  /** Discard it once the diff is stored (or not): the maps it looked at then read again. */
  session: TokenChangeSession;
}

/**
 * Runs `change` on `config` with every StoredTokens it looks at noted, and
 * finds what it did to them. A change that throws leaves its maps to reload.
 */
export function changeTokens<T>(
  config: UserConfig,
  change: (config: UserConfig) => T,
): TokenChange<T> {
  const running = new TokenChangeSession();
  session = running;
  try {
    const result = change(config);
    return { result, diff: running.diff(config), session: running };
  } catch (error) {
    running.discard();
    throw error;
  } finally {
    session = null;
  }
}

/**
 * `UserEntry.tokens` backed by the database. Every Map method loads first;
 * changes made through it stay in this process's copy until the change that
 * made them is stored (TokenChangeSession.diff -> the storage).
 */
export class StoredTokens extends Map<string, TokenEntry> {
  readonly userid: string;
  readonly #rows: TokenRows;
  #generation: number | null | undefined = undefined;
  #loading = false;

  constructor(userid: string, rows: TokenRows) {
    super();
    this.userid = userid;
    this.#rows = rows;
  }

  /** The entries without loading (the session's diff, after the change looked). */
  peek(): Map<string, TokenEntry> {
    return new Map(super.entries());
  }

  /** Reload on the next look (and hold nothing meanwhile). */
  forget(): void {
    this.#generation = undefined;
    super.clear();
  }

  #load(): void {
    if (this.#loading) return;
    const active = session;
    const generation = this.#rows.generation();
    // Inside a change the map stays as the change left it; outside, it follows the slot.
    const noted = active?.has(this) ?? false;
    const stale =
      this.#generation === undefined || generation === null || generation !== this.#generation;
    if (!noted && stale) {
      this.#loading = true;
      try {
        super.clear();
        for (const row of this.#rows.rowsOf(this.userid)) {
          super.set(row.id.slice(this.userid.length + 1), entryOf(row));
        }
      } finally {
        this.#loading = false;
      }
      this.#generation = generation;
      loadedNow(this.#rows, this, super.size);
    }
    if (active !== null && !noted) active.note(this, this.#copyOfEntries());
  }

  #copyOfEntries(): Map<string, TokenEntry> {
    const copy = new Map<string, TokenEntry>();
    for (const [name, entry] of super.entries()) copy.set(name, { ...entry });
    return copy;
  }

  override get size(): number {
    this.#load();
    return super.size;
  }
  override get(name: string): TokenEntry | undefined {
    this.#load();
    return super.get(name);
  }
  override has(name: string): boolean {
    this.#load();
    return super.has(name);
  }
  override set(name: string, entry: TokenEntry): this {
    this.#load();
    return super.set(name, entry);
  }
  override delete(name: string): boolean {
    this.#load();
    return super.delete(name);
  }
  override clear(): void {
    this.#load();
    super.clear();
  }
  override keys(): MapIterator<string> {
    this.#load();
    return super.keys();
  }
  override values(): MapIterator<TokenEntry> {
    this.#load();
    return super.values();
  }
  override entries(): MapIterator<[string, TokenEntry]> {
    this.#load();
    return super.entries();
  }
  override [Symbol.iterator](): MapIterator<[string, TokenEntry]> {
    return this.entries();
  }
  override forEach(
    callback: (value: TokenEntry, key: string, map: Map<string, TokenEntry>) => void,
    thisArg?: unknown,
  ): void {
    this.#load();
    super.forEach(callback, thisArg);
  }
}

/**
 * How many tokens a process holds at most (whole users' maps): past it, the
 * maps looked at least recently are emptied (they load again when looked at),
 * so a process that looked at every user still does not hold every token.
 */
export const MAX_LOADED_TOKENS = 65_536;

/** The loaded maps of each source with the tokens each held at its load, least recent first. */
const loaded = new WeakMap<TokenRows, { maps: Map<StoredTokens, number>; total: number }>();

function loadedNow(rows: TokenRows, map: StoredTokens, size: number): void {
  let held = loaded.get(rows);
  if (held === undefined) {
    held = { maps: new Map(), total: 0 };
    loaded.set(rows, held);
  }
  held.total -= held.maps.get(map) ?? 0;
  held.maps.delete(map);
  held.maps.set(map, size);
  held.total += size;
  if (held.total <= MAX_LOADED_TOKENS) return;
  for (const [oldest, count] of held.maps) {
    if (held.total <= MAX_LOADED_TOKENS || oldest === map) break;
    // A map the running change looked at stays: its diff is computed from it.
    if (session?.has(oldest)) continue;
    held.maps.delete(oldest);
    held.total -= count;
    oldest.forget();
  }
}

/** The source of each config whose tokens are in the database. */
const sources = new WeakMap<UserConfig, TokenRows>();

/** Gives every user of `config` its StoredTokens (the tokens are in the database, not user.cfg). */
export function attachStoredTokens(config: UserConfig, rows: TokenRows): void {
  for (const [userid, user] of config.users) user.tokens = new StoredTokens(userid, rows);
  sources.set(config, rows);
}

/**
 * Where a look at every token of `config` can be narrowed by a query (its
 * tokens are in the database); null for a config whose tokens are its own.
 */
export function tokenQueryOf(config: UserConfig): TokenRows | null {
  return sources.get(config) ?? null;
}
