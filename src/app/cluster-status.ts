import type { LeaseStore } from '../domain/ports.js';
import type { ClusterMembership } from './cluster-membership.js';
import { NODE_CLOCK_WARN_MS } from './cluster-membership.js';
import { span } from './clock-watch.js';
import type { ClusterStatus } from './status.js';

const iso = (t: number) => new Date(t).toISOString();

/** The cluster as this node sees it, for status, the dashboard and `floatd status`. */
export async function clusterStatus(cluster: ClusterMembership, store: Pick<LeaseStore, 'allLeases'>, now: number): Promise<ClusterStatus> {
  const perNode = new Map<string, number>();
  for (const l of await store.allLeases()) if (l.expiresAt > now && l.node !== undefined) perNode.set(l.node, (perNode.get(l.node) ?? 0) + 1);
  const nodes = (await cluster.nodes()).map((n) => ({
    id: n.id,
    up: n.up,
    listeners: n.listeners,
    version: n.version,
    startedAt: iso(n.startedAt),
    lastSeen: iso(n.lastSeen),
    leases: perNode.get(n.id) ?? 0,
  }));
  const r = cluster.replication;
  const warnings: string[] = [];
  for (const n of nodes) if (!n.up && n.leases > 0) warnings.push(`node ${n.id} is not answering (last seen ${n.lastSeen}): its clients renew through the other nodes`);
  if (r !== null && r.role === 'primary' && !r.synchronous) warnings.push('the database has no synchronous standby streaming: a failover to an asynchronous standby can lose leases granted just before it');
  if (Math.abs(cluster.clockSkewMs) > NODE_CLOCK_WARN_MS) warnings.push(`this node's clock is ${span(cluster.clockSkewMs)} ${cluster.clockSkewMs > 0 ? 'ahead of' : 'behind'} the database's (leases are timed on the database's)`);
  return {
    node: cluster.nodeId,
    nodes,
    database: r === null ? null : { role: r.role, synchronous: r.synchronous, synchronousStandbyNames: r.synchronousStandbyNames, standbys: r.standbys.map((b) => ({ name: b.name, state: b.state, syncState: b.syncState })) },
    clockSkewMs: cluster.clockSkewMs,
    warnings,
  };
}
