import { randomUUID } from 'node:crypto';
import { blockedWho, type Block, type BlockScope } from '../domain/blocks.js';
import type { Clock } from '../domain/clock.js';
import { deny, type Denial } from '../domain/errors.js';
import type { LeaseEventInput } from '../domain/events.js';
import { OPEN_GATE, type AcquireGate } from '../domain/gate.js';
import { holds, NO_PROOF, type ClientIdentity, type Lease, type LeaseProof } from '../domain/lease.js';
import { leaseEnd, leaseLengthMs, poolIsValid, type Pool } from '../domain/pool.js';
import type { DenialWindow, LeaseStore, LeaseTx } from '../domain/ports.js';
import { newLeaseSecret, proven, secretMismatch } from './lease-secret.js';
import type { PoolRegistry } from './pool-registry.js';

export interface LeaseGranted {
  readonly ok: true;
  readonly lease: Lease;
  /** True when an existing lease was extended rather than a new seat taken. */
  readonly renewed: boolean;
  /** The new lease's secret, for its holder alone: only when a seat was granted (never stored, logged or signed). */
  readonly secret?: string;
}

export type LeaseOutcome = LeaseGranted | Denial;

export interface LeaseServiceOptions {
  readonly leaseMs: number;
  /** 'summary' leaves renewals out of the lease log. */
  readonly logLevel: 'detailed' | 'summary';
}

export type LeaseEndKind = 'released' | 'expired' | 'revoked';

/** A committed lease operation, for counting (metrics): never told for a rolled-back one. */
export type Tally =
  | { readonly kind: 'granted' | 'renewed'; readonly product: string }
  | { readonly kind: 'denied'; readonly code: string; readonly reason: string | null };

export interface LeaseServiceHooks {
  /** After the commit of a grant, a renewal or a denial. */
  tally?(t: Tally): void;
  /** After a commit that ended leases (for pushing `revoked` to clients, rescheduling). */
  leaseEnded?(lease: Lease, kind: LeaseEndKind, reason: string | null): void;
  /** After a commit that set an expiry, so the sweeper can wake in time. */
  expiryScheduled?(at: number): void;
}

const SWEEP_BATCH = 500;
/** Identical denials are one lease-log entry per client and this interval, with a count. */
export const DENIAL_INTERVAL_MS = 60_000;
/** New denial entries one remote address may add per interval; past it, one catch-all entry counts the rest. */
export const DENIAL_ENTRIES_PER_ADDRESS = 100;

function denialWindow(now: number): DenialWindow {
  return {
    sinceMs: now - (now % DENIAL_INTERVAL_MS),
    perAddress: DENIAL_ENTRIES_PER_ADDRESS,
    overflowMessage: `further denials from this address this minute, past its ${DENIAL_ENTRIES_PER_ADDRESS} entries (other users, instances, products or codes)`,
  };
}

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

/**
 * The lease use cases. Each runs as one store transaction; notifications go
 * out only after the commit.
 */
export class LeaseService {
  private gate: AcquireGate = OPEN_GATE;

  constructor(
    private readonly store: LeaseStore,
    private readonly clock: Clock,
    private readonly pools: PoolRegistry,
    private options: LeaseServiceOptions,
    private readonly hooks: LeaseServiceHooks = {},
  ) {}

  setGate(gate: AcquireGate): void {
    this.gate = gate;
  }

  setOptions(options: LeaseServiceOptions): void {
    this.options = options;
  }

  private poolSeats(pool: Pool, tx: LeaseTx, now: number): Pick<LeaseEventInput, 'seatsInUse' | 'seatsTotal'> {
    return { seatsInUse: tx.countActive(pool.id, now), seatsTotal: pool.seats };
  }

  /**
   * `active` caches running-lease counts per pool for a sweep: taking away an
   * expired lease leaves the count of running ones as it was, so one count per
   * pool serves every lease-log row of the sweep (instead of a count over the
   * expired leases still to go, for each of them).
   */
  private expireInTx(tx: LeaseTx, lease: Lease, now: number, ended: Array<[Lease, LeaseEndKind, string | null]>, active?: Map<string, number>): void {
    tx.deleteLease(lease.id);
    const pool = this.pools.get(lease.poolId);
    let inUse: number | null = null;
    if (pool !== undefined) {
      inUse = active?.get(pool.id) ?? tx.countActive(pool.id, now);
      active?.set(pool.id, inUse);
    }
    tx.appendEvent({
      ts: now,
      event: 'expired',
      ...who(lease),
      seatsInUse: inUse,
      seatsTotal: pool?.seats ?? null,
      message: `lease not renewed by ${new Date(lease.expiresAt).toISOString()}`,
    });
    ended.push([lease, 'expired', null]);
  }

