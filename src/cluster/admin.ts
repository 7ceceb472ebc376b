/**
 * Operating a cluster: moving a single host's files into etcd (`tokenctl
 * cluster init`) and the cluster's state as etcd sees it (`tokenctl cluster
 * status`). The move claims the empty store with one transaction, writes the
 * entries in batches under etcd's per-transaction limit, then reads all back
 * and compares: nothing is lost, or the command says so.
 */
import type { Etcd3, ICompare, IRequestOp } from 'etcd3';
import type { UserConfig } from '../config/types.js';
import { tokenLine } from '../config/write.js';
import { ClusterError } from '../errors.js';
import { type FenceState, fenceRemainingUs, fenceState } from '../generations/fence.js';
import type { GenerationPage } from '../generations/page.js';
import { previousSecretId } from '../ids.js';
import { entryOf } from '../store/interop.js';
import type { TokenRow } from '../store/token-database.js';
import { retrying } from './client.js';
import { configToEntries } from './entries.js';
import { ClusterKeys, CONFIG_KINDS } from './keys.js';
import { EtcdStore, prefixEnd } from './store.js';

/** etcd's default --max-txn-ops is 128; stay below it. */
const BATCH = 100;

export interface MoveSummary {
  entries: number;
  secrets: number;
  revision: number;
}

/**
 * Writes `config` and `secrets` (token id -> hash) into an empty cluster
 * store. ClusterError('conflict') when the store already holds data. With
 * `tokens` (a token database's rows), the tokens and their secrets come from
 * them, streamed, and `config` gives the rest.
 */
export async function moveIntoEtcd(
  client: Etcd3,
  keys: ClusterKeys,
  config: UserConfig,
  secrets: ReadonlyMap<string, string>,
  deadlineMs: number,
  tokens?: Iterable<TokenRow>,
): Promise<MoveSummary> {
  const gens = [keys.gen('USER_AND_ACL'), keys.gen('TOKEN_SHADOW')].map((k) => Buffer.from(k));
  const claim = await retrying('claiming the store', { deadlineMs }, () =>
    client.kv.txn({
      // A range compare (etcd's Compare.range_end, which the client's typings lack):
      // every key under data/ must be absent.
      compare: [
        {
          key: Buffer.from(keys.data),
          range_end: prefixEnd(keys.data),
          target: 'Version',
          result: 'Equal',
          version: 0,
        } as ICompare,
      ],
      success: gens.map((key) => ({ request_put: { key, value: Buffer.from('') } })),
      failure: [],
    }),
  );
  if (!claim.succeeded) {
    throw new ClusterError(
      'conflict',
      `the cluster store ${keys.data} already holds data: use --join to add this host to it`,
    );
  }
  const wanted = new Map<string, string>();
  for (const [id, text] of configToEntries(config, { tokens: tokens === undefined })) {
    wanted.set(id, text);
  }
  for (const [tokenid, hash] of secrets) wanted.set(`shadow/${tokenid}`, hash);
  let batch: IRequestOp[] = [];
  const flush = async () => {
    // Each batch bumps both gen keys, so agents already watching republish.
    const bump = gens.map((key) => ({ request_put: { key, value: Buffer.from('') } }));
    const success = [...batch, ...bump];
    batch = [];
    await retrying('writing entries', { deadlineMs }, () =>
      client.kv.txn({ compare: [], success, failure: [] }),
    );
  };
  const put = async (id: string, value: string) => {
    batch.push({
      request_put: { key: Buffer.from(`${keys.data}${id}`), value: Buffer.from(value) },
    });
    if (batch.length >= BATCH) await flush();
  };
  for (const [id, value] of wanted) await put(id, value);
  const moved = { tokens: 0, secrets: 0 };
  for (const row of tokens ?? []) {
    await put(`token/${row.id}`, tokenLine(row.id, entryOf(row)));
    moved.tokens++;
    for (const [id, hash] of [
      [row.id, row.hash],
      [previousSecretId(row.id), row.previousHash ?? ''],
    ] as const) {
      if (hash === '') continue;
      await put(`shadow/${id}`, hash);
      moved.secrets++;
    }
  }
  if (batch.length > 0) await flush();
  const store = new EtcdStore(client, keys, { deadlineMs });
  const stored = await store.snapshot(
    tokens === undefined ? undefined : CONFIG_KINDS.filter((kind) => kind !== 'token'),
  );
  for (const [id, value] of wanted) {
    if (stored.entries.get(id)?.value !== value) {
      throw new ClusterError('conflict', `entry ${id.split('/')[0]} did not arrive intact in etcd`);
    }
  }
  // The tokens, too many to read back at once: their numbers must match.
  if (tokens !== undefined) {
    for (const [kind, count] of [
      ['token', moved.tokens],
      ['shadow', moved.secrets],
    ] as const) {
      const prefix = Buffer.from(`${keys.data}${kind}/`);
      const response = await retrying('counting entries', { deadlineMs }, () =>
        client.kv.range({ key: prefix, range_end: prefixEnd(prefix.toString()), count_only: true }),
      );
      if (Number(response.count) !== count) {
        throw new ClusterError('conflict', `${kind} entries did not all arrive in etcd`);
      }
    }
  }
  return {
    entries: wanted.size - secrets.size + moved.tokens,
    secrets: secrets.size + moved.secrets,
    revision: stored.revision,
  };
}

