import { randomUUID } from 'node:crypto';
/**
 * Multi-host mode's storage for the operations: each change is one etcd
 * transaction, and the call returns only when every live host has published
 * it (or fenced itself by losing its lease). Secrets are hashed here, on the
 * writer, and only the hash goes to etcd.
 *
 * On a host whose tokens live in its token database (`local`), a change is
 * computed on this host's copy instead of a read of the whole store: once the
 * copy has applied the store's latest revision, the change runs on it as on
 * a single host (each user's tokens read when looked at), and what it did is
 * committed only if no slot moved since (else it runs again). Its cost is
 * what it changes, at any number of tokens.
 */
import type { Etcd3 } from 'etcd3';
import type { UserConfigStore } from '../access/user-info.js';
import type { UserConfig } from '../config/types.js';
import { tokenLine } from '../config/write.js';
import { ClusterError } from '../errors.js';
import type { GenerationPage } from '../generations/page.js';
import { Slot } from '../generations/slots.js';
import type { HashPool } from '../hashing/pool.js';
import { parseTokenid, previousSecretId } from '../ids.js';
import { newSecret, type SecretFormat } from '../secret-format.js';
import type { AuditingStorage, ConfigChangeOptions, RecordingStorage } from '../service/storage.js';
import { changeTokens, type TokenDiff } from '../store/stored-tokens.js';
import type { TokenRow } from '../store/token-database.js';
import { AckTracker } from './acks.js';
import type { AuditStamp } from './audit.js';
import { createEtcdClient, EtcdMembers } from './client.js';
import { configToEntries } from './entries.js';
import { ClusterKeys } from './keys.js';
import type { ClusterSettings } from './settings.js';
import { EtcdStore, latestRevisionOf, type StoreSnapshot } from './store.js';

/** One confirmed change: how long the commit took, and the wait for every host after it. */
export interface Confirmation {
  revision: number;
  commitMs: number;
  confirmMs: number;
}

/** A host whose tokens live in its token database: the copy changes are computed on. */
export interface LocalTokens {
  /** user.cfg as this host's agent publishes it, each user's tokens read from the database. */
  users: UserConfigStore;
  /** The token database as committed now. */
  rows: { lookup(tokenid: string): TokenRow | undefined; rowsOf(userid: string): TokenRow[] };
  /** This host's page: CLUSTER_ACKED is the revision its copy has applied. */
  page: GenerationPage;
}