  private revokeInTx(tx: LeaseTx, lease: Lease, now: number, reason: string, ended: Array<[Lease, LeaseEndKind, string | null]>, actor: string | null = null): void {
    tx.deleteLease(lease.id);
    tx.appendEvent({ ts: now, event: 'revoked', ...who(lease), reason, message: reason, actor });
    ended.push([lease, 'revoked', reason]);
  }

  /**
   * Ends a lease at once (an operator's revoke). The connected holder is told
   * (`revoked`); a holder that renews later is told why its lease is gone.
   */
  revoke(leaseId: string, reason: string, actor: string, block?: { readonly seconds: number; readonly scope: BlockScope }): { ok: true; lease: Lease; block: Block | null } | Denial {
    const now = this.clock.now();
    const ended: Array<[Lease, LeaseEndKind, string | null]> = [];
    const outcome = this.store.transact((tx): { ok: true; lease: Lease; block: Block | null } | Denial => {
      const lease = tx.findLease(leaseId);
      if (lease === undefined) return deny('LEASE_NOT_FOUND', `no lease ${leaseId}`);
      const until = block === undefined ? null : now + block.seconds * 1000;
      const keptOut = until === null ? '' : `; ${block!.scope === 'user' ? 'the user' : 'the instance'} is kept out of ${lease.product} until ${new Date(until).toISOString()}`;
      this.revokeInTx(tx, lease, now, `by ${actor}: ${reason}${keptOut}`, ended, actor);
      if (block === undefined || until === null) return { ok: true, lease, block: null };
      const made: Block = {
        id: randomUUID(),
        scope: block.scope,
        user: lease.user,
        instance: block.scope === 'instance' ? lease.instance : null,
        product: lease.product,
        createdAt: now,
        until,
        reason,
        actor,
        leaseId: lease.id,
      };
      tx.insertBlock(made);
      tx.appendEvent({
        ts: now,
        event: 'blocked',
        user: made.user,
        instance: made.instance,
        host: lease.host,
        product: made.product,
        leaseId: lease.id,
        reason,
        actor,
        message: `${blockedWho(made)} kept out of ${made.product} until ${new Date(until).toISOString()} (block ${made.id})`,
      });
      return { ok: true, lease, block: made };
    });
    this.notify(ended);
    return outcome;
  }

  /** Lifts a block before its end (`floatd admin unblock`). */
  unblock(blockId: string, actor: string): { ok: true; block: Block } | Denial {
    const now = this.clock.now();
    return this.store.transact((tx): { ok: true; block: Block } | Denial => {
      const block = tx.deleteBlock(blockId);
      if (block === undefined || block.until <= now) return deny('BLOCK_NOT_FOUND', `no block in force has id ${blockId} (see floatd admin blocks)`);
      tx.appendEvent({
        ts: now,
        event: 'unblocked',
        user: block.user,
        instance: block.instance,
        product: block.product,
        leaseId: block.leaseId,
        actor,
        message: `${blockedWho(block)} may take seats of ${block.product} again (block ${block.id}, which ran until ${new Date(block.until).toISOString()}, lifted)`,
      });
      return { ok: true, block };
    });
  }

  /** Why recently revoked leases are gone, for their holders' next renewal (bounded; oldest forgotten first). */
  private readonly revokedReasons = new Map<string, string>();

  private rememberRevoked(leaseId: string, reason: string): void {
    this.revokedReasons.set(leaseId, reason);
    if (this.revokedReasons.size > 10_000) this.revokedReasons.delete(this.revokedReasons.keys().next().value!);
  }

