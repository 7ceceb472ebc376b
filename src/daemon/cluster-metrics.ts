/**
 * Metrics of the whole API daemon, gathered by the primary over cluster IPC.
 *
 * prom-client's AggregatorRegistry asks every connected worker and waits for
 * all of them, so a worker that is still starting or has just exited (both
 * happen during a rolling restart) makes a scrape time out. Here the primary
 * asks only the workers it names, counts an exit as an answer, and adds its
 * own registry (build_info, workers, reloads, certificate), then merges them
 * with prom-client's aggregators (sums, or the `aggregator` a metric names).
 */
import type { Worker } from 'node:cluster';
import client from 'prom-client';

const REQUEST = 'token-shadow:metrics-request';
const RESPONSE = 'token-shadow:metrics-response';

type MetricsJson = Awaited<ReturnType<client.Registry['getMetricsAsJSON']>>;

interface MetricsRequest {
  type: typeof REQUEST;
  id: number;
}

interface MetricsResponse {
  type: typeof RESPONSE;
  id: number;
  metrics: MetricsJson;
}

/** In a worker: answers the primary's requests with the default registry. */
export function answerMetricsRequests(registry: client.Registry = client.register): void {
  process.on('message', (message: MetricsRequest) => {
    if (message?.type !== REQUEST) return;
    registry.getMetricsAsJSON().then(
      (metrics) => process.send?.({ type: RESPONSE, id: message.id, metrics }),
      () => process.send?.({ type: RESPONSE, id: message.id, metrics: [] }),
    );
  });
}

let nextId = 1;

/** One worker's metrics, or [] when it exits or does not answer within `timeoutMs`. */
function ask(worker: Worker, timeoutMs: number): Promise<MetricsJson> {
  const id = nextId++;
  return new Promise((resolve) => {
    const finish = (metrics: MetricsJson) => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', onExit);
      resolve(metrics);
    };
    const onMessage = (message: MetricsResponse) => {
      if (message?.type === RESPONSE && message.id === id) finish(message.metrics);
    };
    const onExit = () => finish([]);
    const timer = setTimeout(() => finish([]), timeoutMs);
    worker.on('message', onMessage);
    worker.once('exit', onExit);
    try {
      worker.send({ type: REQUEST, id } satisfies MetricsRequest);
    } catch {
      finish([]);
    }
  });
}

/** The exposition text of `workers` plus the primary's `own` registry. */
export async function clusterMetrics(
  workers: Worker[],
  own: client.Registry,
  timeoutMs = 2000,
): Promise<string> {
  const answers = await Promise.all(
    workers.filter((w) => w.isConnected()).map((w) => ask(w, timeoutMs)),
  );
  const merged = client.AggregatorRegistry.aggregate([...answers, await own.getMetricsAsJSON()]);
  return merged.metrics();
}

export const METRICS_CONTENT_TYPE = client.Registry.PROMETHEUS_CONTENT_TYPE;
