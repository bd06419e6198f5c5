import { blockedWho, type Block } from './blocks.js';
import { deny, type Denial } from './errors.js';
import type { LeaseEventInput } from './events.js';
import type { GateVerdict } from './gate.js';
import type { ClientIdentity, Lease } from './lease.js';
import { leaseEnd, leaseLengthMs, type Pool } from './pool.js';

/**
 * The lease decisions: what an acquire, renewal, release or expiry does, given
 * what the store read. Pure: no store, no clock (`now` is a fact), no random
 * ids (the new lease's id and secret hash are facts). The lease service reads
 * the facts inside its transaction, applies the decision's writes and log
 * entries there, and tells of the ended leases after the commit.
 */

export type LeaseEndKind = 'released' | 'expired' | 'revoked';

export interface LeaseEnded {
  readonly lease: Lease;
  readonly kind: LeaseEndKind;
  readonly reason: string | null;
}

export type LeaseWrite =
  | { readonly op: 'insert'; readonly lease: Lease }
  | { readonly op: 'extend'; readonly leaseId: string; readonly renewedAt: number; readonly expiresAt: number }
  | { readonly op: 'delete'; readonly leaseId: string };

export interface LeaseChanges {
  /** Rows to write, in order. */
  readonly writes: readonly LeaseWrite[];
  /** Lease-log entries, in order, after the writes. */
  readonly log: readonly LeaseEventInput[];
  /** Leases this decision ended (told to their holders after the commit). */
  readonly ended: readonly LeaseEnded[];
}

export interface Decision<T> extends LeaseChanges {
  readonly outcome: T | Denial;
  /** For a denied acquire: the pool and seats its lease-log entry names (none: no pool). */
  readonly deniedAt?: { readonly poolId: string | null; readonly seatsInUse?: number; readonly seatsTotal?: number };
}

export interface Granted {
  readonly ok: true;
  readonly lease: Lease;
  /** True when a held lease was extended rather than a new seat taken. */
  readonly renewed: boolean;
}

/** A pool the request could take a seat of, with its running leases counted. */
export interface PoolSeats {
  readonly pool: Pool;
  readonly inUse: number;
}

const NO_CHANGES: LeaseChanges = { writes: [], log: [], ended: [] };

function who(lease: Lease): Pick<LeaseEventInput, 'user' | 'host' | 'instance' | 'remote' | 'listener' | 'product' | 'poolId' | 'leaseId'> {
  return {
    user: lease.user,
    host: lease.host,
    instance: lease.instance,
    remote: lease.remote,
    listener: lease.listener,
    product: lease.product,
    poolId: lease.poolId,
    leaseId: lease.id,
  };
}

function denied<T>(d: Denial, changes: LeaseChanges = NO_CHANGES): Decision<T> {
  return { ...changes, outcome: d };
}

/** Ends a lease that ran out: the seat is free again. `inUse` counts the pool's running leases (the expired one is not among them). */
export function expire(lease: Lease, now: number, pool: PoolSeats | undefined): LeaseChanges {
  return {
    writes: [{ op: 'delete', leaseId: lease.id }],
    log: [
      {
        ts: now,
        event: 'expired',
        ...who(lease),
        seatsInUse: pool?.inUse ?? null,
        seatsTotal: pool?.pool.seats ?? null,
        message: `lease not renewed by ${new Date(lease.expiresAt).toISOString()}`,
      },
    ],
    ended: [{ lease, kind: 'expired', reason: null }],
  };
}

/** Ends a lease before its time (an operator, a key that is gone or not valid, a binding that broke). */
export function revoke(lease: Lease, now: number, reason: string, actor: string | null = null): LeaseChanges {
  return {
    writes: [{ op: 'delete', leaseId: lease.id }],
    log: [{ ts: now, event: 'revoked', ...who(lease), reason, message: reason, actor }],
    ended: [{ lease, kind: 'revoked', reason }],
  };
}

