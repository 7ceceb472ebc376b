/**
 * The thread a token replica's resynchronisation runs in (TokenReplica.resync):
 * its own connections to etcd and to the token database, each page one
 * transaction, all under the database's lock. It announces nothing: the
 * agent bumps TOKEN_SHADOW once it answered.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { withFileLock } from '../files/lock.js';
import { TokenDatabaseWriter } from '../store/token-database.js';
import { EtcdMembers } from './client.js';
import { ClusterKeys } from './keys.js';
import { EtcdStore } from './store.js';
import { type ResyncJob, resyncPages } from './token-replica.js';

const job = workerData as ResyncJob;
const keys = new ClusterKeys(job.settings.cluster);
const members = new EtcdMembers(job.settings, keys.probe);
const store = new EtcdStore(members, keys, { deadlineMs: job.settings.leaseSeconds * 1000 });
const writer = new TokenDatabaseWriter(job.path, job.gid === undefined ? {} : { gid: job.gid });
try {
  // One hold of the database's lock for the whole read (the host is fenced meanwhile, and
  // only the agent writes its copy): no lock file made and removed per page.
  const outcome = await withFileLock(job.path, () =>
    resyncPages(store, job.revision, job.users, async (from, to, rows) =>
      writer.resyncRange(from, to, rows),
    ),
  );
  parentPort?.postMessage(outcome);
} finally {
  writer.close();
  members.close();
}
