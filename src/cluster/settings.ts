/**
 * Multi-host mode's settings: `cluster.json` in the configuration directory.
 * Its presence is the switch: the manager then keeps the store in etcd and
 * runs the sync agent, and tokenctl writes through etcd. Paths to TLS files
 * and a password file keep secrets out of the JSON and out of every log.
 */
import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { ClusterError } from '../errors.js';
import { untrustworthy } from '../trust.js';
import { checkName } from './keys.js';

export const CLUSTER_FILE_NAME = 'cluster.json';

export interface ClusterSettings {
  /** Groups the keys: several deployments can share one etcd. */
  cluster: string;
  /** This host's name in `hosts/` and `acks/` (default: the machine's hostname). */
  host: string;
  /** Every etcd member's client URL (http:// or https://). */
  endpoints: string[];
  tls?: { ca: string; cert?: string; key?: string };
  auth?: { username: string; passwordFile: string };
  /** The agent's lease; etcd grants at least 2 s. Default 2. */
  leaseSeconds: number;
  /** Subtracted from each fence deadline: covers clock rate drift. Default 200 ms. */
  marginMs: number;
  /**
   * Deadline of one etcd call (watch creates and lease keepalives included)
   * before it is retried on another member: a small part of the lease, so
   * that a silent member costs little of it. Default 500 ms.
   */
  callTimeoutMs: number;
}

export type ClusterSettingsInput = Partial<ClusterSettings> & { endpoints: string[] };

export function clusterFilePath(configDir: string): string {
  return path.join(configDir, CLUSTER_FILE_NAME);
}

function fail(message: string): never {
  throw new ClusterError('not-configured', message);
}

export function resolveClusterSettings(input: ClusterSettingsInput): ClusterSettings {
  if (!Array.isArray(input.endpoints) || input.endpoints.length === 0) {
    fail('cluster settings need at least one etcd endpoint');
  }
  for (const url of input.endpoints) {
    if (typeof url !== 'string' || !/^https?:\/\/[^/\s]+\/?$/.test(url)) {
      fail('etcd endpoints must be http(s)://host:port');
    }
  }
  const tls = input.tls;
  if (tls !== undefined) {
    const paths = [tls?.ca, tls?.cert, tls?.key].filter((p) => p !== undefined);
    if (typeof tls?.ca !== 'string' || !paths.every((p) => typeof p === 'string' && p !== '')) {
      fail('tls needs ca (a file), and optionally cert and key (files)');
    }
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      fail('tls.cert and tls.key go together');
    }
  }
  const auth = input.auth;
  if (
    auth !== undefined &&
    (typeof auth?.username !== 'string' ||
      auth.username === '' ||
      typeof auth.passwordFile !== 'string' ||
      auth.passwordFile === '')
  ) {
    fail('auth needs username and passwordFile (the password is read from that file)');
  }
  const leaseSeconds = input.leaseSeconds ?? 2;
  if (!Number.isInteger(leaseSeconds) || leaseSeconds < 2 || leaseSeconds > 60) {
    fail('leaseSeconds must be an integer from 2 to 60');
  }
  const marginMs = input.marginMs ?? 200;
  if (!(marginMs >= 0 && marginMs < leaseSeconds * 500)) {
    fail('marginMs must be at least 0 and less than half the lease');
  }
  const callTimeoutMs = input.callTimeoutMs ?? 500;
  if (!(callTimeoutMs >= 50 && callTimeoutMs <= 60_000)) fail('callTimeoutMs out of range');
  return {
    cluster: checkName('cluster name', input.cluster ?? 'default'),
    host: checkName('host name', input.host ?? hostname().split('.')[0] ?? 'host'),
    endpoints: [...input.endpoints],
    ...(input.tls ? { tls: input.tls } : {}),
    ...(input.auth ? { auth: input.auth } : {}),
    leaseSeconds,
    marginMs,
    callTimeoutMs,
  };
}

/**
 * The cluster settings of a deployment, or null in single-host mode. A file
 * others may write is refused: it decides where tokens come from.
 */
export function loadClusterSettings(configDir: string): ClusterSettings | null {
  const file = clusterFilePath(configDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    fail(`${file}: cannot read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const insecure = untrustworthy(statSync(file), { groupMayWrite: false });
  if (insecure !== null) fail(`${file}: refusing cluster settings: ${insecure}`);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    fail(`${file}: not valid JSON`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    fail(`${file}: expected a JSON object`);
  }
  return resolveClusterSettings(data as ClusterSettingsInput);
}