/** Extends a held lease by a full lease length (never past its key's end). `inUse` is logged only when renewals are. */
export function extend(lease: Lease, pool: Pool, now: number, leaseMs: number, log: { inUse: number } | null, reacquire: boolean): { lease: Lease; changes: LeaseChanges } {
  const length = leaseLengthMs(leaseMs, pool);
  const renewed: Lease = { ...lease, renewedAt: now, expiresAt: leaseEnd(now, length, pool), leaseMs: length };
  return {
    lease: renewed,
    changes: {
      writes: [{ op: 'extend', leaseId: lease.id, renewedAt: now, expiresAt: renewed.expiresAt }],
      log: log === null ? [] : [{ ts: now, event: 'renewed', ...who(renewed), seatsInUse: log.inUse, seatsTotal: pool.seats, message: reacquire ? 'acquire while holding the lease' : null }],
      ended: [],
    },
  };
}

/** What the store read of the lease the client already holds of the product, for an acquire. */
export interface HeldLease {
  readonly lease: Lease;
  /** Its pool, when the pool is still there. */
  readonly pool: PoolSeats | undefined;
  /** Its pool can grant now (valid, not blocked by activation). */
  readonly grantable: boolean;
  /** The request proved it is the lease's holder (same connection, or the lease's secret). */
  readonly proven: boolean;
}

export interface Settings {
  /** The server's lease length (a key's maximum may shorten it). */
  readonly leaseMs: number;
  /** Whether renewals are written to the lease log. */
  readonly logRenewals: boolean;
}

/**
 * The first step of an acquire: the lease the client already holds. Running
 * in a pool that grants, it is extended (an idempotent acquire) — or refused
 * to a caller that cannot prove it holds it. Run out, it is expired; in a pool
 * that no longer grants, revoked: either way the acquire goes on to a new seat
 * (`next`), after those changes are written.
 */
export function decideHeld(held: HeldLease | undefined, now: number, settings: Settings, mismatch: () => Denial): { done: Decision<Granted> } | { next: LeaseChanges } {
  if (held === undefined) return { next: NO_CHANGES };
  const { lease, pool } = held;
  if (lease.expiresAt > now && pool !== undefined && held.grantable) {
    if (!held.proven) return { done: { ...denied<Granted>(mismatch()), deniedAt: { poolId: lease.poolId } } };
    const extended = extend(lease, pool.pool, now, settings.leaseMs, settings.logRenewals ? { inUse: pool.inUse } : null, true);
    return { done: { ...extended.changes, outcome: { ok: true, lease: extended.lease, renewed: true } } };
  }
  if (lease.expiresAt <= now) return { next: expire(lease, now, pool) };
  return { next: revoke(lease, now, 'the license key of its pool is no longer valid') };
}

/** What the store read for a new seat, after the held lease (if any) was dealt with. */
export interface NewSeatFacts {
  readonly client: ClientIdentity;
  readonly product: string;
  readonly now: number;
  /** A block in force that keeps this user or instance out of the product. */
  readonly block: Block | null;
  /** The CLT rules' verdict, from the durable counts. */
  readonly verdict: GateVerdict;
  /** The pools that serve the product, in the order to take seats from. */
  readonly pools: readonly PoolSeats[];
  /** The new lease's id and secret hash. */
  readonly fresh: { readonly id: string; readonly secretHash: string };
  /** Leases the user holds on this listener before the grant (read when the rules log every grant). */
  readonly heldOnListener: number | null;
  /** The earliest expiry among the pools' leases (read when every pool is full). */
  readonly earliestExpiry: number | undefined;
}

/** Whether every pool is full: then the earliest expiry gives the retry hint. */
export function allFull(pools: readonly PoolSeats[]): boolean {
  return pools.every((p) => p.inUse >= p.pool.seats);
}

