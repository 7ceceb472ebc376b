/**
 * The shared store on etcd: reads are linearizable (a cut-off member's
 * serializable reads served a deleted secret for 9 s in the prototype), and
 * every change is one transaction that compares the mod_revision of every key
 * it changes and of its slot's gen/ key, so a concurrent change makes it read
 * again and a retried call never applies twice. Hashes only, never a secret.
 */
import type { Etcd3, ICompare, IKeyValue, IRequestOp } from 'etcd3';
import { DEFAULT_ACCESS_BACKEND } from '../config/access-control.js';
import type { UserConfig } from '../config/types.js';
import { ClusterError } from '../errors.js';
import { previousSecretId, secretIdsOf } from '../ids.js';
import {
  type AuditStamp,
  type AuditStep,
  auditHeadOf,
  auditOps,
  type ClusterAuditHead,
} from './audit.js';
import { EtcdMembers, retrying } from './client.js';
import { configToEntries, entriesToConfig } from './entries.js';
import { type ClusterKeys, CONFIG_KINDS, type EntryKind, type GenSlot, slotOf } from './keys.js';

export interface StoredEntry {
  value: string;
  modRevision: number;
}

/** Part of the data prefix read at one revision; entries keyed `kind/id`. */
export interface StoreSnapshot {
  revision: number;
  entries: Map<string, StoredEntry>;
  /** mod_revision of each gen/ key present: the generation of that slot. */
  gens: Map<GenSlot, number>;
  /** The mark the change that last bumped each slot left there ('' for most: see commitEntries). */
  marks: Map<GenSlot, string>;
  /** The cluster audit trail's head at that revision (src/cluster/audit.ts). */
  auditHead: ClusterAuditHead;
}

/** The store's latest data revision in a snapshot: every data change bumps a gen/ key. */
export function latestRevisionOf(snapshot: StoreSnapshot): number {
  return Math.max(0, ...snapshot.gens.values());
}

/**
 * What a change returns: the revision every host must confirm before the call
 * may return (the commit's; when nothing needed writing, the slot's latest
 * generation, which covers an earlier attempt of a retried call).
 */
export interface Committed<T> {
  result: T;
  revision: number;
  /** Whether a transaction with the change's audit record committed (the last at `revision`). */
  recorded: boolean;
}

const MAX_ATTEMPTS = 20;

