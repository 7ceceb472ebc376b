/**
 * Multi-host mode's storage for the operations: each change is one etcd
 * transaction, and the call returns only when every live host has published
 * it (or fenced itself by losing its lease). Secrets are hashed here, on the
 * writer, and only the hash goes to etcd.
 */
import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import type { UserConfig } from '../config/types.js';
import type { HashPool } from '../hashing/pool.js';
import { parseTokenid } from '../ids.js';
import { AckTracker } from './acks.js';
import { createEtcdClient } from './client.js';
import { ClusterKeys } from './keys.js';
import type { ClusterSettings } from './settings.js';
import { EtcdStore } from './store.js';

export class EtcdStorage {
  readonly store: EtcdStore;
  readonly tracker: AckTracker;
  readonly client: Etcd3;
  #pool: HashPool;

  constructor(
    settings: ClusterSettings,
    pool: HashPool,
    client: Etcd3 = createEtcdClient(settings),
  ) {
    const keys = new ClusterKeys(settings.cluster);
    const leaseMs = settings.leaseSeconds * 1000;
    this.client = client;
    // A commit may need a new leader elected (7 s in the prototype): allow a few leases.
    this.store = new EtcdStore(client, keys, { deadlineMs: 4 * leaseMs });
    this.tracker = new AckTracker(client, keys, {
      deadlineMs: 4 * leaseMs,
      confirmTimeoutMs: 3 * leaseMs + 1000,
    });
    this.#pool = pool;
  }

  readConfig(): Promise<UserConfig> {
    return this.store.readConfig();
  }

  async mutateConfig<T>(change: (config: UserConfig) => T): Promise<T> {
    const { result, revision } = await this.store.mutateConfig(change);
    await this.tracker.confirm(revision);
    return result;
  }

  async newSecret(tokenid: string): Promise<string> {
    parseTokenid(tokenid);
    const secret = randomUUID();
    const revision = await this.store.putSecretHash(tokenid, await this.#pool.hash(secret));
    await this.tracker.confirm(revision);
    return secret;
  }

  async deleteSecret(tokenid: string): Promise<boolean> {
    const { existed, revision } = await this.store.deleteSecretHash(tokenid);
    await this.tracker.confirm(revision);
    return existed;
  }

  async close(): Promise<void> {
    await this.tracker.close();
    this.client.close();
  }
}
