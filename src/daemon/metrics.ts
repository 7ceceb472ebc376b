/**
 * Prometheus metrics of an API worker (prom-client's default registry, which
 * the cluster primary aggregates over IPC, see cluster-metrics.ts): cache hits
 * and misses, a verify latency histogram, the hashing queue depth, the
 * generation values and prom-client's default process and Node.js metrics.
 * Values are read from the stores' stats() when scraped, so requests pay
 * nothing. The primary has its own registry: build_info, workers, reloads and
 * the certificate's expiry.
 */
import client from 'prom-client';
import { Slot } from '../generations/slots.js';
import type { Deployment } from '../service/deployment.js';
import { VERSION } from '../version.js';

/** Registers the collectors; returns the function that records one authentication. */
export function registerWorkerMetrics(deployment: Deployment): (seconds: number) => void {
  client.collectDefaultMetrics();
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

export interface PrimaryMetrics {
  registry: client.Registry;
  workers: client.Gauge;
  reloads: client.Counter<'outcome'>;
  certificateNotAfter: client.Gauge;
}

/** The primary's own series; its process metrics add up with the workers' into the daemon's. */
export function createPrimaryMetrics(): PrimaryMetrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const registers = [registry];
  new client.Gauge({
    name: 'token_shadow_build_info',
    help: 'Always 1; the labels say which version runs on which Node.js',
    labelNames: ['version', 'nodejs_version'],
    registers,
    aggregator: 'max',
  }).set({ version: VERSION, nodejs_version: process.version }, 1);
  return {
    registry,
    workers: new client.Gauge({
      name: 'token_shadow_api_workers',
      help: 'API worker processes listening',
      registers,
    }),
    reloads: new client.Counter({
      name: 'token_shadow_reloads_total',
      help: 'Reloads (SIGHUP) by outcome',
      labelNames: ['outcome'],
      registers,
    }),
    certificateNotAfter: new client.Gauge({
      name: 'token_shadow_tls_certificate_not_after_seconds',
      help: 'When the served TLS certificate expires (Unix time); alert on it minus time()',
      registers,
    }),
  };
}
