/**
 * Prometheus metrics of an API worker (prom-client's default registry, which
 * the cluster primary aggregates over IPC): cache hits and misses, a verify
 * latency histogram, the hashing queue depth and the generation values. Values
 * are read from the stores' stats() when scraped, so requests pay nothing.
 */
import client from 'prom-client';
import { Slot } from '../generations/slots.js';
import type { Deployment } from '../service/deployment.js';

/** Registers the collectors; returns the function that records one authentication. */
export function registerWorkerMetrics(deployment: Deployment): (seconds: number) => void {
  // Constructing one installs this worker's answer to the primary's metrics requests.
  new client.AggregatorRegistry();
  const shadowCounter = (
    name: string,
    help: string,
    key:
      | 'hits'
      | 'misses'
      | 'slowVerifies'
      | 'coalescedWaits'
      | 'busyRejections'
      | 'invalidationsByGeneration'
      | 'invalidationsByFileChange',
  ) =>
    new client.Counter({
      name,
      help,
      collect() {
        this.reset();
        this.inc(deployment.shadow.stats()[key]);
      },
    });
  shadowCounter('token_shadow_cache_hits_total', 'Verifies answered from the cache', 'hits');
  shadowCounter('token_shadow_cache_misses_total', 'Verifies that needed the slow path', 'misses');
  shadowCounter(
    'token_shadow_hash_verifies_total',
    'Hash verifies run in the pool',
    'slowVerifies',
  );
  shadowCounter(
    'token_shadow_coalesced_waits_total',
    'Verifies that joined one already running',
    'coalescedWaits',
  );
  shadowCounter(
    'token_shadow_busy_rejections_total',
    'Verifies refused because the hashing queue was full',
    'busyRejections',
  );
  shadowCounter(
    'token_shadow_invalidations_generation_total',
    'Cache entries dropped after a generation change',
    'invalidationsByGeneration',
  );
  shadowCounter(
    'token_shadow_invalidations_file_total',
    'Cache entries dropped after a file change nobody announced',
    'invalidationsByFileChange',
  );
  new client.Gauge({
    name: 'token_shadow_cache_entries',
    help: 'Secrets cached',
    collect() {
      this.set(deployment.shadow.stats().entries);
    },
  });
  new client.Gauge({
    name: 'token_shadow_hash_queue_depth',
    help: 'Hash tasks waiting for a thread',
    collect() {
      this.set(deployment.pool.stats().queued);
    },
  });
  new client.Gauge({
    name: 'token_shadow_generation',
    help: 'Values of the generation page slots',
    labelNames: ['slot'],
    aggregator: 'max',
    collect() {
      const page = deployment.page;
      if (page === null || page.closed) return;
      for (const [name, slot] of Object.entries(Slot)) this.set({ slot: name }, page.load(slot));
    },
  });
  const histogram = new client.Histogram({
    name: 'token_shadow_authentication_seconds',
    help: 'Time to authenticate a request (cached verifies are microseconds, hashes tens of ms)',
    buckets: [1e-6, 5e-6, 2e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.5, 1],
  });
  return (seconds) => histogram.observe(seconds);
}
