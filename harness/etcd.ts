/**
 * A real etcd cluster for tests, benchmarks and the demo: Debian's
 * `etcd-server` binary, three members by default, on loopback with random
 * free ports (or on given addresses, each member optionally inside a network
 * namespace), temporary data directories, every member killed at the end.
 * Readiness is the member's own "serving client traffic" log line. With
 * `tls`, clients must speak https with a certificate of a throwaway CA the
 * helper makes (peer traffic stays plain); enableEtcdAuth() then turns on
 * etcd's users and roles.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Etcd3, type IOptions } from 'etcd3';
import { withoutIpServerName } from '../src/cluster/client.js';
import { type CertificatePair, makeTestCa, type TestCa } from './certificates.js';
import { freePorts } from './ports.js';

export const ETCD_BINARY = process.env.ETCD_BINARY ?? 'etcd';

/** Why etcd cannot run here, or null when it can. */
export function etcdUnavailable(): string | null {
  const probe = spawnSync(ETCD_BINARY, ['--version'], { encoding: 'utf8' });
  if (probe.error) return `${ETCD_BINARY} not found (.ci/run installs Debian's etcd-server)`;
  return probe.status === 0 ? null : `${ETCD_BINARY} --version failed: ${probe.stderr}`;
}

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  /** The running process, or null while stopped. */
  process: ChildProcess | null;
  pid(): number;
  /** Sends a signal to the member (SIGKILL, SIGSTOP, SIGCONT). */
  signal(signal: NodeJS.Signals): void;
  /** Starts a stopped or killed member again on its data directory. */
  restart(): Promise<void>;
}

export interface EtcdCluster {
  members: EtcdMember[];
  endpoints: string[];
  /** With the `tls` option: the CA the members trust, and a client pair it signed. */
  tls: { ca: TestCa; client: CertificatePair } | null;
  /** Set by enableEtcdAuth(): clientOptions() then logs in as root. */
  rootPassword: string | null;
  /** Options for an etcd3 client on every member (TLS and, once enabled, root's password). */
  clientOptions(): IOptions;
  stop(): Promise<void>;
}

export interface EtcdClusterOptions {
  size?: number;
  /** One listen address per member (default 127.0.0.1 for all, with random ports). */
  addresses?: string[];
  /** One network namespace per member to run it in (`ip netns exec`). */
  netns?: string[];
  /** etcd's raft heartbeat and election timeout, ms (defaults 100 / 1000). */
  heartbeatMs?: number;
  electionMs?: number;
  /**
   * Client TLS: https client URLs, `--client-cert-auth` with a CA made for
   * the cluster (a client needs a certificate it signed). Peers stay plain.
   */
  tls?: boolean;
  /** More etcd flags for every member (e.g. a benchmark's larger quotas). */
  extraArgs?: string[];
}

function clientCredentials(caFile: string, pair: CertificatePair): IOptions['credentials'] {
  return {
    rootCertificate: readFileSync(caFile),
    certChain: readFileSync(pair.cert),
    privateKey: readFileSync(pair.key),
  };
}

export interface EtcdUser {
  name: string;
  password: string;
  /** Read and write on every key under this prefix (a role `<name>-rw`). */
  prefix: string;
}

/**
 * Turns on etcd's authentication as an operator would: a `root` user with
 * the root role and `rootPassword`, the given users each with a role for
 * their prefix, then `auth enable`. Afterwards clientOptions() logs in as root.
 */
export async function enableEtcdAuth(
  cluster: EtcdCluster,
  rootPassword: string,
  users: EtcdUser[] = [],
): Promise<void> {
  const client = withoutIpServerName(new Etcd3(cluster.clientOptions()));
  try {
    await client.user('root').create(rootPassword);
    await client.user('root').addRole('root');
    for (const user of users) {
      const role = await client.role(`${user.name}-rw`).create();
      await role.grant({ permission: 'Readwrite', range: client.range({ prefix: user.prefix }) });
      await client.user(user.name).create(user.password);
      await client.user(user.name).addRole(role);
    }
    await client.auth.authEnable();
  } finally {
    client.close();
  }
  cluster.rootPassword = rootPassword;
}

