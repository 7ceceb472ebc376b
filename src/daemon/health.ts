/**
 * Liveness and readiness for load balancers and orchestrators, served by the
 * API primary next to /metrics: no authentication, and nothing in the answer
 * but "ok" or "not ready" (which check failed goes to the log, once per
 * change), so probing reveals nothing about the deployment.
 *
 *   /livez    200 while the primary answers at all.
 *   /readyz   200 when every readiness check passes (workers, page, fence,
 *             manager), else 503.
 *   /healthz  the same as /readyz: what most load balancers probe by default.
 */
import { stat } from 'node:fs/promises';
import type http from 'node:http';
import { fenceState } from '../generations/fence.js';
import { GenerationPage } from '../generations/page.js';
import type { Logger } from './logger.js';
import { RpcClient } from './rpc.js';

/** One condition for serving; `check` resolves true when it holds and must not throw. */
export interface ReadinessCheck {
  name: string;
  check(): Promise<boolean>;
}

/** Longest a readiness probe waits for the manager: a load balancer probes every few seconds. */
export const MANAGER_PROBE_TIMEOUT_MS = 1000;

/** The manager answers a `ping` on its socket: reachable and its event loop is running. */
export function managerCheck(socketPath: string, timeoutMs = MANAGER_PROBE_TIMEOUT_MS) {
  return {
    name: 'manager',
    async check() {
      const rpc = new RpcClient(socketPath);
      let timer: NodeJS.Timeout | undefined;
      try {
        const timeout = new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), timeoutMs);
        });
        const reply = rpc.call('ping', 'readiness').then((r) => r.ok);
        return await Promise.race([reply, timeout]);
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
        rpc.close();
      }
    },
  } satisfies ReadinessCheck;
}

/**
 * user.cfg exists: without it every token is refused (a typo in
 * --config-dir, a file moved away), which a balancer should hear as "not
 * ready" rather than find out from 401s.
 */
export function configCheck(userCfgPath: string): ReadinessCheck {
  return {
    name: 'config',
    check: () =>
      stat(userCfgPath).then(
        (st) => st.isFile(),
        () => false,
      ),
  };
}

/**
 * The generation page is mapped and usable: the shared page at the path (a
 * page replaced under the daemons is remapped, as the workers do). Without it
 * the workers hash every verify: correct, but far below the capacity a
 * balancer plans with. With caching turned off on purpose there is no page to
 * check. A page missing at start is looked for again at each probe.
 */
export function pageCheck(pagePath: string, caching: boolean, log: Logger) {
  let page: GenerationPage | null = null;
  const warn = (message: string) => log.warn(message);
  return {
    name: 'page',
    async check() {
      if (!caching) return true;
      try {
        page ??= GenerationPage.open(pagePath, { readOnly: true, create: false });
      } catch {
        return false;
      }
      return page.usable(warn);
    },
    /** The page as last mapped, for checks of its slots; null before the first check. */
    get page(): GenerationPage | null {
      return page;
    },
    close() {
      page?.close();
    },
  };
}

/**
 * Several hosts (src/cluster): a host whose fence has passed refuses every
 * token with 503, so it must not be sent traffic either. Single-host mode (no
 * fence on the page, or no page) passes.
 */
export function fenceCheck(page: () => GenerationPage | null): ReadinessCheck {
  return {
    name: 'fence',
    async check() {
      const current = page();
      return current === null || current.closed || fenceState(current) !== 'fenced';
    },
  };
}

/** Runs the checks; logs when readiness changes, naming the failed checks. */
export class Readiness {
  readonly #checks: ReadinessCheck[];
  readonly #log: Logger;
  #last: string | null = null;

  constructor(checks: ReadinessCheck[], log: Logger) {
    this.#checks = checks;
    this.#log = log;
  }

  /** The names of the checks that failed; empty when ready. */
  async failing(): Promise<string[]> {
    // In order: a later check may use what an earlier one opened (the fence, the page).
    const failed: string[] = [];
    for (const c of this.#checks) {
      if (!(await c.check().catch(() => false))) failed.push(c.name);
    }
    const summary = failed.join(',');
    if (summary !== this.#last) {
      if (failed.length === 0) this.#log.info('ready');
      else this.#log.warn({ failing: failed }, 'not ready');
      this.#last = summary;
    }
    return failed;
  }
}

const HEALTH_PATHS = new Set(['/livez', '/readyz', '/healthz']);

/**
 * Answers a health path and returns true, or returns false for any other URL.
 * Only GET and HEAD; the query string is ignored.
 */
export function serveHealth(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  readiness: Readiness,
): boolean {
  const path = (req.url ?? '').split('?')[0] ?? '';
  if (!HEALTH_PATHS.has(path)) return false;
  const headers = { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...headers, allow: 'GET, HEAD' }).end();
    return true;
  }
  const answer = (status: number, text: string) =>
    res.writeHead(status, headers).end(req.method === 'HEAD' ? undefined : text);
  if (path === '/livez') {
    answer(200, 'ok\n');
    return true;
  }
  readiness.failing().then(
    (failed) =>
      answer(failed.length === 0 ? 200 : 503, failed.length === 0 ? 'ok\n' : 'not ready\n'),
    () => answer(503, 'not ready\n'),
  );
  return true;
}
