/**
 * Which storage a deployment's writers use: the files (single-host mode, the
 * default) or etcd when `cluster.json` is in the configuration directory. The
 * manager of a multi-host deployment also runs the sync agent, which keeps
 * this host's files, page and fence in step with etcd.
 */
import { type AgentLog, SyncAgent } from '../cluster/agent.js';
import { ClusterKeys } from '../cluster/keys.js';
import { type ClusterSettings, loadClusterSettings } from '../cluster/settings.js';
import { EtcdStorage } from '../cluster/storage.js';
import { tlsProblemOfAll } from '../cluster/tls-probe.js';
import { ClusterError } from '../errors.js';
import { fenceWriter } from '../generations/fence.js';
import type { GenerationPage } from '../generations/page.js';
import { Slot } from '../generations/slots.js';
import { DatabaseStorage } from './database-storage.js';
import type { Deployment } from './deployment.js';
import { type AccessStorage, FileStorage } from './storage.js';

export interface StorageMode {
  storage: AccessStorage;
  /** The cluster settings, null in single-host mode. */
  cluster: ClusterSettings | null;
  agent: SyncAgent | null;
  close(): Promise<void>;
}

/**
 * The storage for `role`. The manager in multi-host mode starts the agent and
 * waits (at most three leases) for the first sync; past that it serves anyway,
 * fenced, and the agent keeps trying.
 */
export async function openStorageMode(
  deployment: Deployment,
  role: 'manager' | 'cli',
  log?: AgentLog,
): Promise<StorageMode> {
  const cluster = loadClusterSettings(deployment.settings.configDir);
  const page = deployment.page;
  if (cluster === null) {
    // Back from multi-host mode: a leftover fence would refuse every token.
    if (role === 'manager' && page !== null && page.load(Slot.FENCE) !== 0) {
      fenceWriter.remove(page);
    }
    const store = deployment.tokenStore;
    return {
      storage:
        store === null
          ? new FileStorage(deployment.users, deployment.shadow)
          : new DatabaseStorage({
              users: deployment.users,
              store,
              pool: deployment.pool,
              secretFormat: deployment.settings.secretFormat,
            }),
      cluster: null,
      agent: null,
      close: async () => undefined,
    };
  }
  // With a token database, changes are computed on this host's copy of the store (the agent's).
  const tokens = deployment.tokenStore;
  if (page === null && (role === 'manager' || tokens !== null)) {
    throw new ClusterError(
      'not-configured',
      'multi-host mode needs the generation page (it carries the fence and what the host applied)',
    );
  }
  const storage = new EtcdStorage(cluster, deployment.pool, {
    onConfirmed: (timings) => log?.info({ ...timings }, 'cluster change confirmed'),
    secretFormat: deployment.settings.secretFormat,
    ...(tokens === null
      ? {}
      : {
          local: {
            users: deployment.users,
            rows: { lookup: (id) => tokens.get(id), rowsOf: (userid) => tokens.rowsOf(userid) },
            page: page as GenerationPage,
          },
        }),
  });
  if (role === 'cli') {
    return { storage, cluster, agent: null, close: () => storage.close() };
  }
  const agent = new SyncAgent({
    settings: cluster,
    keys: new ClusterKeys(cluster.cluster),
    page: page as GenerationPage,
    userCfgPath: deployment.settings.userCfgPath,
    shadowPath: deployment.settings.shadowPath,
    gid: deployment.settings.gid,
    log: log ?? { info: () => undefined, warn: () => undefined },
    tokens: tokens ?? undefined,
  });
  const synced = agent.start().then(() => true);
  const waited = await Promise.race([
    synced,
    new Promise<false>((resolve) =>
      setTimeout(() => resolve(false), cluster.leaseSeconds * 3000).unref(),
    ),
  ]);
  if (!waited) {
    // gRPC words every failed handshake alike: say which TLS setting is wrong, if one is.
    const tlsProblem = await tlsProblemOfAll(cluster, cluster.callTimeoutMs);
    log?.warn(
      { host: cluster.host, ...(tlsProblem ? { tlsProblem } : {}) },
      'cluster not reachable yet: serving fenced',
    );
  }
  return {
    storage,
    cluster,
    agent,
    async close() {
      await agent.stop();
      await storage.close();
    },
  };
}
