/**
 * Where a cluster keeps its state in etcd, all under `/token-shadow/<cluster>/`:
 * `data/` holds the shared store, one key per entry (`shadow/<tokenid>` the
 * hash, `user/`, `token/`, `group/`, `role/`, `acl/` one user.cfg entry each)
 * plus `gen/<slot>`, rewritten in every transaction that changes that slot's
 * file, so its mod_revision is the slot's generation and the latest data
 * revision. `hosts/<host>` lives on the host's lease; `acks/<host>` is the last
 * revision the host published to its page. `usage/<host>` is the host's record
 * of its tokens' last uses (src/cluster/usage-sink.ts). `audit/log/<seq>` is
 * the cluster's audit trail, one record per change written in the change's own
 * transaction, `audit/head` its last sequence and hash (src/cluster/audit.ts). Sync agents watch
 * `data/` only, so neither acks nor usage records wake each other or bump a page.
 */
import { ClusterError, quote } from '../errors.js';

export type EntryKind = 'shadow' | 'user' | 'token' | 'group' | 'role' | 'acl';
export const CONFIG_KINDS: readonly EntryKind[] = ['user', 'token', 'group', 'role', 'acl'];
export type GenSlot = 'USER_AND_ACL' | 'TOKEN_SHADOW';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Cluster and host names: short, printable, safe inside a key. */
export function checkName(what: string, value: string): string {
  if (!NAME.test(value)) {
    throw new ClusterError('not-configured', `invalid ${what} ${quote(value)}: use [A-Za-z0-9._-]`);
  }
  return value;
}

export class ClusterKeys {
  readonly root: string;
  readonly data: string;
  readonly hosts: string;
  readonly acks: string;
  readonly usage: string;
  readonly auditLog: string;
  readonly auditHead: string;
  /** Read (never written) to ask a member whether it answers with a quorum. */
  readonly probe: string;

  constructor(cluster: string) {
    this.root = `/token-shadow/${checkName('cluster name', cluster)}/`;
    this.data = `${this.root}data/`;
    this.hosts = `${this.root}hosts/`;
    this.acks = `${this.root}acks/`;
    this.usage = `${this.root}usage/`;
    this.probe = `${this.root}health`;
    this.auditLog = `${this.root}audit/log/`;
    this.auditHead = `${this.root}audit/head`;
  }

  entry(kind: EntryKind, id: string): string {
    return `${this.data}${kind}/${id}`;
  }

  gen(slot: GenSlot): string {
    return `${this.data}gen/${slot}`;
  }

  host(name: string): string {
    return `${this.hosts}${name}`;
  }

  ack(name: string): string {
    return `${this.acks}${name}`;
  }

  /** Zero-padded, so etcd's key order is the sequence's. */
  auditRecord(seq: number): string {
    return `${this.auditLog}${String(seq).padStart(12, '0')}`;
  }

  usageOf(name: string): string {
    return `${this.usage}${name}`;
  }

  /** A data key split into kind and id; null for gen/ and anything unknown. */
  parseData(key: string): { kind: EntryKind; id: string } | null {
    if (!key.startsWith(this.data)) return null;
    const rest = key.slice(this.data.length);
    const slash = rest.indexOf('/');
    const kind = rest.slice(0, slash) as EntryKind;
    if (slash < 0 || !(kind === 'shadow' || CONFIG_KINDS.includes(kind))) return null;
    return { kind, id: rest.slice(slash + 1) };
  }
}

/** Which page slot a kind of entry belongs to. */
export function slotOf(kind: EntryKind): GenSlot {
  return kind === 'shadow' ? 'TOKEN_SHADOW' : 'USER_AND_ACL';
}
