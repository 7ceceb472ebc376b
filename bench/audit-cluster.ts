/**
 * The cluster audit trail's cost (issue 28): commit latency of a user.cfg
 * change on a real 3-member etcd (loopback) without and with the record in
 * the same transaction, one writer and several concurrent writers (which
 * now all compare the trail's head, so a lost compare reads and commits
 * again), and the compare retries that costs; the same for token secrets of
 * different tokens (which never conflicted before the trail: now they do,
 * and with the record each also reads the head first). The store only (no hosts to
 * ack), so the figures are the transaction's own.
 *
 *   npx tsc -p . && node dist/bench/audit-cluster.js [--changes N]
 */
import { performance } from 'node:perf_hooks';
import { etcdUnavailable, startEtcdCluster } from '../harness/etcd.js';
import type { AuditStamp } from '../src/cluster/audit.js';
import { createEtcdClient } from '../src/cluster/client.js';
import { ClusterKeys } from '../src/cluster/keys.js';
import { resolveClusterSettings } from '../src/cluster/settings.js';
import { EtcdStore } from '../src/cluster/store.js';
import * as userConfig from '../src/config/users.js';
import { machineLine, median, percentile } from './lib/stats.js';
import { printTable } from './lib/table.js';

const flag = process.argv.indexOf('--changes');
const CHANGES = flag > 0 ? Number(process.argv[flag + 1]) : 200;

const stamp: AuditStamp = {
  host: 'bench',
  event: {
    actor: 'root@pam!bench',
    source: '127.0.0.1',
    op: 'user.update',
    target: 'u@pve',
    changes: { fields: { comment: 'a comment of ordinary length' } },
  },
};

interface Timed {
  /** Each change's latency, ms. */
  times: number[];
  wallMs: number;
}

/** CHANGES changes by `writers` concurrent writers, each waiting for its own before the next. */
async function timeWriters(
  writers: number,
  change: (writer: number, i: number) => Promise<unknown>,
): Promise<Timed> {
  const times: number[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = w; i < CHANGES; i += writers) {
        const t = performance.now();
        await change(w, i);
        times.push(performance.now() - t);
      }
    }),
  );
  return { times, wallMs: performance.now() - started };
}

function row(
  change: string,
  writers: number,
  audited: boolean,
  { times, wallMs }: Timed,
  attempts: string,
): (string | number)[] {
  return [
    change,
    writers,
    audited ? 'with record' : 'without',
    median(times).toFixed(2),
    percentile(times, 99).toFixed(2),
    Math.round((CHANGES / wallMs) * 1000),
    attempts,
  ];
}

async function main(): Promise<void> {
  const why = etcdUnavailable();
  if (why) {
    process.stdout.write(`skipped: ${why}\n`);
    return;
  }
  const etcd = await startEtcdCluster();
  const client = createEtcdClient(resolveClusterSettings({ endpoints: etcd.endpoints }));
  const rows: (string | number)[][] = [];
  try {
    for (const writers of [1, 4]) {
      for (const audited of [false, true]) {
        // Secrets of different tokens never conflicted before; with the record they share the head.
        const keys = new ClusterKeys(`bench-${writers}-${audited ? 'a' : 'n'}`);
        const audit = audited ? stamp : undefined;
        const secrets = new EtcdStore(client, keys, { deadlineMs: 10_000 });
        const secretPuts = await timeWriters(writers, (w, i) =>
          secrets.putSecretHash(`u@pve!t${w}`, `hash-${i}`, audit),
        );
        rows.push(row('secret put', writers, audited, secretPuts, '-'));
        const store = new EtcdStore(client, keys, { deadlineMs: 10_000 });
        await store.mutateConfig((c) => userConfig.addUser(c, 'u@pve', {}));
        let attempts = 0;
        const changes = await timeWriters(writers, (_, i) =>
          store.mutateConfig(
            (c) => {
              attempts++;
              userConfig.updateUser(c, 'u@pve', { comment: `change ${i}` });
            },
            undefined,
            audit,
          ),
        );
        rows.push(
          row('user.cfg change', writers, audited, changes, (attempts / CHANGES).toFixed(2)),
        );
      }
    }
  } finally {
    client.close();
    await etcd.stop();
  }
  process.stdout.write(`${machineLine()}\n`);
  printTable(
    `One change per transaction, ${CHANGES} changes, 3-member etcd on loopback (store only, no host acks)`,
    ['change', 'writers', 'audit', 'p50 ms', 'p99 ms', 'changes/s', 'attempts per change'],
    rows,
  );
}

await main();
