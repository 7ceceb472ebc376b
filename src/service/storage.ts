/**
 * Where the operations keep users, tokens, groups, ACLs and secrets: the
 * seam between what an operation means and how it is stored. Single-host mode
 * uses the files (FileStorage); multi-host mode uses etcd (src/cluster's
 * EtcdStorage, which returns only once every live host applied the change).
 */
import type { UserConfigStore } from '../access/user-info.js';
import type { UserConfig } from '../config/types.js';
import type { TokenShadow } from '../shadow/token-shadow.js';

export interface AccessStorage {
  /** The current config, fresh enough for a writer to check privileges on. */
  readConfig(): Promise<UserConfig>;
  /** Reads fresh, applies `change` (which may throw to abort), stores the result. */
  mutateConfig<T>(change: (config: UserConfig) => T): Promise<T>;
  /** Makes a new random secret for `tokenid`, stores its hash only, returns the secret once. */
  newSecret(tokenid: string): Promise<string>;
  /** Removes the token's secret; true when there was one. */
  deleteSecret(tokenid: string): Promise<boolean>;
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

  mutateConfig<T>(change: (config: UserConfig) => T): Promise<T> {
    return this.users.mutate(change);
  }

  newSecret(tokenid: string): Promise<string> {
    return this.shadow.generateAndSetSecret(tokenid);
  }

  deleteSecret(tokenid: string): Promise<boolean> {
    return this.shadow.deleteSecret(tokenid);
  }
}