  /** Tells the hooks, once the transaction in progress (a batch, perhaps) has committed; never if it rolls back. */
  private notify(ended: Array<[Lease, LeaseEndKind, string | null]>, expiry?: number, tally?: Tally): void {
    if (ended.length === 0 && expiry === undefined && tally === undefined) return;
    this.store.afterCommit(() => {
      for (const [lease, kind, reason] of ended) {
        if (kind === 'revoked' && reason !== null) this.rememberRevoked(lease.id, reason);
        this.hooks.leaseEnded?.(lease, kind, reason);
      }
      if (expiry !== undefined) this.hooks.expiryScheduled?.(expiry);
      if (tally !== undefined) this.hooks.tally?.(tally);
    });
  }

  private static tallyOf(outcome: LeaseOutcome): Tally {
    if (outcome.ok) return { kind: outcome.renewed ? 'renewed' : 'granted', product: outcome.lease.product };
    return { kind: 'denied', code: outcome.code, reason: typeof outcome.details.reason === 'string' ? outcome.details.reason : null };
  }

  private extendInTx(tx: LeaseTx, lease: Lease, pool: Pool, now: number, reacquire: boolean): Lease {
    const leaseMs = leaseLengthMs(this.options.leaseMs, pool);
    const renewed: Lease = { ...lease, renewedAt: now, expiresAt: leaseEnd(now, leaseMs, pool), leaseMs };
    tx.updateExpiry(lease.id, now, renewed.expiresAt);
    if (this.options.logLevel === 'detailed') {
      tx.appendEvent({
        ts: now,
        event: 'renewed',
        ...who(renewed),
        ...this.poolSeats(pool, tx, now),
        message: reacquire ? 'acquire while holding the lease' : null,
      });
    }
    return renewed;
  }

  /** Takes a seat for `client`, or returns the lease it already holds, renewed. */
  acquire(client: ClientIdentity, product: string | undefined, proof: LeaseProof = NO_PROOF): LeaseOutcome {
    const now = this.clock.now();
    const ended: Array<[Lease, LeaseEndKind, string | null]> = [];
    const outcome = this.store.transact((tx): LeaseOutcome => {
      const selection = this.pools.select(product, now);
      const denied = (d: Denial, poolId: string | null, seats?: Pick<LeaseEventInput, 'seatsInUse' | 'seatsTotal'>): Denial => {
        // Repeats within the minute only count up their entry (a retrying client, a flooding peer).
        tx.recordDenial({
          ts: now,
          event: 'denied',
          user: client.user,
          host: client.host,
          instance: client.instance,
          remote: client.remote,
          listener: client.listener,
          product: product ?? null,
          poolId,
          code: d.code,
          reason: typeof d.details.reason === 'string' ? d.details.reason : null,
          message: d.message,
          ...seats,
        }, denialWindow(now));
        return d;
      };
      if (!selection.ok) return denied(selection, null);
      const existing = tx.findLeaseByHolder(client.user, client.instance, selection.product);
      if (existing !== undefined) {
        const pool = this.pools.get(existing.poolId);
        if (existing.expiresAt > now && pool !== undefined && poolIsValid(pool, this.pools.judgedAt(now)) && this.pools.blocked(pool.id) === null) {
          // Another holder naming the same user and instance does not get the lease (nor a second seat).
          if (!proven(existing, proof)) return denied(secretMismatch(existing.id, proof, 'acquiring'), existing.poolId);
          return { ok: true, lease: this.extendInTx(tx, existing, pool, now, true), renewed: true };
        }
        if (existing.expiresAt <= now) this.expireInTx(tx, existing, now, ended);
        else this.revokeInTx(tx, existing, now, 'the license key of its pool is no longer valid', ended);
      }
      const block = tx.activeBlock(client.user, client.instance, selection.product, now);
      if (block !== null && block !== undefined) {
        const until = new Date(block.until).toISOString();
        return denied(
          deny('RULE_DENIED', `${blockedWho(block)} is kept out of ${selection.product} until ${until}: a lease was revoked by ${block.actor} (${block.reason})`, {
            reason: 'revoked',
            blockedUntil: until,
          }),
          null,
        );
      }
      const verdict = this.gate.check(client, selection.product, now, tx);
      if (!verdict.allowed) {
        return denied(deny('RULE_DENIED', verdict.message, { reason: verdict.reason }), null);
      }
      for (const pool of selection.pools) {
        const inUse = tx.countActive(pool.id, now);
        if (inUse >= pool.seats) continue;
        const leaseMs = leaseLengthMs(this.options.leaseMs, pool);
        const secret = newLeaseSecret();
        const lease: Lease = {
          id: randomUUID(),
          poolId: pool.id,
          product: selection.product,
          user: client.user,
          host: client.host,
          instance: client.instance,
          remote: client.remote,
          listener: client.listener,
          grantedAt: now,
          renewedAt: now,
          expiresAt: leaseEnd(now, leaseMs, pool),
          leaseMs,
          secretHash: secret.hash,
        };
        tx.insertLease(lease);
        tx.appendEvent({
          ts: now,
          event: 'granted',
          ...who(lease),
          seatsInUse: inUse + 1,
          seatsTotal: pool.seats,
          message: verdict.logAll ? `user ${client.user} now holds ${tx.countHeld(client.listener, client.user, now)} lease(s) on listener ${client.listener}` : null,
        });
        return { ok: true, lease, renewed: false, secret: secret.secret };
      }
      const ids = selection.pools.map((p) => p.id);
      const next = tx.earliestExpiry(ids, now);
      const retryAfterMs = Math.min(10_000, Math.max(1_000, next === undefined ? 10_000 : next - now));
      const total = selection.pools.reduce((n, p) => n + p.seats, 0);
      return denied(
        deny(
          'NO_FREE_SEATS',
          selection.pools.every((p) => p.kind === 'evaluation') ? `all ${total} evaluation seat(s) are in use (they serve every product)` : `all ${total} seat(s) of "${selection.product}" are in use`,
          { retryAfterMs },
        ),
        selection.pools.length === 1 ? selection.pools[0]!.id : null,
        { seatsInUse: total, seatsTotal: total },
      );
    });
    this.notify(ended, outcome.ok ? outcome.lease.expiresAt : undefined, LeaseService.tallyOf(outcome));
    return outcome;
  }

