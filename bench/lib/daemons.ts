/**
 * The real daemons for the HTTP benchmarks, on the one harness
 * (harness/daemons.ts): one manager and any number of API clusters
 * against the same configuration, all on loopback in plain-HTTP mode, with
 * logs in files (the benchmark spends no CPU reading them while a load runs)
 * and every child tracked so that none outlives the benchmark.
 */
import {
  type Api,
  type StartApiOptions,
  startDeployment as startHarness,
} from '../../harness/daemons.js';
import { track, trackPid, untrackPid } from './children.js';

export type { Api } from '../../harness/daemons.js';

export interface Deployment {
  dir: string;
  configDir: string;
  runtimeDir: string;
  /** A mutation as root@pam over the manager's socket; throws unless it succeeded. */
  asRoot(op: string, params: Record<string, unknown>): Promise<{ data: unknown }>;
  startApi(name: string, args: string[], options?: StartApiOptions): Promise<Api>;
  stop(): Promise<void>;
}

/** Starts the manager on `dir` (etc/, run/ and log/ below it), as `npm start` would. */
export async function startDeployment(dir: string): Promise<Deployment> {
  const deployment = await startHarness(dir, {
    logs: 'file',
    env: { UV_THREADPOOL_SIZE: '4' },
    track: { child: track, pid: trackPid, forget: untrackPid },
  });
  return {
    dir,
    configDir: deployment.configDir,
    runtimeDir: deployment.runtimeDir,
    async asRoot(op, params) {
      const reply = await deployment.asRoot(op, params);
      if (!reply.ok) throw new Error(`${op} failed: ${reply.status} ${reply.message}`);
      return reply;
    },
    startApi: (name, args, options) =>
      deployment.startApi(name, args, { plainHttp: true, ...options }),
    stop: () => deployment.stop(),
  };
}

/** The API's counters and gauges the benchmarks read, by a short name. */
const COUNTERS = {
  hashVerifies: 'token_shadow_hash_verifies_total',
  busy: 'token_shadow_busy_rejections_total',
  entries: 'token_shadow_cache_entries',
  misses: 'token_shadow_cache_misses_total',
  invalidations: 'token_shadow_invalidations_generation_total',
  refused: 'token_shadow_refused_connections_total',
  failures: 'token_shadow_source_failures_total',
} as const;

/** The named counters of `api` (its primary's sum over the workers; 0 for one not reported yet). */
export async function readCounters<K extends keyof typeof COUNTERS>(
  api: Api,
  names: readonly K[],
): Promise<Record<K, number>> {
  const metrics = await api.metrics();
  return Object.fromEntries(
    names.map((name) => [name, metrics.get(COUNTERS[name]) ?? 0]),
  ) as Record<K, number>;
}