/**
 * A new seat for the client: refused while a block or a rule keeps it out,
 * else the first pool with a free seat is taken, else NO_FREE_SEATS with a
 * retry hint from the earliest expiry (1 to 10 s). Never more running leases
 * in a pool than its seats.
 */
export function decideNewSeat(f: NewSeatFacts, settings: Settings): Decision<Granted> {
  const { now, client, product } = f;
  if (f.block !== null) {
    const until = new Date(f.block.until).toISOString();
    return denied(
      deny('RULE_DENIED', `${blockedWho(f.block)} is kept out of ${product} until ${until}: a lease was revoked by ${f.block.actor} (${f.block.reason})`, { reason: 'revoked', blockedUntil: until }),
    );
  }
  if (!f.verdict.allowed) return denied(deny('RULE_DENIED', f.verdict.message, { reason: f.verdict.reason }));
  const logAll = f.verdict.logAll;
  const free = f.pools.find((p) => p.inUse < p.pool.seats);
  if (free !== undefined) {
    const { pool } = free;
    const leaseMs = leaseLengthMs(settings.leaseMs, pool);
    const lease: Lease = {
      id: f.fresh.id,
      poolId: pool.id,
      product,
      user: client.user,
      host: client.host,
      instance: client.instance,
      remote: client.remote,
      listener: client.listener,
      grantedAt: now,
      renewedAt: now,
      expiresAt: leaseEnd(now, leaseMs, pool),
      leaseMs,
      secretHash: f.fresh.secretHash,
    };
    return {
      outcome: { ok: true, lease, renewed: false },
      writes: [{ op: 'insert', lease }],
      log: [
        {
          ts: now,
          event: 'granted',
          ...who(lease),
          seatsInUse: free.inUse + 1,
          seatsTotal: pool.seats,
          message: logAll ? `user ${client.user} now holds ${(f.heldOnListener ?? 0) + 1} lease(s) on listener ${client.listener}` : null,
        },
      ],
      ended: [],
    };
  }
  const retryAfterMs = Math.min(10_000, Math.max(1_000, f.earliestExpiry === undefined ? 10_000 : f.earliestExpiry - now));
  const total = f.pools.reduce((n, p) => n + p.pool.seats, 0);
  return {
    ...denied<Granted>(
      deny(
        'NO_FREE_SEATS',
        f.pools.every((p) => p.pool.kind === 'evaluation') ? `all ${total} evaluation seat(s) are in use (they serve every product)` : `all ${total} seat(s) of "${product}" are in use`,
        { retryAfterMs },
      ),
    ),
    deniedAt: { poolId: f.pools.length === 1 ? f.pools[0]!.pool.id : null, seatsInUse: total, seatsTotal: total },
  };
}

/** What the store read for a renewal. */
export interface RenewFacts {
  readonly leaseId: string;
  readonly lease: Lease | undefined;
  readonly now: number;
  /** Whether the caller is the lease's user and instance. */
  readonly holds: boolean;
  /** Whether the caller proved it holds the lease. */
  readonly proven: boolean;
  /** Why a lease of this id was revoked lately, for a holder that renews it after. */
  readonly revokedReason: string | undefined;
  /** Its pool, if still there. */
  readonly pool: Pool | undefined;
  /** The pool's running leases, read when `renewCounts` says the decision logs them; else null. */
  readonly inUse: number | null;
  /** Whether the pool's key is valid now. */
  readonly poolValid: boolean;
  /** Why the pool grants nothing (activation), or null. */
  readonly blocked: string | null;
}

/** Whether a renewal of `lease` logs its pool's running leases (an expiry, a logged renewal): only then need they be read. */
export function renewCounts(lease: Lease | undefined, now: number, settings: Settings): boolean {
  return lease !== undefined && (lease.expiresAt <= now || settings.logRenewals);
}

