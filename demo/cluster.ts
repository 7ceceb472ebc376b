/**
 * `npm run demo:cluster`: multi-host mode on this machine, for a newcomer to
 * see it work. Starts a 3-member etcd (Debian's etcd-server) and three hosts
 * (a manager with its sync agent and an API each, on loopback), makes a
 * token on host a, shows it accepted on a, b and c, revokes it on a, and
 * shows it refused on all three the moment the revoke returned. Then the
 * cluster as `tokenctl cluster status` sees it. Everything is stopped and
 * removed at the end.
 */
import { performance } from 'node:perf_hooks';
import { etcdUnavailable } from '../harness/etcd.js';
import { type Host, startMultiHost } from '../harness/multihost.js';
import { makeToken } from '../harness/revoke-scenarios.js';
import { readClusterState } from '../src/cluster/admin.js';
import { ClusterKeys } from '../src/cluster/keys.js';

async function status(host: Host, header: string): Promise<string> {
  const reply = await fetch(`${host.api.url}/version`, { headers: { authorization: header } });
  await reply.arrayBuffer();
  return `${reply.status} ${reply.status === 200 ? 'accepted' : 'refused'}`;
}

async function main(): Promise<void> {
  const missing = etcdUnavailable();
  if (missing) throw new Error(`${missing}: apt-get install etcd-server`);
  console.log('starting a 3-member etcd and hosts a, b, c (manager + API each) ...');
  const cluster = await startMultiHost({ netns: false, logs: 'file', workers: 1 });
  try {
    console.log(`etcd members: ${cluster.etcd.endpoints.join(' ')}`);
    for (const h of cluster.hosts)
      console.log(`host ${h.name}: API ${h.api.url}, files in ${h.dir}`);
    const [a] = cluster.hosts as [Host];
    const token = await makeToken(a);
    console.log(`\ntoken root@pam!${token.name} made on host a (its secret is shown once):`);
    console.log(`  Authorization: ${token.header}\n`);
    for (const h of cluster.hosts)
      console.log(`  GET ${h.name}/version -> ${await status(h, token.header)}`);
    const started = performance.now();
    const answer = await a.deployment.asRoot('token.delete', {
      userid: 'root@pam',
      tokenName: token.name,
    });
    const ms = performance.now() - started;
    if (!answer.ok) throw new Error(`revoke failed: ${answer.message}`);
    console.log(
      `\nrevoked on host a in ${ms.toFixed(1)} ms (returned once every host had applied it):`,
    );
    for (const h of cluster.hosts)
      console.log(`  GET ${h.name}/version -> ${await status(h, token.header)}`);
    const state = await readClusterState(cluster.client, new ClusterKeys('test'), 'test', 5000);
    console.log(`\ncluster status (data revision ${state.dataRevision}):`);
    for (const h of state.hosts) {
      console.log(
        `  ${h.host}: ${h.live ? 'live' : 'gone'}, acked ${h.ackedRevision}, lease ${(h.leaseRemainingMs / 1000).toFixed(0)} s left`,
      );
    }
  } finally {
    console.log('\nstopping ...');
    await cluster.stop();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`demo:cluster: ${error instanceof Error ? error.message : error}`);
    process.exit(1);
  },
);
