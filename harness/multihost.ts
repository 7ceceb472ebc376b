/**
 * Several API hosts on one machine, for the multi-host tests, the benchmark
 * and the demo: a real 3-member etcd and, per host, a manager (with its sync
 * agent) and an API cluster on their own directories. With `netns`, every
 * host and every etcd member live in a network namespace of their own, joined
 * by veth pairs to a bridge the harness makes, so a link can be cut (`ip link
 * set ... down`) while the processes behind it keep running: a host's machine
 * (the host and its member, as deployed: Host.link) or a member alone
 * (MultiHost.memberLink); without it, everything is on loopback.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { type Api, type Deployment, startDeployment } from './daemons.js';
import { type EtcdCluster, startEtcdCluster } from './etcd.js';

const harnessDir = fileURLToPath(new URL('./', import.meta.url));

/** Why network namespaces cannot be made here, or null when they can (probed once). */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const name = `tsprobe${randomBytes(3).toString('hex')}`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (add.error) return `ip not usable: ${add.error.message}`;
  if (add.status !== 0) return `the kernel refused a network namespace: ${add.stderr.trim()}`;
  const link = spawnSync('ip', ['link', 'add', `${name}b`, 'type', 'bridge'], { encoding: 'utf8' });
  spawnSync('ip', ['link', 'del', `${name}b`]);
  spawnSync('ip', ['netns', 'del', name]);
  if (link.status !== 0) return `the kernel refused a bridge: ${link.stderr.trim()}`;
  return null;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface Host {
  name: string;
  dir: string;
  /** Network namespace (netns mode) or null. */
  netns: string | null;
  deployment: Deployment;
  api: Api;
  /** Cuts or restores the link of this host's machine, its etcd member's too (netns mode only). */
  link(up: boolean): void;
  /** Stops and starts the manager again (after its agent was killed, for instance). */
  restartManager(): Promise<void>;
}

export interface MultiHost {
  etcd: EtcdCluster;
  hosts: Host[];
  leaseSeconds: number;
  /** A client on every member, for the harness's own looks (leader, compaction). */
  client: Etcd3;
  /** The index of the member that leads now. */
  leader(): Promise<number>;
  /** Cuts or restores member `index`'s link alone; its host stays connected (netns mode only). */
  memberLink(index: number, up: boolean): void;
  stop(): Promise<void>;
}

export interface MultiHostOptions {
  hosts?: number;
  /** etcd members (default: one per host). */
  members?: number;
  netns?: boolean;
  leaseSeconds?: number;
  workers?: number;
  /** Logs to files (benchmarks, demo) instead of pipes. */
  logs?: 'pipe' | 'file';
  /** More options for every host's manager, and for its API daemon. */
  managerArgs?: string[];
  apiArgs?: string[];
}