/** A renewal: the holder's running lease is extended; a lease run out is expired, one whose key is gone or not valid is revoked. */
export function decideRenew(f: RenewFacts, settings: Settings, mismatch: () => Denial): Decision<Granted> {
  const { lease, leaseId, now } = f;
  if (lease === undefined) {
    return denied(
      f.revokedReason === undefined
        ? deny('LEASE_NOT_FOUND', `no lease ${leaseId}; acquire a new one`)
        : deny('LEASE_NOT_FOUND', `lease ${leaseId} was revoked (${f.revokedReason}); acquire a new one`, { reason: f.revokedReason }),
    );
  }
  if (!f.holds) return denied(deny('LEASE_NOT_YOURS', `lease ${leaseId} is held by another client instance`));
  if (!f.proven) return denied(mismatch());
  const seats = f.pool === undefined ? undefined : { pool: f.pool, inUse: f.inUse ?? 0 };
  if (lease.expiresAt <= now) {
    return denied(deny('LEASE_EXPIRED', `lease ${leaseId} expired at ${new Date(lease.expiresAt).toISOString()}; acquire a new one`), expire(lease, now, seats));
  }
  const pool = f.pool;
  if (pool === undefined || !f.poolValid) {
    const reason =
      pool === undefined
        ? 'its license key was removed'
        : pool.expiresAt !== null && now >= pool.expiresAt
          ? `its license key expired at ${new Date(pool.expiresAt).toISOString()}`
          : 'its license key is not valid now';
    return denied(deny('LICENSE_EXPIRED', `lease ${leaseId} cannot be renewed: ${reason}`), revoke(lease, now, reason));
  }
  if (f.blocked !== null) return denied(deny('NOT_ACTIVATED', `lease ${leaseId} cannot be renewed: ${f.blocked}`), revoke(lease, now, f.blocked));
  const extended = extend(lease, pool, now, settings.leaseMs, settings.logRenewals ? { inUse: f.inUse ?? 0 } : null, false);
  return { ...extended.changes, outcome: { ok: true, lease: extended.lease, renewed: true } };
}

/** What the store read for a release. */
export interface ReleaseFacts {
  readonly leaseId: string;
  readonly lease: Lease | undefined;
  readonly now: number;
  readonly holds: boolean;
  readonly proven: boolean;
  /** Its pool, if still there, with its running leases counted before the release. */
  readonly pool: PoolSeats | undefined;
}

/** A release: the holder's lease ends (as expired, when it had run out); releasing an unknown or ended lease is fine. */
export function decideRelease(f: ReleaseFacts, mismatch: () => Denial): Decision<{ ok: true; released: boolean }> {
  const { lease, now } = f;
  if (lease === undefined) return { ...NO_CHANGES, outcome: { ok: true, released: false } };
  if (!f.holds) return denied(deny('LEASE_NOT_YOURS', `lease ${f.leaseId} is held by another client instance`));
  if (!f.proven) return denied(mismatch());
  const running = lease.expiresAt > now;
  const kind: LeaseEndKind = running ? 'released' : 'expired';
  return {
    outcome: { ok: true, released: true },
    writes: [{ op: 'delete', leaseId: lease.id }],
    log: [{ ts: now, event: kind, ...who(lease), seatsInUse: f.pool === undefined ? null : f.pool.inUse - (running ? 1 : 0), seatsTotal: f.pool?.pool.seats ?? null }],
    ended: [{ lease, kind, reason: null }],
  };
}

/** Leases found expired by a sweep, each with its pool as read once for the sweep (expired leases are not among the running ones). */
export function decideSweep(expired: readonly Lease[], now: number, pools: ReadonlyMap<string, PoolSeats>): LeaseChanges {
  const writes: LeaseWrite[] = [];
  const log: LeaseEventInput[] = [];
  const ended: LeaseEnded[] = [];
  for (const lease of expired) {
    const one = expire(lease, now, pools.get(lease.poolId));
    writes.push(...one.writes);
    log.push(...one.log);
    ended.push(...one.ended);
  }
  return { writes, log, ended };
}
