/**
 * Where the operations keep users, tokens, groups, ACLs and secrets: the
 * seam between what an operation means and how it is stored. Single-host mode
 * uses the files (FileStorage); multi-host mode uses etcd (src/cluster's
 * EtcdStorage, which returns only once every live host applied the change).
 */
import type { UserConfigStore } from '../access/user-info.js';
import type { AuditEvent } from '../audit/trail.js';
import type { UserConfig } from '../config/types.js';
import { secretIdsOf } from '../ids.js';
import type { TokenShadow } from '../shadow/token-shadow.js';

/** What else goes with a config change. */
export interface ConfigChangeOptions<T> {
  /**
   * Token ids whose secrets go with the change (the tokens it removed): in
   * multi-host mode in the same transaction, so that a revoke waits for the
   * hosts once, not twice; in file mode right after, under token.shadow's lock.
   */
  secretsToDelete?: (result: T) => Iterable<string>;
  /**
   * For mutateTokens: whether, on the current config, the change would also
   * change something but tokens (an ACL entry of a token it removes); then it
   * runs as mutateConfig.
   */
  changesMoreThanTokens?: (config: UserConfig) => boolean;
}

export interface AccessStorage {
  /** The current config, fresh enough for a writer to check privileges on. */
  readConfig(): Promise<UserConfig>;
  /** Reads fresh, applies `change` (which may throw to abort), stores the result. */
  mutateConfig<T>(change: (config: UserConfig) => T, options?: ConfigChangeOptions<T>): Promise<T>;
  /**
   * A change of tokens only, where the storage can make it cheaper than
   * mutateConfig (the token database: no user.cfg read or write); absent,
   * mutateConfig is used.
   */
  mutateTokens?<T>(change: (config: UserConfig) => T, options?: ConfigChangeOptions<T>): Promise<T>;
  /**
   * Makes a new random secret for `tokenid`, stores its hash only, returns the
   * secret once. The secret it replaces is kept as the token's previous one
   * with `keepPrevious` (a rotation grace), else any previous one goes with it.
   */
  newSecret(tokenid: string, keepPrevious?: boolean): Promise<string>;
  /** Removes the token's secret; true when there was one. */
  deleteSecret(tokenid: string): Promise<boolean>;
}

/** One operation's view of a storage that records its changes in a shared trail. */
export interface RecordingStorage extends AccessStorage {
  /** The revisions of the transactions it committed, each with its record, in order. */
  readonly recorded: readonly number[];
}

/**
 * A storage with a trail of its own, written in each change's transaction
 * (multi-host mode's: the cluster's trail in etcd, src/cluster/audit.ts).
 */
export interface AuditingStorage extends AccessStorage {
  /** The storage for one operation, each of its changes recorded as `event`. */
  recording(event: Omit<AuditEvent, 'outcome' | 'status' | 'code' | 'revision'>): RecordingStorage;
}

export function isAuditing(storage: AccessStorage): storage is AuditingStorage {
  return typeof (storage as Partial<AuditingStorage>).recording === 'function';
}

/** The files of this host: user.cfg and token.shadow under their locks. */
export class FileStorage implements AccessStorage {
  readonly users: UserConfigStore;
  readonly shadow: TokenShadow;

  constructor(users: UserConfigStore, shadow: TokenShadow) {
    this.users = users;
    this.shadow = shadow;
  }

  readConfig(): Promise<UserConfig> {
    return this.users.get();
  }

  async mutateConfig<T>(
    change: (config: UserConfig) => T,
    options: ConfigChangeOptions<T> = {},
  ): Promise<T> {
    // user.cfg first: the token stops being active before its secret goes.
    const result = await this.users.mutate(change);
    // One write of token.shadow for all of them (a bulk revocation takes thousands).
    // A removed token's previous secret (rotation grace) goes with it.
    const secrets = [...(options.secretsToDelete?.(result) ?? [])].flatMap(secretIdsOf);
    if (secrets.length > 0) await this.shadow.deleteSecrets(secrets);
    return result;
  }

  newSecret(tokenid: string, keepPrevious = false): Promise<string> {
    return this.shadow.rotateSecret(tokenid, keepPrevious);
  }

  deleteSecret(tokenid: string): Promise<boolean> {
    return this.shadow.deleteSecret(tokenid);
  }
}