/** The end of the range of keys starting with `prefix` (the prefix with its last byte + 1). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1] = (end[end.length - 1] as number) + 1;
  return end;
}

function rangeOf(prefix: string): IRequestOp {
  return { request_range: { key: Buffer.from(prefix), range_end: prefixEnd(prefix) } };
}

export class EtcdStore {
  readonly keys: ClusterKeys;
  #etcd: Etcd3 | EtcdMembers;
  #deadlineMs: number;

  /**
   * On `EtcdMembers` (long-lived processes: each attempt on another member,
   * down ones skipped, commits on the leader), or on one client (a command).
   */
  constructor(etcd: Etcd3 | EtcdMembers, keys: ClusterKeys, options: { deadlineMs: number }) {
    this.#etcd = etcd;
    this.keys = keys;
    this.#deadlineMs = options.deadlineMs;
  }

  #call<T>(
    what: string,
    options: { write?: boolean; idempotent?: boolean; signal?: AbortSignal | undefined },
    attempt: (client: Etcd3) => Promise<T>,
  ): Promise<T> {
    const retry = {
      deadlineMs: this.#deadlineMs,
      ...(options.signal ? { signal: options.signal } : {}),
    };
    const etcd = this.#etcd;
    if (etcd instanceof EtcdMembers) {
      return etcd.call(
        what,
        { ...retry, write: options.write ?? false, idempotent: options.idempotent ?? false },
        attempt,
      );
    }
    return retrying(what, retry, () => attempt(etcd));
  }

  /**
   * The given kinds (default all) and the gen/ keys at one revision: one
   * read-only transaction of several ranges, which etcd serves linearizably.
   */
  async snapshot(
    kinds: readonly EntryKind[] = ['shadow', ...CONFIG_KINDS],
    signal?: AbortSignal,
  ): Promise<StoreSnapshot> {
    const prefixes = [...kinds.map((k) => `${this.keys.data}${k}/`), `${this.keys.data}gen/`];
    const headRange: IRequestOp = { request_range: { key: Buffer.from(this.keys.auditHead) } };
    const response = await this.#call('reading the store', { signal, idempotent: true }, (client) =>
      client.kv.txn({ compare: [], success: [...prefixes.map(rangeOf), headRange], failure: [] }),
    );
    const head = response.responses.at(-1)?.response_range?.kvs[0];
    const snapshot: StoreSnapshot = {
      revision: Number(response.header.revision),
      entries: new Map(),
      gens: new Map(),
      marks: new Map(),
      auditHead: auditHeadOf(head),
    };
    for (const op of response.responses.slice(0, -1)) {
      for (const kv of op.response_range?.kvs ?? []) this.#adopt(snapshot, kv);
    }
    return snapshot;
  }

  #adopt(snapshot: StoreSnapshot, kv: IKeyValue): void {
    const key = kv.key.toString();
    if (key.startsWith(`${this.keys.data}gen/`)) {
      const slot = key.slice(this.keys.data.length + 4) as GenSlot;
      snapshot.gens.set(slot, Number(kv.mod_revision));
      snapshot.marks.set(slot, kv.value.toString());
      return;
    }
    const parsed = this.keys.parseData(key);
    if (parsed === null) return;
    snapshot.entries.set(`${parsed.kind}/${parsed.id}`, {
      value: kv.value.toString(),
      modRevision: Number(kv.mod_revision),
    });
  }

  /**
   * The keys of `kind` in [from, to) at `revision` (one linearizable range
   * read; default the whole kind), in key order, at most `limit` of them:
   * a page of a read too large for one answer.
   */
  async range(
    kind: EntryKind,
    revision: number,
    options: { from?: string; to?: string; limit?: number; signal?: AbortSignal } = {},
  ): Promise<Array<{ id: string; value: string }>> {
    const prefix = `${this.keys.data}${kind}/`;
    const key = Buffer.from(options.from === undefined ? prefix : `${prefix}${options.from}`);
    const end =
      options.to === undefined ? prefixEnd(prefix) : Buffer.from(`${prefix}${options.to}`);
    const response = await this.#call(
      'reading the store',
      { signal: options.signal, idempotent: true },
      (client) =>
        client.kv.range({
          key,
          range_end: end,
          revision: String(revision),
          limit: String(options.limit ?? 0),
        }),
    );
    return response.kvs.map((kv) => ({
      id: kv.key.toString().slice(prefix.length),
      value: kv.value.toString(),
    }));
  }

  /**
   * Commits `changes` (`kind/id` -> the new value, or null to delete) if no
   * slot moved since `expected` was read (so what the change was computed on
   * is still what is stored), bumping the slots it touches with `mark` as
   * their value, with `audit`'s record. The commit's revision, or null when a
   * slot moved (read again: a slot marked `mark` says this very change landed,
   * as an attempt whose answer was lost may have).
   */
  async commitEntries(
    expected: StoreSnapshot,
    changes: ReadonlyMap<string, string | null>,
    mark: string,
    audit?: AuditStamp,
  ): Promise<number | null> {
    const compare: ICompare[] = [
      this.#genCompare(expected, 'USER_AND_ACL'),
      this.#genCompare(expected, 'TOKEN_SHADOW'),
    ];
    const ops: IRequestOp[] = [];
    const slots = new Set<GenSlot>();
    for (const [id, value] of changes) {
      slots.add(slotOf(id.slice(0, id.indexOf('/')) as EntryKind));
      ops.push(
        value === null
          ? { request_delete_range: { key: this.#key(id) } }
          : { request_put: { key: this.#key(id), value: Buffer.from(value) } },
      );
    }
    for (const slot of slots) ops.push(this.#bump(slot, mark));
    this.#record(compare, ops, expected.auditHead, audit, 'config');
    return this.#commit(compare, ops);
  }

  /** The config as stored, with root@pam added as every reader of user.cfg adds it. */
  async readConfig(): Promise<UserConfig> {
    const snapshot = await this.snapshot(CONFIG_KINDS);
    return configOf(snapshot);
  }

  /**
   * Applies `change` to the stored config and commits what it changed in one
   * transaction, with the deletion of the secrets `secretsToDelete` names
   * (the tokens the change removed); on a lost compare, reads and applies
   * again. `change` may throw to abort. With `audit`, the change's record goes
   * into the cluster's trail in the same transaction.
   */
  async mutateConfig<T>(
    change: (config: UserConfig) => T,
    secretsToDelete?: (result: T) => Iterable<string>,
    audit?: AuditStamp,
  ): Promise<Committed<T>> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const snapshot = await this.snapshot(CONFIG_KINDS);
      const config = configOf(snapshot);
      const result = change(config);
      // A removed token's previous secret (rotation grace) goes with it.
      const secrets = [...(secretsToDelete?.(result) ?? [])].flatMap(secretIdsOf);
      const wanted = configToEntries(config);
      const compare: ICompare[] = [this.#genCompare(snapshot, 'USER_AND_ACL')];
      const ops: IRequestOp[] = [];
      for (const [id, value] of wanted) {
        const stored = snapshot.entries.get(id);
        if (stored?.value === value) continue;
        compare.push(this.#unchanged(id, stored));
        ops.push({ request_put: { key: this.#key(id), value: Buffer.from(value) } });
      }
      for (const [id, stored] of snapshot.entries) {
        if (wanted.has(id)) continue;
        compare.push(this.#unchanged(id, stored));
        ops.push({ request_delete_range: { key: this.#key(id) } });
      }
      if (ops.length === 0) {
        // Nothing to change (a retried call whose first attempt committed): the secrets alone.
        let revision = snapshot.gens.get('USER_AND_ACL') ?? snapshot.revision;
        let recorded = false;
        for (const tokenid of secrets) {
          const deleted = await this.deleteSecretHash(tokenid, audit);
          revision = Math.max(revision, deleted.revision);
          recorded ||= deleted.existed && audit !== undefined;
        }
        return { result, revision, recorded };
      }
      ops.push(this.#bump('USER_AND_ACL'));
      for (const tokenid of secrets) {
        ops.push({
          request_delete_range: { key: Buffer.from(this.keys.entry('shadow', tokenid)) },
        });
      }
      if (secrets.length > 0) ops.push(this.#bump('TOKEN_SHADOW'));
      this.#record(compare, ops, snapshot.auditHead, audit, 'config');
      const revision = await this.#commit(compare, ops);
      if (revision !== null) return { result, revision, recorded: audit !== undefined };
    }
    throw new ClusterError('conflict', 'the configuration kept changing: gave up');
  }

  /**
   * Stores a token's hash. Returns the revision every host must confirm: the
   * commit's, or, when the key already holds this hash (a retried call whose
   * first attempt committed), the slot's latest generation, which covers it.
   */
  async putSecretHash(
    tokenid: string,
    hash: string,
    audit?: AuditStamp,
  ): Promise<{ revision: number; recorded: boolean }> {
    const key = Buffer.from(this.keys.entry('shadow', tokenid));
    const value = Buffer.from(hash);
    let head = audit ? (await this.snapshot([])).auditHead : null;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const ops: IRequestOp[] = [{ request_put: { key, value } }, this.#bump('TOKEN_SHADOW')];
      const compare: ICompare[] = [];
      if (head !== null) this.#record(compare, ops, head, audit, 'secret.put');
      // etcd fails a Value compare on a missing key, so absent is its own case.
      const differs = await this.#commit(
        [{ key, target: 'Value', result: 'NotEqual', value }, ...compare],
        ops,
      );
      if (differs !== null) return { revision: differs, recorded: head !== null };
      const absent = await this.#commit(
        [{ key, target: 'Version', result: 'Equal', version: 0 }, ...compare],
        ops,
      );
      if (absent !== null) return { revision: absent, recorded: head !== null };
      const snapshot = await this.snapshot(['shadow']);
      if (snapshot.entries.get(`shadow/${tokenid}`)?.value === hash) {
        return {
          revision: snapshot.gens.get('TOKEN_SHADOW') ?? snapshot.revision,
          recorded: false,
        };
      }
      // Someone else's record moved the trail's head: again, after it.
      if (head !== null) head = snapshot.auditHead;
    }
    throw new ClusterError('conflict', 'the token kept changing: gave up');
  }

  /**
   * A rotation: the token's new hash, and the one it replaces kept as its
   * previous secret (`keepPrevious`, a grace) or any previous one removed, in
   * one transaction: at most two secrets are ever valid, and a second rotation
   * ends an open grace in the same commit. A retried call whose first attempt
   * committed finds its own hash there and changes nothing more.
   */
  async rotateSecretHash(
    tokenid: string,
    hash: string,
    keepPrevious: boolean,
    audit?: AuditStamp,
  ): Promise<{ revision: number; recorded: boolean }> {
    const key = Buffer.from(this.keys.entry('shadow', tokenid));
    const previousKey = Buffer.from(this.keys.entry('shadow', previousSecretId(tokenid)));
    let head = audit ? (await this.snapshot([])).auditHead : null;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const range = await this.#call('reading a secret', { idempotent: true }, (client) =>
        client.kv.range({ key }),
      );
      const current = range.kvs[0];
      if (current !== undefined && current.value.toString() === hash) {
        return { revision: Number(current.mod_revision), recorded: false };
      }
      const ops: IRequestOp[] = [{ request_put: { key, value: Buffer.from(hash) } }];
      ops.push(
        keepPrevious && current !== undefined
          ? { request_put: { key: previousKey, value: current.value } }
          : { request_delete_range: { key: previousKey } },
      );
      ops.push(this.#bump('TOKEN_SHADOW'));
      const compare: ICompare[] = [
        current === undefined
          ? { key, target: 'Version', result: 'Equal', version: 0 }
          : { key, target: 'Mod', result: 'Equal', mod_revision: current.mod_revision },
      ];
      if (head !== null) this.#record(compare, ops, head, audit, 'secret.put');
      const revision = await this.#commit(compare, ops);
      if (revision !== null) return { revision, recorded: head !== null };
      if (head !== null) head = (await this.snapshot([])).auditHead;
    }
    throw new ClusterError('conflict', 'the token kept changing: gave up');
  }

  /**
   * Removes a token's hash. `revision` is the one to confirm: the commit's,
   * or the slot's latest generation when there was nothing (any earlier
   * delete, such as a retried call's first attempt, is covered by it).
   */
  async deleteSecretHash(
    tokenid: string,
    audit?: AuditStamp,
  ): Promise<{ existed: boolean; revision: number }> {
    const key = Buffer.from(this.keys.entry('shadow', tokenid));
    let head = audit ? (await this.snapshot([])).auditHead : null;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const compare: ICompare[] = [{ key, target: 'Version', result: 'Greater', version: 0 }];
      const ops: IRequestOp[] = [{ request_delete_range: { key } }, this.#bump('TOKEN_SHADOW')];
      if (head !== null) this.#record(compare, ops, head, audit, 'secret.delete');
      const revision = await this.#commit(compare, ops);
      if (revision !== null) return { existed: true, revision };
      const snapshot = await this.snapshot(head === null ? [] : ['shadow']);
      if (head === null || !snapshot.entries.has(`shadow/${tokenid}`)) {
        return {
          existed: false,
          revision: snapshot.gens.get('TOKEN_SHADOW') ?? snapshot.revision,
        };
      }
      // The secret is still there: the trail's head moved under us.
      head = snapshot.auditHead;
    }
    throw new ClusterError('conflict', 'the token kept changing: gave up');
  }

  /** Adds `audit`'s record after `head` to a transaction (nothing without `audit`). */
  #record(
    compare: ICompare[],
    ops: IRequestOp[],
    head: ClusterAuditHead,
    audit: AuditStamp | undefined,
    step: AuditStep,
  ): void {
    if (audit === undefined) return;
    const record = auditOps(this.keys, head, audit, step);
    compare.push(record.compare);
    ops.push(...record.ops);
  }

  /**
   * Commits, retrying transient failures on other members. A failed compare
   * returns null. After an ambiguous failure (the call died, maybe after the
   * commit) the retry's compare fails too: the caller reads and decides again.
   */
  async #commit(compare: ICompare[], success: IRequestOp[]): Promise<number | null> {
    // Thousands of operations (a bulk revocation) take etcd longer than a call's usual deadline.
    const large = success.length > 1000 ? { deadline: Date.now() + 1000 + success.length } : {};
    try {
      const response = await this.#call('committing a change', { write: true }, (client) =>
        client.kv.txn({ compare, success, failure: [] }, large),
      );
      return response.succeeded ? Number(response.header.revision) : null;
    } catch (error) {
      // An attempt may have reached etcd before its answer was lost: say so, never "not done".
      if (!(error instanceof ClusterError) || error.problem !== 'unavailable') throw error;
      throw new ClusterError(
        'unavailable',
        `${error.message}; the change may have been committed (read before retrying)`,
        { cause: error },
      );
    }
  }

  #key(id: string): Buffer {
    return Buffer.from(`${this.keys.data}${id}`);
  }

  #unchanged(id: string, stored: StoredEntry | undefined): ICompare {
    return stored === undefined
      ? { key: this.#key(id), target: 'Version', result: 'Equal', version: 0 }
      : { key: this.#key(id), target: 'Mod', result: 'Equal', mod_revision: stored.modRevision };
  }

  #genCompare(snapshot: StoreSnapshot, slot: GenSlot): ICompare {
    const key = Buffer.from(this.keys.gen(slot));
    const gen = snapshot.gens.get(slot);
    return gen === undefined
      ? { key, target: 'Version', result: 'Equal', version: 0 }
      : { key, target: 'Mod', result: 'Equal', mod_revision: gen };
  }

  #bump(slot: GenSlot, mark = ''): IRequestOp {
    return { request_put: { key: Buffer.from(this.keys.gen(slot)), value: Buffer.from(mark) } };
  }
}

function configOf(snapshot: StoreSnapshot): UserConfig {
  const lines = new Map<string, string>();
  for (const [id, entry] of snapshot.entries)
    if (!id.startsWith('shadow/')) lines.set(id, entry.value);
  const { config } = entriesToConfig(lines);
  DEFAULT_ACCESS_BACKEND.initUserConfig(config);
  return config;
}