  /** Extends a lease the client holds. */
  renew(client: Pick<ClientIdentity, 'user' | 'instance'>, leaseId: string, proof: LeaseProof = NO_PROOF): LeaseOutcome {
    const now = this.clock.now();
    const ended: Array<[Lease, LeaseEndKind, string | null]> = [];
    const outcome = this.store.transact((tx): LeaseOutcome => {
      const lease = tx.findLease(leaseId);
      if (lease === undefined) {
        const revoked = this.revokedReasons.get(leaseId);
        return revoked === undefined
          ? deny('LEASE_NOT_FOUND', `no lease ${leaseId}; acquire a new one`)
          : deny('LEASE_NOT_FOUND', `lease ${leaseId} was revoked (${revoked}); acquire a new one`, { reason: revoked });
      }
      if (!holds(lease, client)) return deny('LEASE_NOT_YOURS', `lease ${leaseId} is held by another client instance`);
      if (!proven(lease, proof)) return secretMismatch(leaseId, proof, 'renewing');
      if (lease.expiresAt <= now) {
        this.expireInTx(tx, lease, now, ended);
        return deny('LEASE_EXPIRED', `lease ${leaseId} expired at ${new Date(lease.expiresAt).toISOString()}; acquire a new one`);
      }
      const pool = this.pools.get(lease.poolId);
      if (pool === undefined || !poolIsValid(pool, this.pools.judgedAt(now))) {
        const reason =
          pool === undefined
            ? 'its license key was removed'
            : pool.expiresAt !== null && now >= pool.expiresAt
              ? `its license key expired at ${new Date(pool.expiresAt).toISOString()}`
              : 'its license key is not valid now';
        this.revokeInTx(tx, lease, now, reason, ended);
        return deny('LICENSE_EXPIRED', `lease ${leaseId} cannot be renewed: ${reason}`);
      }
      const blocked = this.pools.blocked(pool.id);
      if (blocked !== null) {
        this.revokeInTx(tx, lease, now, blocked, ended);
        return deny('NOT_ACTIVATED', `lease ${leaseId} cannot be renewed: ${blocked}`);
      }
      return { ok: true, lease: this.extendInTx(tx, lease, pool, now, false), renewed: true };
    });
    this.notify(ended, outcome.ok ? outcome.lease.expiresAt : undefined, outcome.ok ? LeaseService.tallyOf(outcome) : undefined);
    return outcome;
  }