export interface HostState {
  host: string;
  /** Registered with a live lease right now. */
  live: boolean;
  ackedRevision: number | null;
  /** Data revisions it has not acked yet. */
  behind: number | null;
  /** What is left of its lease, ms (0 when gone). */
  leaseRemainingMs: number;
  pid: number | null;
}

export interface ClusterState {
  cluster: string;
  /** The latest revision that changed the shared store. */
  dataRevision: number;
  hosts: HostState[];
}

export async function readClusterState(
  client: Etcd3,
  keys: ClusterKeys,
  cluster: string,
  deadlineMs: number,
): Promise<ClusterState> {
  const prefixes = [keys.hosts, keys.acks, `${keys.data}gen/`];
  const response = await retrying('reading the cluster', { deadlineMs }, () =>
    client.kv.txn({
      compare: [],
      success: prefixes.map((p) => ({
        request_range: { key: Buffer.from(p), range_end: prefixEnd(p) },
      })),
      failure: [],
    }),
  );
  const [hostKvs, ackKvs, genKvs] = response.responses.map((r) => r.response_range?.kvs ?? []);
  const dataRevision = Math.max(0, ...(genKvs ?? []).map((kv) => Number(kv.mod_revision)));
  const names = new Set<string>();
  const registered = new Map<string, { lease: string; pid: number | null }>();
  for (const kv of hostKvs ?? []) {
    const host = kv.key.toString().slice(keys.hosts.length);
    names.add(host);
    let value: { lease?: unknown; pid?: unknown } = {};
    try {
      value = JSON.parse(kv.value.toString());
    } catch {
      // an unreadable value still counts as registered
    }
    registered.set(host, {
      lease: String(kv.lease),
      pid: typeof value.pid === 'number' ? value.pid : null,
    });
  }
  const acks = new Map<string, number>();
  for (const kv of ackKvs ?? []) {
    const host = kv.key.toString().slice(keys.acks.length);
    names.add(host);
    acks.set(host, Number(kv.value.toString()));
  }
  const hosts: HostState[] = [];
  for (const host of [...names].sort()) {
    const entry = registered.get(host);
    // etcd answers whole seconds left (0: under one), -1 once the lease is gone.
    let ttlSeconds = -1;
    if (entry) {
      const ttl = await retrying('reading a lease', { deadlineMs }, () =>
        client.leaseClient.leaseTimeToLive({ ID: entry.lease }),
      );
      ttlSeconds = Number(ttl.TTL);
    }
    const leaseRemainingMs = Math.max(0, ttlSeconds * 1000);
    const acked = acks.get(host) ?? null;
    hosts.push({
      host,
      live: ttlSeconds >= 0,
      ackedRevision: acked,
      behind: acked === null ? null : Math.max(0, dataRevision - acked),
      leaseRemainingMs,
      pid: entry?.pid ?? null,
    });
  }
  return { cluster, dataRevision, hosts };
}

/** One host as the cluster view shows it (GET /cluster/token-shadow, the console). */
export interface HostView extends HostState {
  /**
   * This host: from its page's fence. Another host: fenced once its lease is
   * gone (its agent fences itself within a lease of losing etcd).
   */
  fenced: boolean;
}

export type ClusterView =
  | { mode: 'single-host' }
  | {
      mode: 'multi-host';
      cluster: string;
      host: string;
      dataRevision: number;
      /** This host's fence as its page says: open, fenced, or none (no fence yet). */
      local: { host: string; fence: FenceState; fenceRemainingMs: number | null };
      hosts: HostView[];
    };

/** The cluster as this host sees it: every host's registration, ack and lease, and its own fence. */
export async function readClusterView(
  client: Etcd3,
  settings: { cluster: string; host: string; leaseSeconds: number },
  page: GenerationPage | null,
): Promise<ClusterView> {
  const state = await readClusterState(
    client,
    new ClusterKeys(settings.cluster),
    settings.cluster,
    settings.leaseSeconds * 2000,
  );
  const us = page === null ? null : fenceRemainingUs(page);
  const local = {
    host: settings.host,
    fence: fenceState(page),
    fenceRemainingMs: us === null ? null : Math.round(us / 1000),
  };
  return {
    mode: 'multi-host',
    cluster: state.cluster,
    host: settings.host,
    dataRevision: state.dataRevision,
    local,
    hosts: state.hosts.map((h) => ({
      ...h,
      fenced: h.host === settings.host ? local.fence === 'fenced' : !h.live,
    })),
  };
}
