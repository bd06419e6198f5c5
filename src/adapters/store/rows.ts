import type { Block } from '../../domain/blocks.js';
import type { LeaseEvent } from '../../domain/events.js';
import type { Lease } from '../../domain/lease.js';
import type { StoredActivation } from '../../domain/ports.js';

/**
 * The rows of the tables both stores have (SQLite and PostgreSQL name their
 * columns alike), and the domain values they stand for.
 */
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
  /** PostgreSQL only: the node whose client holds the lease ('' for none). */
  node?: string;
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
    ...(r.node === undefined || r.node === '' ? {} : { node: r.node }),
  };
}

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

export interface ActivationRow {
  key_id: string;
  activation_id: string;
  token: string;
  source: 'online' | 'offline';
  url: string | null;
  activated_at: number;
  validated_at: number;
}

export function toActivation(r: ActivationRow): StoredActivation {
  return { keyId: r.key_id, activationId: r.activation_id, token: r.token, source: r.source, url: r.url, activatedAt: r.activated_at, validatedAt: r.validated_at };
}
