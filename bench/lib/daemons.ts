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
