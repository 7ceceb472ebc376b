/**
 * tokenctl run in the test's own process (its `main`, output captured) on a
 * deployment directory laid out as the daemon harness makes it (etc/ and
 * run/ below it); what the cluster tests set up with it (hosts joined into a
 * cluster, tokens); and the one request they judge a host by.
 */
import path from 'node:path';
import { main } from '../src/cli/tokenctl.js';
import { type Deployment, startDeployment } from './daemons.js';

export interface TokenctlRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function tokenctlIn(dir: string, ...args: string[]): Promise<TokenctlRun> {
  let stdout = '';
  let stderr = '';
  const code = await main(
    ['--config-dir', path.join(dir, 'etc'), '--runtime-dir', path.join(dir, 'run'), ...args],
    {
      stdout: (text) => {
        stdout += text;
      },
      stderr: (text) => {
        stderr += text;
      },
    },
  );
  return { code, stdout, stderr };
}

/** tokenctlIn, throwing with tokenctl's stderr unless it exited 0. */
async function tokenctlOk(dir: string, ...args: string[]): Promise<TokenctlRun> {
  const run = await tokenctlIn(dir, ...args);
  if (run.code !== 0) throw new Error(`tokenctl ${args.join(' ')}: ${run.code}: ${run.stderr}`);
  return run;
}

/** `tokenctl token add <tokenid> <args>` on `dir`: the new secret and its Authorization header. */
export async function addTokenIn(
  dir: string,
  tokenid: string,
  ...args: string[]
): Promise<{ secret: string; header: string }> {
  const made = await tokenctlOk(dir, '--output', 'json', 'token', 'add', tokenid, ...args);
  const secret = (JSON.parse(made.stdout) as { value: string }).value;
  return { secret, header: `PVEAPIToken=${tokenid}=${secret}` };
}

/**
 * Makes each directory a host of cluster `name` on etcd at `endpoints` with
 * `tokenctl cluster init` (the first creates the cluster unless `join`, the others join;
 * `tokenDatabase` hosts move to `access.db` before),
 * then starts each host's manager, adds it to `running` (for the caller to
 * stop, also when a later one fails) and waits until it is in sync.
 */
export async function startClusterHosts(
  endpoints: string[],
  name: string,
  hosts: Array<{ host: string; dir: string; tokenDatabase?: boolean; join?: boolean }>,
  running: Deployment[],
): Promise<Deployment[]> {
  for (const [i, { host, dir, tokenDatabase, join }] of hosts.entries()) {
    // A host whose tokens live in its token database (what it has moves there first).
    if (tokenDatabase) await tokenctlOk(dir, 'database', 'migrate');
    const init = ['cluster', 'init', '--endpoints', endpoints.join(','), '--name', name];
    await tokenctlOk(dir, ...init, '--host', host, ...(i > 0 || join ? ['--join'] : []));
  }
  const started: Deployment[] = [];
  for (const { dir } of hosts) {
    const deployment = await startDeployment(dir);
    running.push(deployment);
    started.push(deployment);
    await deployment.managerLog.waitFor((l) => l.msg === 'cluster in sync');
  }
  return started;
}

/** The HTTP status a host's API answers `header` with (200, 401, or 503 when fenced). */
export async function versionStatus(api: { url: string }, header: string): Promise<number> {
  const reply = await fetch(`${api.url}/version`, { headers: { authorization: header } });
  await reply.arrayBuffer();
  return reply.status;
}
