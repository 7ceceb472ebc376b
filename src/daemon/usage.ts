/**
 * Last use per token and expiry ahead, wired into the daemons. Workers note
 * uses in memory and report them in batches over the manager's socket; the
 * manager merges them into its ledger and writes `last-used.json` (and, with
 * several hosts, this host's record in etcd, taking in the others'); the manager
 * also logs, once a day, the users and tokens about to expire.
 */
import { ClusterKeys } from '../cluster/keys.js';
import { EtcdStorage } from '../cluster/storage.js';
import { EtcdUsageSink } from '../cluster/usage-sink.js';
import { expiringWithin } from '../config/expiring.js';
import type { UserConfig } from '../config/types.js';
import { splitTokenid } from '../ids.js';
import type { Deployment } from '../service/deployment.js';
import type { StorageMode } from '../service/storage-mode.js';
import { LastUsedFileSink, LastUsedReader, readLastUsed } from '../usage/file.js';
import { LastUsedLedger } from '../usage/ledger.js';
import { type LastUse, lastUseOf, UsageNotes } from '../usage/notes.js';
import { UsageReporter } from '../usage/reporter.js';
import { shownAddress } from '../usage/where.js';
import type { Logger } from './logger.js';
import type { RpcClient } from './rpc.js';

/** The RPC operation a worker's batch travels in; it names no identity and changes no config. */
export const USAGE_REPORT_OP = 'usage.report';

const DAY_MS = 86_400_000;

export function tokenExists(config: UserConfig, tokenid: string): boolean {
  try {
    const [userid, name] = splitTokenid(tokenid);
    return config.users.get(userid)?.tokens.has(name) === true;
  } catch {
    return false;
  }
}

/**
 * The sink of this host's record in etcd, in multi-host mode (null otherwise):
 * through the storage's client, each call bounded by two leases.
 */
function etcdSinkOf(
  mode: StorageMode,
  log: Logger,
  recorded: ReadonlyMap<string, LastUse>,
): EtcdUsageSink | null {
  if (mode.cluster === null || !(mode.storage instanceof EtcdStorage)) return null;
  return new EtcdUsageSink({
    client: mode.storage.client,
    keys: new ClusterKeys(mode.cluster.cluster),
    host: mode.cluster.host,
    deadlineMs: 2 * mode.cluster.leaseSeconds * 1000,
    recorded,
    warn: (fields, message) => log.warn(fields, message),
  });
}

/**
 * The manager's ledger, started from the file (an unreadable file is logged
 * and replaced); in multi-host mode it also keeps this host's record in etcd
 * and takes in the other hosts', and tags its workers' uses with this host's name.
 */
export async function openLedger(
  deployment: Deployment,
  log: Logger,
  mode?: StorageMode,
): Promise<LastUsedLedger> {
  const { settings, users } = deployment;
  const host = mode?.cluster?.host;
  const file = new LastUsedFileSink(settings.lastUsedPath, {
    ...(settings.gid === undefined ? {} : { gid: settings.gid }),
    ...(host === undefined ? {} : { host }),
  });
  const initial = await readLastUsed(settings.lastUsedPath).catch((error: Error) => {
    log.error({ err: error.message }, 'last-used file unreadable: starting a new record');
    return undefined;
  });
  const etcd = mode ? etcdSinkOf(mode, log, initial?.tokens ?? new Map()) : null;
  return new LastUsedLedger({
    sinks: etcd ? [file, etcd] : [file],
    ...(initial ? { initial } : {}),
    ...(host === undefined ? {} : { host }),
    intervalMs: settings.lastUsedIntervalMs,
    known: async () => {
      const config = await users.get();
      return (tokenid) => tokenExists(config, tokenid);
    },
    onError: (error) => log.error({ err: String(error) }, 'last-used write failed'),
  });
}

/** Logs the users and tokens expiring within the window now and then once a day. */
export function watchExpiry(
  deployment: Deployment,
  log: Logger,
  windowSeconds = deployment.settings.expiryWindowSeconds,
): { stop(): void } {
  const check = async () => {
    const now = Math.floor(Date.now() / 1000);
    const config = await deployment.users.get();
    const found = expiringWithin(config, now, windowSeconds, deployment.tokensExpiring);
    const list = (kind: 'user' | 'token') =>
      found.filter((e) => e.kind === kind).map((e) => ({ id: e.id, expire: e.expire }));
    if (found.length === 0) {
      log.info({ windowSeconds }, 'nothing expires soon');
      return;
    }
    log.warn({ windowSeconds, users: list('user'), tokens: list('token') }, 'expiring soon');
  };
  const run = () => {
    check().catch((error) => log.error({ err: String(error) }, 'expiry check failed'));
  };
  run();
  const timer = setInterval(run, DAY_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

export interface WorkerUsage {
  notes: UsageNotes;
  reporter: UsageReporter;
  /** Last use per token for the API's answers: the manager's file, or this worker's newer note. */
  lookup(): Promise<(tokenid: string) => LastUse | undefined>;
}

export function startWorkerUsage(deployment: Deployment, rpc: RpcClient, log: Logger): WorkerUsage {
  const notes = new UsageNotes();
  const reporter = new UsageReporter({
    notes,
    intervalMs: deployment.settings.lastUsedIntervalMs,
    async send(uses) {
      const response = await rpc.call(USAGE_REPORT_OP, '', { uses });
      if (!response.ok) throw new Error(`manager refused the usage report: ${response.message}`);
    },
    onError: (error) => log.warn({ err: String(error) }, 'usage report kept for the next batch'),
  });
  const reader = new LastUsedReader(deployment.settings.lastUsedPath);
  let warned = false;
  return {
    notes,
    reporter,
    async lookup() {
      const record = await reader.read().catch((error: Error) => {
        // The listing still answers, from this worker's notes alone.
        if (!warned) log.warn({ err: error.message }, 'last-used file unreadable');
        warned = true;
        return undefined;
      });
      // This worker's notes are this host's: the file names it (multi-host mode).
      const host = record?.host;
      return (tokenid) => {
        const file = record?.tokens.get(tokenid);
        const mine = notes.lastUse(tokenid);
        if (mine === undefined || (file !== undefined && mine.seconds <= file.seconds)) return file;
        const source = mine.source === undefined ? undefined : shownAddress(mine.source);
        return lastUseOf(mine.seconds, source, host);
      };
    },
  };
}
