/**
 * Parent side of bench/lib/load-child: start one or more autocannon children,
 * let them set up, then start them together (or staggered) with "go".
 */
import { fileURLToPath } from 'node:url';
import { type Channel, spawnChannel } from './children.js';
import type { Summary } from './stats.js';

export interface LoadSpec {
  /** Full URL of the request, e.g. http://127.0.0.1:1234/api2/json/version. */
  url: string;
  connections: number;
  /** Seconds. */
  duration: number;
  pipelining?: number;
  /** Requests per second over all connections (autocannon's overallRate); default unlimited. */
  overallRate?: number;
  /**
   * fixed: `authorization` (or none) on every request; wrong-secret: `tokenid` with a new random
   * secret per request; unknown-id: a new random token id and secret per request; tokens: cycle
   * through the [id, secret] pairs in `tokensFile`.
   */
  mode: 'fixed' | 'wrong-secret' | 'unknown-id' | 'tokens';
  authorization?: string;
  tokenid?: string;
  tokensFile?: string;
  /**
   * Loopback source addresses to connect from (127.0.0.2, ...), taken in turn by each new
   * connection: one load generator can play several sources. Default: the kernel's choice.
   */
  sourceAddresses?: string[];
}

export interface LoadResult {
  connections: number;
  seconds: number;
  responses: number;
  /** Responses per second, any status. */
  rps: number;
  /** 200 responses per second. */
  okRps: number;
  errors: number;
  timeouts: number;
  /** Latency in ms over all responses. */
  latency: Summary;
  /** Latency in ms and count by status code. */
  byStatus: Record<string, Summary>;
  /** CPU used by the load generator, in % of one core. */
  cpuPercent: number;
}

const childScript = fileURLToPath(new URL('./load-child.js', import.meta.url));

export interface PreparedLoad {
  /** Starts the load; resolves with its result when it has run its duration. */
  go(): Promise<LoadResult>;
  /** Kills the child if it is still running (after a failure). */
  close(): Promise<void>;
}

/** Spawns a load generator and waits until it is ready to start. */
export async function prepareLoad(spec: LoadSpec): Promise<PreparedLoad> {
  const channel: Channel = spawnChannel(childScript, [JSON.stringify(spec)]);
  const ready = await channel.next();
  if (ready !== 'ready') throw new Error(`load child said ${JSON.stringify(ready)}`);
  return {
    async go() {
      channel.send('go');
      const result = (await channel.next()) as LoadResult;
      await channel.close();
      return result;
    },
    close: () => channel.close(100),
  };
}

/** Runs one load to completion. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const load = await prepareLoad(spec);
  try {
    return await load.go();
  } finally {
    await load.close();
  }
}

/** Share of responses with `status` (0..1). */
export function share(result: LoadResult, status: number): number {
  return result.responses === 0
    ? 0
    : (result.byStatus[String(status)]?.count ?? 0) / result.responses;
}
