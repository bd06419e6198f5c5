import { isStorageFault } from '../domain/errors.js';
import type { MetricsState } from '../adapters/metrics/prometheus-metrics.js';
import type { AppContext } from './context.js';
import { EVALUATION_PRODUCT } from './pool-registry.js';

/** What the metrics show of the server's state at a scrape. */
export async function metricsState(ctx: AppContext): Promise<MetricsState> {
  const now = ctx.clock.now();
  const inUse = new Map<string, number>();
  let earliest: number | null = null;
  let unreadable: string | null = null;
  try {
    for (const lease of await ctx.store.allLeases()) {
      if (lease.expiresAt <= now) continue;
      inUse.set(lease.poolId, (inUse.get(lease.poolId) ?? 0) + 1);
      if (earliest === null || lease.expiresAt < earliest) earliest = lease.expiresAt;
    }
  } catch (err) {
    // A lock that keeps readers out too: the scrape still answers, with what is known.
    if (!isStorageFault(err)) throw err;
    unreadable = typeof err.details.reason === 'string' ? err.details.reason : 'locked';
  }
  const { pools, doors } = ctx;
  return {
    storageFault: ctx.storage.fault() ?? unreadable,
    pools: pools.all().map((p) => ({ pool: p.id, product: p.product === '*' ? EVALUATION_PRODUCT : p.product, seats: p.seats, grantable: pools.grantableSeats(p, now), inUse: unreadable === null ? (inUse.get(p.id) ?? 0) : null })),
    keys: pools.licenseKeys().map((k) => ({ key: k.id, product: k.product, expiresAt: k.expiresAt, activation: k.activation ? (pools.activationState(k.id)?.state ?? 'unchecked') : null })),
    connections: doors.connections(),
    unsentReplyBytes: doors.backpressure().unsentBytes,
    pausedConnections: doors.backpressure().pausedConnections,
    earliestExpiry: earliest,
    now,
  };
}
