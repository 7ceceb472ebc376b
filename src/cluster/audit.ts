/**
 * The cluster's audit trail (multi-host mode): each change's record is put
 * under `audit/log/<seq>` in the change's own etcd transaction, so the record
 * and the change are one revision, written once (a retried call whose first
 * attempt committed has nothing left to write, and so no second record), in
 * etcd's order. The transaction compares `audit/head`, so two writers never
 * take the same sequence number: the loser reads again, like any other lost
 * compare. Records chain by hash as the host's trail does (src/audit/trail.ts),
 * and each names the revision of the record before it (`after`), so the chain
 * covers the revisions too; a record's own revision is its key's, which etcd
 * sets and which must equal its create revision (never rewritten).
 *
 * Refusals change nothing and have no transaction: they stay in the host's
 * own trail only, as every change does too (with its revision).
 */
import type { Etcd3, ICompare, IKeyValue, IRequestOp } from 'etcd3';
import { type AuditEvent, type AuditRecord, GENESIS, hashOf } from '../audit/trail.js';
import { AuditError } from '../errors.js';
import { retrying } from './client.js';
import type { ClusterKeys } from './keys.js';
import { prefixEnd } from './store.js';

/** What a writer stamps a change with: the event (outcome ok) and the host it ran on. */
export interface AuditStamp {
  event: Omit<AuditEvent, 'outcome' | 'status' | 'code' | 'revision'>;
  host: string;
}

/** Which of an operation's transactions this was (a token's create is two). */
export type AuditStep = 'config' | 'secret.put' | 'secret.delete';

export interface ClusterAuditRecord extends AuditRecord {
  step: AuditStep;
  /** The revision of the record before (0 for the first): chained by the hash. */
  after: number;
  /** This record's revision, the change's (its key's mod_revision; not in the hash). */
  revision: number;
}

/** `audit/head` as read with the change's snapshot. */
export interface ClusterAuditHead {
  seq: number;
  hash: string;
  /** The head key's mod_revision: the last record's revision; 0 when there is none. */
  revision: number;
}

export const EMPTY_HEAD: ClusterAuditHead = { seq: 0, hash: GENESIS, revision: 0 };

export function auditHeadOf(kv: IKeyValue | undefined): ClusterAuditHead {
  if (kv === undefined) return EMPTY_HEAD;
  const head = JSON.parse(kv.value.toString()) as { seq: number; hash: string };
  return { seq: head.seq, hash: head.hash, revision: Number(kv.mod_revision) };
}

/**
 * The compare and the puts that add `stamp`'s record after `head` to a
 * transaction: the head must not have moved since it was read.
 */
export function auditOps(
  keys: ClusterKeys,
  head: ClusterAuditHead,
  stamp: AuditStamp,
  step: AuditStep,
  now = new Date(),
): { compare: ICompare; ops: IRequestOp[] } {
  const headKey = Buffer.from(keys.auditHead);
  const seq = head.seq + 1;
  const body = {
    seq,
    time: now.toISOString(),
    host: stamp.host,
    ...stamp.event,
    outcome: 'ok' as const,
    step,
    after: head.revision,
    prev: head.hash,
  };
  const hash = hashOf(body);
  return {
    compare:
      head.revision === 0
        ? { key: headKey, target: 'Version', result: 'Equal', version: 0 }
        : { key: headKey, target: 'Mod', result: 'Equal', mod_revision: head.revision },
    ops: [
      {
        request_put: {
          key: Buffer.from(keys.auditRecord(seq)),
          value: Buffer.from(JSON.stringify({ ...body, hash })),
        },
      },
      { request_put: { key: headKey, value: Buffer.from(JSON.stringify({ seq, hash })) } },
    ],
  };
}

interface ReadTrail {
  records: { record: ClusterAuditRecord; line: string; createRevision: number; version: number }[];
  head: ClusterAuditHead;
}

/** Reads and checks the cluster's trail on one client (a command's). */
export class ClusterTrail {
  readonly #client: Etcd3;
  readonly #keys: ClusterKeys;
  readonly #deadlineMs: number;

  constructor(client: Etcd3, keys: ClusterKeys, options: { deadlineMs: number }) {
    this.#client = client;
    this.#keys = keys;
    this.#deadlineMs = options.deadlineMs;
  }

  /** Every record and the head at one revision (one read-only transaction). */
  async #read(): Promise<ReadTrail> {
    const deadline = { deadlineMs: this.#deadlineMs };
    const response = await retrying('reading the audit trail', deadline, () =>
      this.#client.kv.txn({
        compare: [],
        success: [
          {
            request_range: {
              key: Buffer.from(this.#keys.auditLog),
              range_end: prefixEnd(this.#keys.auditLog),
            },
          },
          { request_range: { key: Buffer.from(this.#keys.auditHead) } },
        ],
        failure: [],
      }),
    );
    const [log, head] = response.responses;
    const records = (log?.response_range?.kvs ?? []).map((kv) => {
      const line = kv.value.toString();
      let record: ClusterAuditRecord;
      try {
        record = { ...(JSON.parse(line) as ClusterAuditRecord), revision: Number(kv.mod_revision) };
      } catch (error) {
        throw new AuditError('corrupt', `${kv.key.toString()}: not a record`, { cause: error });
      }
      return {
        record,
        line,
        createRevision: Number(kv.create_revision),
        version: Number(kv.version),
      };
    });
    return { records, head: auditHeadOf(head?.response_range?.kvs[0]) };
  }

  /** Every record, oldest first, each with its revision (the chain is not checked: see verify). */
  async records(): Promise<ClusterAuditRecord[]> {
    return (await this.#read()).records.map((r) => r.record);
  }

  /**
   * Checks the whole chain: each record's hash, its link to the one before
   * (hash, sequence and revision), that etcd never rewrote it, and the head.
   */
  async verify(): Promise<
    | { ok: true; records: number; revision: number }
    | { ok: false; records: number; problem: string }
  > {
    const { records, head } = await this.#read();
    let prev = GENESIS;
    let seq = 0;
    let revision = 0;
    for (const { record, line, createRevision, version } of records) {
      const where = `cluster record ${record.seq} (revision ${record.revision})`;
      const { hash, revision: _own, ...body } = JSON.parse(line) as ClusterAuditRecord;
      if (hashOf(body) !== hash) return { ok: false, records: seq, problem: `${where}: altered` };
      if (version !== 1 || createRevision !== record.revision) {
        return { ok: false, records: seq, problem: `${where}: rewritten after its change` };
      }
      if (record.prev !== prev || record.seq !== seq + 1 || record.after !== revision) {
        return {
          ok: false,
          records: seq,
          problem: `${where}: does not follow seq ${seq}: a record before it was removed or altered`,
        };
      }
      prev = hash;
      seq = record.seq;
      revision = record.revision;
    }
    if (head.seq !== seq || head.hash !== prev || head.revision !== revision) {
      return {
        ok: false,
        records: seq,
        problem: `the trail ends at seq ${seq} but its head says ${head.seq}: records were removed from the end`,
      };
    }
    return { ok: true, records: seq, revision };
  }
}
