import client from 'prom-client';
import { fenceRemainingUs, fenceState } from '../generations/fence.js';
import { Slot } from '../generations/slots.js';
import type { Deployment } from '../service/deployment.js';

/**
 * Multi-host mode, from the page the sync agent keeps: whether this host is
 * fenced, the trust it has left, the revision it acked and how far behind the
 * store it was at the agent's last check. In single-host mode: state "none".
 */
export function registerClusterMetrics(deployment: Deployment): void {
  const live = () => (deployment.page === null || deployment.page.closed ? null : deployment.page);
  new client.Gauge({
    name: 'token_shadow_cluster_fenced',
    help: '1 when this host refuses every token (multi-host fence passed), 0 otherwise',
    aggregator: 'max',
    collect() {
      this.set(fenceState(live()) === 'fenced' ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'token_shadow_cluster_fence_remaining_seconds',
    help: 'Seconds until the fence passes unless the sync agent extends it (absent: no fence)',
    aggregator: 'min',
    collect() {
      const page = live();
      const us = page === null ? null : fenceRemainingUs(page);
      if (us !== null) this.set(us / 1e6);
    },
  });
  new client.Gauge({
    name: 'token_shadow_cluster_acked_revision',
    help: 'Last etcd revision this host published and acknowledged',
    aggregator: 'max',
    collect() {
      const page = live();
      if (page !== null) this.set(page.load(Slot.CLUSTER_ACKED));
    },
  });
  new client.Gauge({
    name: 'token_shadow_cluster_sync_lag_revisions',
    help: "Revisions between the store and this host at the sync agent's last check",
    aggregator: 'max',
    collect() {
      const page = live();
      if (page !== null) {
        this.set(Math.max(0, page.load(Slot.CLUSTER_SEEN) - page.load(Slot.CLUSTER_ACKED)));
      }
    },
  });
}