export async function startEtcdCluster(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const size = options.size ?? 3;
  const root = mkdtempSync(path.join(tmpdir(), 'token-shadow-etcd-'));
  const addresses = options.addresses ?? Array.from({ length: size }, () => '127.0.0.1');
  const fixedPorts = options.addresses !== undefined;
  const ca = options.tls ? await makeTestCa(root, 'etcd-ca') : null;
  const tls = ca ? { ca, client: await ca.client('token-shadow-tests') } : null;
  const scheme = tls ? 'https' : 'http';
  const specs: Array<{ name: string; client: string; peer: string; dir: string; ns?: string }> = [];
  // Every member's two ports at once, so that no two of them are the same.
  const ports = fixedPorts ? [] : await freePorts(2 * size);
  for (let i = 0; i < size; i++) {
    const host = addresses[i] ?? '127.0.0.1';
    const clientPort = fixedPorts ? 2379 : (ports[2 * i] as number);
    const peerPort = fixedPorts ? 2380 : (ports[2 * i + 1] as number);
    const ns = options.netns?.[i];
    specs.push({
      name: `m${i + 1}`,
      client: `${scheme}://${host}:${clientPort}`,
      peer: `http://${host}:${peerPort}`,
      dir: path.join(root, `m${i + 1}`),
      ...(ns === undefined ? {} : { ns }),
    });
  }
  const initialCluster = specs.map((s) => `${s.name}=${s.peer}`).join(',');
  const members: EtcdMember[] = [];
  const launch = async (spec: (typeof specs)[number], state: 'new' | 'existing') => {
    const args = [
      '--name',
      spec.name,
      '--data-dir',
      spec.dir,
      '--listen-client-urls',
      spec.client,
      '--advertise-client-urls',
      spec.client,
      '--listen-peer-urls',
      spec.peer,
      '--initial-advertise-peer-urls',
      spec.peer,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-state',
      state,
      '--initial-cluster-token',
      path.basename(root),
      '--heartbeat-interval',
      String(options.heartbeatMs ?? 100),
      '--election-timeout',
      String(options.electionMs ?? 1000),
      // As deploy/README.md asks (etcd 3.5's default): a member cut off from the others does not
      // inflate its term, so one that comes back rejoins the leader it had instead of forcing an
      // election on the majority (1-2 s more after two members were frozen).
      '--pre-vote',
      ...(ca
        ? [
            '--cert-file',
            ca.server.cert,
            '--key-file',
            ca.server.key,
            '--trusted-ca-file',
            ca.caFile,
            '--client-cert-auth',
          ]
        : []),
      ...(options.extraArgs ?? []),
      '--logger',
      'zap',
      '--log-outputs',
      'stderr',
    ];
    const [command, argv] =
      spec.ns === undefined
        ? [ETCD_BINARY, args]
        : ['ip', ['netns', 'exec', spec.ns, ETCD_BINARY, ...args]];
    const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    const ready = new Promise<void>((resolve, reject) => {
      let tail = '';
      createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
        tail = `${tail}\n${line}`.slice(-2000);
        if (/ready to serve client requests|serving client traffic/.test(line)) resolve();
      });
      child.once('exit', (code, signal) =>
        reject(new Error(`etcd ${spec.name} exited (${code ?? signal}) before ready:${tail}`)),
      );
    });
    return { child, ready };
  };
  const started = await Promise.all(specs.map((spec) => launch(spec, 'new')));
  specs.forEach((spec, i) => {
    const member: EtcdMember = {
      name: spec.name,
      clientUrl: spec.client,
      peerUrl: spec.peer,
      dataDir: spec.dir,
      process: started[i]?.child ?? null,
      pid() {
        const pid = member.process?.pid;
        if (pid === undefined) throw new Error(`etcd ${spec.name} is not running`);
        return pid;
      },
      signal(signal) {
        member.process?.kill(signal);
        if (signal === 'SIGKILL') member.process = null;
      },
      async restart() {
        if (member.process !== null) {
          const proc = member.process;
          proc.kill('SIGKILL');
          if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
        }
        const again = await launch(spec, 'existing');
        member.process = again.child;
        await again.ready;
      },
    };
    members.push(member);
  });
  try {
    await Promise.all(started.map((s) => s.ready));
  } catch (error) {
    for (const s of started) s.child.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
  const endpoints = specs.map((s) => s.client);
  const cluster: EtcdCluster = {
    members,
    endpoints,
    tls,
    rootPassword: null,
    clientOptions() {
      return {
        hosts: endpoints,
        ...(tls ? { credentials: clientCredentials(tls.ca.caFile, tls.client) } : {}),
        ...(cluster.rootPassword === null
          ? {}
          : { auth: { username: 'root', password: cluster.rootPassword } }),
      };
    },
    async stop() {
      await Promise.all(
        members.map(async (m) => {
          const proc = m.process;
          if (proc === null) return;
          proc.kill('SIGCONT');
          proc.kill('SIGKILL');
          if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
          m.process = null;
        }),
      );
      rmSync(root, { recursive: true, force: true });
    },
  };
  return cluster;
}