export async function startMultiHost(options: MultiHostOptions = {}): Promise<MultiHost> {
  const count = options.hosts ?? 3;
  const leaseSeconds = options.leaseSeconds ?? 2;
  const root = mkdtempSync(path.join(tmpdir(), 'token-shadow-multihost-'));
  const tag = randomBytes(2).toString('hex');
  const names = Array.from({ length: count }, (_, i) => String.fromCharCode(97 + i));
  const bridge = `tsbr${tag}`;
  const spaces = options.netns ? names.map((n) => `ts${tag}${n}`) : [];
  const memberSpaces = options.netns ? names.map((_, i) => `ts${tag}m${i + 1}`) : [];
  const cleanups: Array<() => void> = [];
  const cleanup = () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        fn();
      } catch {
        // best effort: a namespace already gone is fine
      }
    }
  };
  try {
    const addresses: string[] = [];
    if (options.netns) {
      ip('link', 'add', bridge, 'type', 'bridge');
      cleanups.push(() => ip('link', 'del', bridge));
      const subnet = `10.231.${Number.parseInt(tag.slice(0, 2), 16) % 200}`;
      // The harness itself (leader lookups, compaction, tokenctl) talks from here.
      ip('addr', 'add', `${subnet}.254/24`, 'dev', bridge);
      ip('link', 'set', bridge, 'up');
      const join = (ns: string, address: string) => {
        ip('netns', 'add', ns);
        cleanups.push(() => ip('netns', 'del', ns));
        ip('link', 'add', `${ns}h`, 'type', 'veth', 'peer', 'name', `${ns}n`);
        cleanups.push(() => ip('link', 'del', `${ns}h`));
        ip('link', 'set', `${ns}n`, 'netns', ns);
        ip('link', 'set', `${ns}h`, 'master', bridge);
        ip('link', 'set', `${ns}h`, 'up');
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', `${ns}n`);
        ip('-n', ns, 'link', 'set', `${ns}n`, 'up');
      };
      for (const [i, ns] of spaces.entries()) join(ns, `${subnet}.${i + 1}`);
      for (const [i, ns] of memberSpaces.entries()) {
        join(ns, `${subnet}.${i + 101}`);
        addresses.push(`${subnet}.${i + 101}`);
      }
    }
    const etcd = await startEtcdCluster(
      options.netns
        ? { size: count, addresses, netns: memberSpaces }
        : { size: options.members ?? count },
    );
    cleanups.push(() => {
      for (const m of etcd.members) m.process?.kill('SIGKILL');
    });
    const client = new Etcd3({ hosts: etcd.endpoints });
    const hosts: Host[] = [];
    const stopHosts = async () => {
      for (const h of hosts) await h.deployment.stop().catch(() => undefined);
    };
    try {
      for (const [i, name] of names.entries()) {
        const dir = path.join(root, name);
        const etc = path.join(dir, 'etc');
        mkdirSync(etc, { recursive: true, mode: 0o750 });
        writeFileSync(
          path.join(etc, 'cluster.json'),
          JSON.stringify({ cluster: 'test', host: name, endpoints: etcd.endpoints, leaseSeconds }),
          { mode: 0o600 },
        );
        const netns = options.netns ? (spaces[i] as string) : null;
        const prefix = netns ? ['ip', 'netns', 'exec', netns] : [];
        const harness = {
          prefix,
          ...(options.logs ? { logs: options.logs } : {}),
          ...(options.managerArgs ? { managerArgs: options.managerArgs } : {}),
        };
        let deployment = await startDeployment(dir, harness);
        const api = await deployment.startApi(name, [
          '--plain-http',
          '--workers',
          String(options.workers ?? 2),
          '--hash-threads',
          '1',
          ...(options.apiArgs ?? []),
        ]);
        const host: Host = {
          name,
          dir,
          netns,
          deployment,
          api,
          link(up) {
            if (!netns) throw new Error('link cuts need netns mode');
            ip('link', 'set', `${netns}h`, up ? 'up' : 'down');
            const member = memberSpaces[i];
            if (member !== undefined) ip('link', 'set', `${member}h`, up ? 'up' : 'down');
          },
          async restartManager() {
            // The API keeps running: its workers map the same page.
            const fresh = await startDeployment(dir, harness);
            deployment = fresh;
            host.deployment = fresh;
          },
        };
        hosts.push(host);
      }
    } catch (error) {
      await stopHosts();
      client.close();
      await etcd.stop();
      throw error;
    }
    return {
      etcd,
      hosts,
      leaseSeconds,
      client,
      async leader() {
        for (const [i, member] of etcd.members.entries()) {
          if (member.process === null) continue;
          const one = new Etcd3({ hosts: member.clientUrl, dialTimeout: 1000 });
          try {
            const status = await one.maintenance.status({ deadline: Date.now() + 1000 });
            if (status.leader === status.header.member_id) return i;
          } catch {
            // a stopped or cut member does not answer
          } finally {
            one.close();
          }
        }
        throw new Error('no member says it leads');
      },
      memberLink(index, up) {
        const member = memberSpaces[index];
        if (member === undefined) throw new Error('link cuts need netns mode');
        ip('link', 'set', `${member}h`, up ? 'up' : 'down');
      },
      async stop() {
        for (const h of hosts) {
          if (h.netns) h.link(true);
          await h.api.stop().catch(() => undefined);
        }
        await stopHosts();
        client.close();
        await etcd.stop();
        cleanup();
        rmSync(root, { recursive: true, force: true });
      },
    };
  } catch (error) {
    cleanup();
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
}

export interface Verifier {
  child: ChildProcess;
  /** Accepts (200) of requests sent after `sinceUs` (monotonic µs), and the totals. */
  report(sinceUs: number): Promise<VerifierReport>;
  /** Resolves with the first of `statuses` (200, 401, 503) answered from now on. */
  saw(...statuses: number[]): Promise<number>;
  stop(): Promise<void>;
}

export interface VerifierReport {
  staleAccepts: number;
  accepts: number;
  refusals: number;
  unavailable: number;
  errors: number;
  /** Send time (monotonic µs) of the first 503 after `sinceUs`, or null. */
  firstUnavailableUs: number | null;
}

/**
 * A child that checks one token against one host's API in a tight loop (in
 * the host's namespace), logging every answer with the monotonic send time,
 * the same clock the fence uses.
 */
export function startVerifier(host: Host, header: string): Verifier {
  const script = path.join(harnessDir, 'cluster-verifier.js');
  const argv = [script, host.api.url, header];
  const child = host.netns
    ? spawn('ip', ['netns', 'exec', host.netns, process.execPath, ...argv], {
        stdio: ['pipe', 'pipe', 'inherit'],
      })
    : spawn(process.execPath, argv, { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiters: Array<(line: Record<string, unknown>) => boolean> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text);
    } catch {
      return;
    }
    for (const w of [...waiters]) if (w(line)) waiters.splice(waiters.indexOf(w), 1);
  });
  const next = (match: (line: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      waiters.push((line) => {
        if (!match(line)) return false;
        resolve(line);
        return true;
      });
      child.once('exit', (code) => reject(new Error(`verifier exited (${code})`)));
    });
  return {
    child,
    async report(sinceUs) {
      const line = next((l) => l.t === 'report');
      child.stdin?.write(`report ${sinceUs}\n`);
      return (await line) as unknown as VerifierReport;
    },
    async saw(...statuses) {
      const line = next((l) => l.t === 'saw' && statuses.includes(Number(l.status)));
      child.stdin?.write(`saw ${statuses.join(',')}\n`);
      return Number((await line).status);
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.stdin?.end();
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}
