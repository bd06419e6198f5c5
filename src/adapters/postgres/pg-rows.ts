import pg from 'pg';
import type { Block } from '../../domain/blocks.js';
import type { LeaseEvent } from '../../domain/events.js';
import type { Lease } from '../../domain/lease.js';

/** int8 (bigint) as a JavaScript number: every one floatd stores is an epoch-ms time, an id or a count, far below 2^53. */
export const PG_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if (oid === 20) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

export interface LeaseRow {
  id: string;
  pool_id: string;
  product: string;
  user: string;
  host: string;
  instance: string;
  remote: string;
  listener: string;
  granted_at: number;
  renewed_at: number;
  expires_at: number;
  lease_ms: number;
  secret_hash: string | null;
  node: string;
}

export function toLease(r: LeaseRow): Lease {
  return {
    id: r.id,
    poolId: r.pool_id,
    product: r.product,
    user: r.user,
    host: r.host,
    instance: r.instance,
    remote: r.remote,
    listener: r.listener,
    grantedAt: r.granted_at,
    renewedAt: r.renewed_at,
    expiresAt: r.expires_at,
    leaseMs: r.lease_ms,
    ...(r.secret_hash === null ? {} : { secretHash: r.secret_hash }),
    ...(r.node === '' ? {} : { node: r.node }),
  };
}

export const LEASE_COLUMNS = 'id, pool_id, product, "user", host, instance, remote, listener, granted_at, renewed_at, expires_at, lease_ms, secret_hash, node';

export interface EventRow {
  id: number;
  ts: number;
  event: string;
  pool_id: string | null;
  product: string | null;
  lease_id: string | null;
  user: string | null;
  host: string | null;
  instance: string | null;
  remote: string | null;
  listener: string | null;
  seats_in_use: number | null;
  seats_total: number | null;
  code: string | null;
  reason: string | null;
  message: string | null;
  actor: string | null;
  count: number;
}

export function toEvent(r: EventRow): LeaseEvent {
  return {
    id: r.id,
    ts: r.ts,
    event: r.event as LeaseEvent['event'],
    poolId: r.pool_id,
    product: r.product,
    leaseId: r.lease_id,
    user: r.user,
    host: r.host,
    instance: r.instance,
    remote: r.remote,
    listener: r.listener,
    seatsInUse: r.seats_in_use,
    seatsTotal: r.seats_total,
    code: r.code,
    reason: r.reason,
    message: r.message,
    actor: r.actor,
    count: r.count,
  };
}

export interface BlockRow {
  id: string;
  scope: 'user' | 'instance';
  user: string;
  instance: string | null;
  product: string;
  created_at: number;
  until: number;
  reason: string;
  actor: string;
  lease_id: string | null;
}

export function toBlock(r: BlockRow): Block {
  return { id: r.id, scope: r.scope, user: r.user, instance: r.instance, product: r.product, createdAt: r.created_at, until: r.until, reason: r.reason, actor: r.actor, leaseId: r.lease_id };
}
