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
import { expiringWithin } from '../config/expiring.js';
import { Slot } from '../generations/slots.js';
import type { AuthenticationObserver } from '../http/authenticate.js';
import type { SourcePenalties, SourcePenaltyStats } from '../http/source-penalties.js';
import type { Deployment } from '../service/deployment.js';
import type { UsageNotes } from '../usage/notes.js';
import { VERSION } from '../version.js';
import { registerClusterMetrics } from './multihost-metrics.js';

/**
 * prom-client's per-process series that a sum over the primary and the workers
 * would make meaningless: a limit is per process (the tightest one is what
 * runs out first), so is the busiest process's count of open descriptors, and
 * the event loop lag that matters is the worst one. CPU, memory and handles
 * keep the default sum: the daemon's total.
 */
const PER_PROCESS_AGGREGATORS = {
  process_max_fds: 'min',
  process_open_fds: 'max',
  nodejs_eventloop_lag_seconds: 'max',
  nodejs_eventloop_lag_max_seconds: 'max',
} as const;

/** prom-client's default metrics in `registry`, each per-process one with its aggregator. */
function collectProcessMetrics(registry: client.Registry = client.register): void {
  client.collectDefaultMetrics({ register: registry });
  for (const [name, aggregator] of Object.entries(PER_PROCESS_AGGREGATORS)) {
    const metric = registry.getSingleMetric(name) as { aggregator: string } | undefined;
    if (metric) metric.aggregator = aggregator;
  }
}

/** Registers the collectors; returns the function that records one authentication. */
export function registerWorkerMetrics(
  deployment: Deployment,
  penalties: SourcePenalties | null = null,
  usage: UsageNotes | null = null,
): AuthenticationObserver {
  collectProcessMetrics();
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
        this.inc(deployment.secrets.stats()[key]);
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
      this.set(deployment.secrets.stats().entries);
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
  if (penalties !== null) registerPenaltyMetrics(penalties);
  // Only the slow path is timed: a cached verify is counted by token_shadow_cache_hits_total,
  // and timing it would cost more than the verify itself.
  registerClusterMetrics(deployment);
  if (usage) {
    new client.Counter({
      name: 'token_shadow_token_uses_total',
      help: 'Successful token authentications noted for last-used (all tokens together)',
      collect() {
        this.reset();
        this.inc(usage.total);
      },
    });
  }
  const windowSeconds = deployment.settings.expiryWindowSeconds;
  new client.Gauge({
    name: 'token_shadow_expiring',
    help: `Enabled users and tokens whose expiry falls within the expiry window (${windowSeconds} s)`,
    labelNames: ['kind'],
    aggregator: 'max',
    async collect() {
      const found = expiringWithin(
        await deployment.users.get(),
        Math.floor(Date.now() / 1000),
        windowSeconds,
        deployment.tokensExpiring,
      );
      this.set({ kind: 'user' }, found.filter((e) => e.kind === 'user').length);
      this.set({ kind: 'token' }, found.filter((e) => e.kind === 'token').length);
    },
  });
  const histogram = new client.Histogram({
    name: 'token_shadow_authentication_seconds',
    help: 'Time to authenticate a request that missed the cache (tens of ms when it hashes)',
    buckets: [1e-6, 5e-6, 2e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.5, 1],
    // Refusals and 503s too: a flood of bad secrets costs hashes, and would hide otherwise.
    labelNames: ['outcome'],
  });
  return (seconds, outcome) => histogram.observe({ outcome }, seconds);
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
  collectProcessMetrics(registry);
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

/** Per-source failure budgets (src/http/source-penalties.ts), read from its stats() when scraped. */
function registerPenaltyMetrics(penalties: SourcePenalties): void {
  const metric = (
    kind: 'counter' | 'gauge',
    name: string,
    help: string,
    key: keyof SourcePenaltyStats,
    aggregator: 'sum' | 'max' = 'sum',
  ) => {
    if (kind === 'counter') {
      new client.Counter({
        name,
        help,
        collect() {
          this.reset();
          this.inc(penalties.stats()[key]);
        },
      });
    } else {
      new client.Gauge({
        name,
        help,
        aggregator,
        collect() {
          this.set(penalties.stats()[key]);
        },
      });
    }
  };
  metric(
    'counter',
    'token_shadow_source_failures_total',
    'Authentication failures (401) counted against their source by this worker',
    'failures',
  );
  metric(
    'counter',
    'token_shadow_refused_connections_total',
    'Requests of penalised direct peers held, answered 429 and their connection closed',
    'refusedConnections',
  );
  metric(
    'counter',
    'token_shadow_refused_requests_total',
    'Requests of penalised sources answered 429 (anything the verified-secret cache could not accept)',
    'refusedRequests',
  );
  metric(
    'counter',
    'token_shadow_forgotten_sources_total',
    'Failure buckets dropped to stay within the bound on tracked sources',
    'forgottenSources',
  );
  metric('gauge', 'token_shadow_tracked_sources', 'Sources with recent failures', 'trackedSources');
  metric(
    'gauge',
    'token_shadow_penalised_sources',
    'Sources over their budget (shared by the workers: the most any worker has)',
    'penalisedSources',
    'max',
  );
  metric(
    'gauge',
    'token_shadow_held_connections',
    'Requests of penalised peers being held before their 429',
    'heldConnections',
  );
}