const MAX_ATTEMPTS = 20;

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
  readonly #local: LocalTokens | null;
  readonly #waitMs: number;
  /** Hashes of secrets made for tokens not stored yet, committed with the token (newSecret). */
  readonly #pending = new Map<string, string>();
  /** Changes computed on the local copy run one at a time: they change its maps in place. */
  #turn: Promise<unknown> = Promise.resolve();

  constructor(
    settings: ClusterSettings,
    pool: HashPool,
    options: {
      client?: Etcd3;
      onConfirmed?: (confirmation: Confirmation) => void;
      /** The form of new secrets (src/secret-format.ts); scannable by default. */
      secretFormat?: SecretFormat;
      /** This host's token database, when its tokens live there (see the class comment). */
      local?: LocalTokens;
    } = {},
  ) {
    const client = options.client ?? createEtcdClient(settings);
    this.#onConfirmed = options.onConfirmed;
    this.#secretFormat = options.secretFormat ?? 'scannable';
    this.#local = options.local ?? null;
    const keys = new ClusterKeys(settings.cluster);
    const leaseMs = settings.leaseSeconds * 1000;
    this.#waitMs = 4 * leaseMs;
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

  async readConfig(): Promise<UserConfig> {
    const local = this.#local;
    if (local === null) return this.store.readConfig();
    await this.#caughtUp();
    return local.users.get();
  }

  /** One transaction for the change and the secrets that go with it, one wait for the hosts. */
  mutateConfig<T>(
    change: (config: UserConfig) => T,
    options: { secretsToDelete?: (result: T) => Iterable<string> } = {},
  ): Promise<T> {
    return this.#mutateConfig(change, options);
  }

  /** A change of tokens only: on the local copy, without reading or writing user.cfg. */
  mutateTokens<T>(
    change: (config: UserConfig) => T,
    options: ConfigChangeOptions<T> = {},
  ): Promise<T> {
    return this.#mutateTokens(change, options);
  }

  #mutateTokens<T>(
    change: (config: UserConfig) => T,
    options: ConfigChangeOptions<T>,
    audit?: AuditStamp,
    recorded?: number[],
  ): Promise<T> {
    return this.#local === null
      ? this.#mutateConfig(change, options, audit, recorded)
      : this.#changeLocal(change, options, true, audit, recorded);
  }

  async #mutateConfig<T>(
    change: (config: UserConfig) => T,
    options: ConfigChangeOptions<T>,
    audit?: AuditStamp,
    recorded?: number[],
  ): Promise<T> {
    if (this.#local !== null) return this.#changeLocal(change, options, false, audit, recorded);
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
    if (this.#local !== null) {
      // A token not stored yet (a create makes its secret first): its hash goes with it.
      await this.#caughtUp();
      if (this.#local.rows.lookup(tokenid) === undefined) {
        this.#pending.set(tokenid, hash);
        return secret;
      }
    }
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
    if (this.#local !== null) {
      const pending = this.#pending.delete(tokenid);
      await this.#caughtUp();
      if ((this.#local.rows.lookup(tokenid)?.hash ?? '') === '') return pending;
    }
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
      mutateTokens: (change, options = {}) => this.#mutateTokens(change, options, audit, recorded),
      newSecret: (tokenid, keepPrevious = false) =>
        this.#newSecret(tokenid, keepPrevious, audit, recorded),
      deleteSecret: (tokenid) => this.#deleteSecret(tokenid, audit, recorded),
    };
  }

  /**
   * A change computed on the local copy (see the class comment); with
   * `tokensOnly`, on the shared config and touching only tokens, unless
   * `changesMoreThanTokens` says otherwise; else on a private copy of user.cfg.
   */
  async #changeLocal<T>(
    change: (config: UserConfig) => T,
    options: ConfigChangeOptions<T>,
    tokensOnly: boolean,
    audit?: AuditStamp,
    recorded?: number[],
  ): Promise<T> {
    const local = this.#local as LocalTokens;
    const started = performance.now();
    // The last attempt that tried to commit: if its answer was lost, its mark tells it landed.
    const tried: { last: { mark: string; result: T } | null } = { last: null };
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const head = await this.#caughtUp();
      const last = tried.last;
      const landed = last === null ? undefined : landedAt(head, last.mark);
      if (last !== null && landed !== undefined) {
        await this.#confirm(landed, started);
        return last.result;
      }
      tried.last = null;
      const outcome = await this.#exclusive(async () => {
        const config = tokensOnly ? await local.users.get() : await local.users.readFresh();
        if (tokensOnly && options.changesMoreThanTokens?.(config) === true) return 'config';
        const before = tokensOnly ? null : configToEntries(config, { tokens: false });
        const users = [...config.users.keys()];
        const run = changeTokens(config, change);
        try {
          const gone = users.filter((userid) => !config.users.has(userid));
          const changes = this.#tokenChanges(run.diff, gone);
          if (before !== null) {
            const after = configToEntries(config, { tokens: false });
            for (const [id, line] of after) if (before.get(id) !== line) changes.set(id, line);
            for (const id of before.keys()) if (!after.has(id)) changes.set(id, null);
          }
          // Nothing to store (a retried call whose first attempt committed): the latest covers it.
          if (changes.size === 0) return { result: run.result, revision: latestRevisionOf(head) };
          const mark = randomUUID();
          tried.last = { mark, result: run.result };
          const revision = await this.store.commitEntries(head, changes, mark, audit);
          if (revision === null) return null;
          for (const { id } of run.diff.put) this.#pending.delete(id);
          if (audit !== undefined) recorded?.push(revision);
          return { result: run.result, revision };
        } finally {
          run.session.discard();
        }
      });
      if (outcome === 'config') return this.#changeLocal(change, options, false, audit, recorded);
      if (outcome === null) continue;
      await this.#confirm(outcome.revision, started);
      return outcome.result;
    }
    throw new ClusterError('conflict', 'the configuration kept changing: gave up');
  }

  /**
   * The store's keys a change of tokens touches: removed tokens and every
   * token of users gone or replaced lose their line and the secrets they have;
   * stored tokens get their line, a new one its pending secret.
   */
  #tokenChanges(diff: TokenDiff, gone: readonly string[]): Map<string, string | null> {
    const rows = (this.#local as LocalTokens).rows;
    const changes = new Map<string, string | null>();
    // Only the secrets the row has (a bulk revocation is one delete per key, within etcd's
    // limit per transaction); without a row here, every key the token may have.
    const remove = (id: string, row: TokenRow | undefined) => {
      changes.set(`token/${id}`, null);
      if (row === undefined || row.hash !== '') changes.set(`shadow/${id}`, null);
      if (row === undefined || row.previousHash) {
        changes.set(`shadow/${previousSecretId(id)}`, null);
      }
    };
    for (const userid of [...gone, ...diff.replaced]) {
      for (const row of rows.rowsOf(userid)) remove(row.id, row);
    }
    for (const id of diff.removed) remove(id, rows.lookup(id));
    for (const { id, entry } of diff.put) {
      changes.set(`token/${id}`, tokenLine(id, entry));
      const hash = this.#pending.get(id);
      if (hash !== undefined) changes.set(`shadow/${id}`, hash);
    }
    return changes;
  }

  /**
   * The store's slots now (a linearizable read), once this host's copy has
   * applied them: what a change computed on the copy compares against.
   */
  async #caughtUp(): Promise<StoreSnapshot> {
    const head = await this.store.snapshot([]);
    const latest = latestRevisionOf(head);
    const page = (this.#local as LocalTokens).page;
    const deadline = performance.now() + this.#waitMs;
    for (let pause = 1; page.load(Slot.CLUSTER_ACKED) < latest; pause = Math.min(50, pause * 2)) {
      if (performance.now() > deadline) {
        throw new ClusterError(
          'unavailable',
          `this host has not applied the store's revision ${latest} yet (is its manager syncing?)`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
    return head;
  }

  #exclusive<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.#turn.then(fn, fn);
    this.#turn = run.catch(() => undefined);
    return run;
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

/** The revision at which the change that left `mark` committed, if no other bumped since. */
function landedAt(snapshot: StoreSnapshot, mark: string): number | undefined {
  for (const [slot, value] of snapshot.marks) if (value === mark) return snapshot.gens.get(slot);
  return undefined;
}