  /** Gives a seat back. Releasing an unknown or already ended lease is fine. */
  release(client: Pick<ClientIdentity, 'user' | 'instance'>, leaseId: string, proof: LeaseProof = NO_PROOF): { ok: true; released: boolean } | Denial {
    const now = this.clock.now();
    const ended: Array<[Lease, LeaseEndKind, string | null]> = [];
    const outcome = this.store.transact((tx) => {
      const lease = tx.findLease(leaseId);
      if (lease === undefined) return { ok: true as const, released: false };
      if (!holds(lease, client)) return deny('LEASE_NOT_YOURS', `lease ${leaseId} is held by another client instance`);
      if (!proven(lease, proof)) return secretMismatch(leaseId, proof, 'releasing');
      tx.deleteLease(lease.id);
      const pool = this.pools.get(lease.poolId);
      tx.appendEvent({
        ts: now,
        event: lease.expiresAt <= now ? 'expired' : 'released',
        ...who(lease),
        seatsInUse: pool ? tx.countActive(pool.id, now) : null,
        seatsTotal: pool?.seats ?? null,
      });
      ended.push([lease, lease.expiresAt <= now ? 'expired' : 'released', null]);
      return { ok: true as const, released: true };
    });
    this.notify(ended);
    return outcome;
  }

  /** Ends every lease whose expiry has passed; returns how many. */
  sweep(): number {
    return this.sweepFor(Infinity).swept;
  }

  /**
   * Ends leases whose expiry has passed, in transactions of up to 500, until
   * none is left or the transaction that used up `budgetMs` has committed;
   * `more` says some are left (to sweep on a later turn of the event loop, so
   * that requests are answered in between).
   */
  sweepFor(budgetMs: number): { swept: number; more: boolean } {
    const now = this.clock.now();
    const started = this.clock.monotonic();
    let swept = 0;
    for (;;) {
      const ended: Array<[Lease, LeaseEndKind, string | null]> = [];
      const active = new Map<string, number>();
      const n = this.store.transact((tx) => {
        const expired = tx.expiredLeases(now, SWEEP_BATCH);
        for (const lease of expired) this.expireInTx(tx, lease, now, ended, active);
        return expired.length;
      });
      this.notify(ended);
      swept += n;
      if (n < SWEEP_BATCH) return { swept, more: false };
      if (this.clock.monotonic() - started >= budgetMs) return { swept, more: true };
    }
  }

  /**
   * The wall clock moved `shiftMs` against the monotonic one, and lease time is
   * about to take its side: moves every lease's renewal and expiry time by as
   * much, in one transaction with its lease-log entry, so each lease keeps
   * exactly the time it had left. A lease never outlives its key, so one moved
   * past its key's expiry ends at the key's.
   */
  clockJumped(shiftMs: number, describe: (moved: number) => string): { moved: number; message: string } {
    const at = this.clock.now() + shiftMs;
    return this.store.transact((tx) => {
      const moved = tx.shiftExpiries(shiftMs);
      if (shiftMs > 0) {
        for (const lease of this.store.allLeases()) {
          const end = this.pools.get(lease.poolId)?.expiresAt ?? null;
          if (end !== null && lease.expiresAt > end) tx.updateExpiry(lease.id, lease.renewedAt, end);
        }
      }
      const message = describe(moved);
      tx.appendEvent({ ts: at, event: 'clock-jump', message });
      return { moved, message };
    });
  }

  /**
   * At start, when stored wall-clock times rule: a lease can have no more than
   * its full length left (it never had more when it was renewed), so a clock
   * turned back while the server was stopped cannot keep a dead client's seat
   * for that much longer. Returns how many leases were cut short.
   */
  capRemaining(): number {
    const now = this.clock.now();
    return this.store.transact((tx) => {
      let cut = 0;
      for (const lease of this.store.allLeases()) {
        if (lease.expiresAt <= now + lease.leaseMs) continue;
        tx.updateExpiry(lease.id, now, now + lease.leaseMs);
        cut++;
      }
      return cut;
    });
  }

  /** Revokes the leases of pools that are gone or no longer valid. */
  revokeInvalid(reasonFor: (poolId: string) => string | null): number {
    const now = this.clock.now();
    const ended: Array<[Lease, LeaseEndKind, string | null]> = [];
    this.store.transact((tx) => {
      for (const lease of this.store.allLeases()) {
        const reason = reasonFor(lease.poolId);
        if (reason !== null) this.revokeInTx(tx, lease, now, reason, ended);
      }
    });
    this.notify(ended);
    return ended.length;
  }
}
