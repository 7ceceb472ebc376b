/**
 * Multi-host mode's storage for the operations: each change is one etcd
 * transaction, and the call returns only when every live host has published
 * it (or fenced itself by losing its lease). Secrets are hashed here, on the
 * writer, and only the hash goes to etcd.
 */
import type { Etcd3 } from 'etcd3';
import type { UserConfig } from '../config/types.js';
import type { HashPool } from '../hashing/pool.js';
import { parseTokenid } from '../ids.js';
import { newSecret, type SecretFormat } from '../secret-format.js';
import type { AuditingStorage, RecordingStorage } from '../service/storage.js';
import { AckTracker } from './acks.js';
import type { AuditStamp } from './audit.js';
import { createEtcdClient, EtcdMembers } from './client.js';
import { ClusterKeys } from './keys.js';
import type { ClusterSettings } from './settings.js';
import { EtcdStore } from './store.js';

/** One confirmed change: how long the commit took, and the wait for every host after it. */
export interface Confirmation {
  revision: number;
  commitMs: number;
  confirmMs: number;
}

export class EtcdStorage implements AuditingStorage {
  readonly store: EtcdStore;
  readonly tracker: AckTracker;
  /** Every member, each on its own connection: the store's calls and the acks' watches. */
  readonly members: EtcdMembers;
  /** One client on every member, for the last-use records (src/daemon/usage.ts). */
  readonly client: Etcd3;
  readonly host: string;
  #pool: HashPool;
  readonly #secretFormat: SecretFormat;
  #onConfirmed: ((confirmation: Confirmation) => void) | undefined;

  constructor(
    settings: ClusterSettings,
    pool: HashPool,
    options: {
      client?: Etcd3;
      onConfirmed?: (confirmation: Confirmation) => void;
      /** The form of new secrets (src/secret-format.ts); scannable by default. */
      secretFormat?: SecretFormat;
    } = {},
  ) {
    const client = options.client ?? createEtcdClient(settings);
    this.#onConfirmed = options.onConfirmed;
    this.#secretFormat = options.secretFormat ?? 'scannable';
    const keys = new ClusterKeys(settings.cluster);
    const leaseMs = settings.leaseSeconds * 1000;
    this.client = client;
    this.host = settings.host;
    this.members = new EtcdMembers(settings, keys.probe);
    // A commit may need a new leader elected (7 s in the prototype): allow a few leases.
    this.store = new EtcdStore(this.members, keys, { deadlineMs: 4 * leaseMs });
    this.tracker = new AckTracker(this.members, keys, {
      deadlineMs: 4 * leaseMs,
      leaseMs,
    });
    this.#pool = pool;
    // The acks' watches open now, not on the first change (which would wait for them).
    this.tracker.prepare();
  }

  readConfig(): Promise<UserConfig> {
    return this.store.readConfig();
  }

  /** One transaction for the change and the secrets that go with it, one wait for the hosts. */
  mutateConfig<T>(
    change: (config: UserConfig) => T,
    options: { secretsToDelete?: (result: T) => Iterable<string> } = {},
  ): Promise<T> {
    return this.#mutateConfig(change, options);
  }

  async #mutateConfig<T>(
    change: (config: UserConfig) => T,
    options: { secretsToDelete?: (result: T) => Iterable<string> },
    audit?: AuditStamp,
    recorded?: number[],
  ): Promise<T> {
    const started = performance.now();
    const committed = await this.store.mutateConfig(change, options.secretsToDelete, audit);
    if (committed.recorded) recorded?.push(committed.revision);
    await this.#confirm(committed.revision, started);
    return committed.result;
  }

  newSecret(tokenid: string, keepPrevious = false): Promise<string> {
    return this.#newSecret(tokenid, keepPrevious);
  }

  async #newSecret(
    tokenid: string,
    keepPrevious: boolean,
    audit?: AuditStamp,
    recorded?: number[],
  ): Promise<string> {
    parseTokenid(tokenid);
    const secret = newSecret(tokenid, this.#secretFormat);
    const hash = await this.#pool.hash(secret);
    const started = performance.now();
    const committed = await this.store.rotateSecretHash(tokenid, hash, keepPrevious, audit);
    if (committed.recorded) recorded?.push(committed.revision);
    await this.#confirm(committed.revision, started);
    return secret;
  }

  deleteSecret(tokenid: string): Promise<boolean> {
    return this.#deleteSecret(tokenid);
  }

  async #deleteSecret(tokenid: string, audit?: AuditStamp, recorded?: number[]): Promise<boolean> {
    const started = performance.now();
    const { existed, revision } = await this.store.deleteSecretHash(tokenid, audit);
    if (existed && audit) recorded?.push(revision);
    await this.#confirm(revision, started);
    return existed;
  }

  /**
   * The storage for one operation: each transaction it commits carries the
   * operation's record into the cluster's audit trail (src/cluster/audit.ts).
   */
  recording(event: AuditStamp['event']): RecordingStorage {
    const audit: AuditStamp = { event, host: this.host };
    const recorded: number[] = [];
    return {
      recorded,
      readConfig: () => this.readConfig(),
      mutateConfig: (change, options = {}) => this.#mutateConfig(change, options, audit, recorded),
      newSecret: (tokenid, keepPrevious = false) =>
        this.#newSecret(tokenid, keepPrevious, audit, recorded),
      deleteSecret: (tokenid) => this.#deleteSecret(tokenid, audit, recorded),
    };
  }

  /** Waits for every live host (the mutation protocol), then reports the timings. */
  async #confirm(revision: number, started: number): Promise<void> {
    const committed = performance.now();
    await this.tracker.confirm(revision, committed);
    this.#onConfirmed?.({
      revision,
      commitMs: committed - started,
      confirmMs: performance.now() - committed,
    });
  }

  async close(): Promise<void> {
    await this.tracker.close();
    this.members.close();
    this.client.close();
  }
}
