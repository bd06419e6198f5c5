import { randomUUID } from 'node:crypto';
import { blockedWho, type Block, type BlockScope } from '../domain/blocks.js';
import type { Clock } from '../domain/clock.js';
import { deny, type Denial } from '../domain/errors.js';
import type { LeaseEventInput } from '../domain/events.js';
import { OPEN_GATE, type AcquireGate } from '../domain/gate.js';
import { holds, NO_PROOF, type ClientIdentity, type Lease, type LeaseProof } from '../domain/lease.js';
import {
  allFull,
  decideHeld,
  decideNewSeat,
  decideRelease,
  decideRenew,
  decideSweep,
  renewCounts,
  revoke as revokeLease,
  type Decision,
  type LeaseChanges,
  type LeaseEndKind,
  type PoolSeats,
  type Settings,
} from '../domain/lease-decisions.js';
import { poolIsValid } from '../domain/pool.js';
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

export type { LeaseEndKind } from '../domain/lease-decisions.js';

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

type Ended = [Lease, LeaseEndKind, string | null];
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

  private get settings(): Settings {
    return { leaseMs: this.options.leaseMs, logRenewals: this.options.logLevel === 'detailed' };
  }

  /** The pool of `poolId`, when it is still there, with its running leases counted. */
  private seatsOf(tx: LeaseTx, poolId: string, now: number): PoolSeats | undefined {
    const pool = this.pools.get(poolId);
    return pool === undefined ? undefined : { pool, inUse: tx.countActive(pool.id, now) };
  }

  /** Writes a decision's rows, then its lease-log entries, in the transaction; its ended leases join `ended`. */
  private apply(tx: LeaseTx, changes: LeaseChanges, ended: Ended[]): void {
    for (const w of changes.writes) {
      if (w.op === 'insert') tx.insertLease(w.lease);
      else if (w.op === 'extend') tx.updateExpiry(w.leaseId, w.renewedAt, w.expiresAt);
      else tx.deleteLease(w.leaseId);
    }
    for (const e of changes.log) tx.appendEvent(e);
    for (const e of changes.ended) ended.push([e.lease, e.kind, e.reason]);
  }

  /**
   * Ends a lease at once (an operator's revoke). The connected holder is told
   * (`revoked`); a holder that renews later is told why its lease is gone.
   */
  revoke(leaseId: string, reason: string, actor: string, block?: { readonly seconds: number; readonly scope: BlockScope }): { ok: true; lease: Lease; block: Block | null } | Denial {
    const now = this.clock.now();
    const ended: Ended[] = [];
    const outcome = this.store.transact((tx): { ok: true; lease: Lease; block: Block | null } | Denial => {
      const lease = tx.findLease(leaseId);
      if (lease === undefined) return deny('LEASE_NOT_FOUND', `no lease ${leaseId}`);
      const until = block === undefined ? null : now + block.seconds * 1000;
      const keptOut = until === null ? '' : `; ${block!.scope === 'user' ? 'the user' : 'the instance'} is kept out of ${lease.product} until ${new Date(until).toISOString()}`;
      this.apply(tx, revokeLease(lease, now, `by ${actor}: ${reason}${keptOut}`, actor), ended);
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
  private notify(ended: readonly Ended[], expiry?: number, tally?: Tally): void {
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

  /** Takes a seat for `client`, or returns the lease it already holds, renewed. */
  acquire(client: ClientIdentity, product: string | undefined, proof: LeaseProof = NO_PROOF): LeaseOutcome {
    const now = this.clock.now();
    const ended: Ended[] = [];
    const settings = this.settings;
    const outcome = this.store.transact((tx): LeaseOutcome => {
      const denied = (d: Denial, at: Decision<unknown>['deniedAt']): Denial => {
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
          poolId: at?.poolId ?? null,
          code: d.code,
          reason: typeof d.details.reason === 'string' ? d.details.reason : null,
          message: d.message,
          ...(at?.seatsTotal === undefined ? {} : { seatsInUse: at.seatsInUse ?? null, seatsTotal: at.seatsTotal }),
        }, denialWindow(now));
        return d;
      };
      const selection = this.pools.select(product, now);
      if (!selection.ok) return denied(selection, undefined);
      const existing = tx.findLeaseByHolder(client.user, client.instance, selection.product);
      const held =
        existing === undefined
          ? undefined
          : (() => {
              const pool = this.seatsOf(tx, existing.poolId, now);
              const grantable = pool !== undefined && poolIsValid(pool.pool, this.pools.judgedAt(now)) && this.pools.blocked(pool.pool.id) === null;
              return { lease: existing, pool, grantable, proven: grantable && existing.expiresAt > now ? proven(existing, proof) : true };
            })();
      const first = decideHeld(held, now, settings, () => secretMismatch(existing!.id, proof, 'acquiring'));
      if ('done' in first) {
        this.apply(tx, first.done, ended);
        return first.done.outcome.ok ? first.done.outcome : denied(first.done.outcome, first.done.deniedAt);
      }
      this.apply(tx, first.next, ended);
      const block = tx.activeBlock(client.user, client.instance, selection.product, now) ?? null;
      const verdict = block === null ? this.gate.check(client, selection.product, now, tx) : { allowed: true as const, logAll: false };
      const pools = selection.pools.map((pool) => ({ pool, inUse: tx.countActive(pool.id, now) }));
      const secret = newLeaseSecret();
      const decision = decideNewSeat(
        {
          client,
          product: selection.product,
          now,
          block,
          verdict,
          pools,
          fresh: { id: randomUUID(), secretHash: secret.hash },
          heldOnListener: verdict.allowed && verdict.logAll ? tx.countHeld(client.listener, client.user, now) : null,
          earliestExpiry: allFull(pools) ? tx.earliestExpiry(pools.map((p) => p.pool.id), now) : undefined,
        },
        settings,
      );
      this.apply(tx, decision, ended);
      if (!decision.outcome.ok) return denied(decision.outcome, decision.deniedAt);
      return { ...decision.outcome, secret: secret.secret };
    });
    this.notify(ended, outcome.ok ? outcome.lease.expiresAt : undefined, LeaseService.tallyOf(outcome));
    return outcome;
  }

  /** Extends a lease the client holds. */
  renew(client: Pick<ClientIdentity, 'user' | 'instance'>, leaseId: string, proof: LeaseProof = NO_PROOF): LeaseOutcome {
    const now = this.clock.now();
    const ended: Ended[] = [];
    const settings = this.settings;
    const outcome = this.store.transact((tx): LeaseOutcome => {
      const lease = tx.findLease(leaseId);
      const pool = lease === undefined ? undefined : this.pools.get(lease.poolId);
      const mine = lease !== undefined && holds(lease, client);
      const decision = decideRenew(
        {
          leaseId,
          lease,
          now,
          holds: mine,
          proven: mine && proven(lease, proof),
          revokedReason: lease === undefined ? this.revokedReasons.get(leaseId) : undefined,
          pool,
          inUse: pool !== undefined && renewCounts(lease, now, settings) ? tx.countActive(pool.id, now) : null,
          poolValid: pool !== undefined && poolIsValid(pool, this.pools.judgedAt(now)),
          blocked: pool === undefined ? null : this.pools.blocked(pool.id),
        },
        settings,
        () => secretMismatch(leaseId, proof, 'renewing'),
      );
      this.apply(tx, decision, ended);
      return decision.outcome;
    });
    this.notify(ended, outcome.ok ? outcome.lease.expiresAt : undefined, outcome.ok ? LeaseService.tallyOf(outcome) : undefined);
    return outcome;
  }

  /** Gives a seat back. Releasing an unknown or already ended lease is fine. */
  release(client: Pick<ClientIdentity, 'user' | 'instance'>, leaseId: string, proof: LeaseProof = NO_PROOF): { ok: true; released: boolean } | Denial {
    const now = this.clock.now();
    const ended: Ended[] = [];
    const outcome = this.store.transact((tx) => {
      const lease = tx.findLease(leaseId);
      const mine = lease !== undefined && holds(lease, client);
      const canEnd = mine && proven(lease, proof);
      const decision = decideRelease(
        { leaseId, lease, now, holds: mine, proven: canEnd, pool: canEnd ? this.seatsOf(tx, lease.poolId, now) : undefined },
        () => secretMismatch(leaseId, proof, 'releasing'),
      );
      this.apply(tx, decision, ended);
      return decision.outcome;
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
      const ended: Ended[] = [];
      const n = this.store.transact((tx) => {
        const expired = tx.expiredLeases(now, SWEEP_BATCH);
        // Running leases counted once per pool: taking expired ones away leaves that count as it is.
        const pools = new Map<string, PoolSeats>();
        for (const lease of expired) {
          if (pools.has(lease.poolId)) continue;
          const seats = this.seatsOf(tx, lease.poolId, now);
          if (seats !== undefined) pools.set(lease.poolId, seats);
        }
        this.apply(tx, decideSweep(expired, now, pools), ended);
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
    const ended: Ended[] = [];
    this.store.transact((tx) => {
      for (const lease of this.store.allLeases()) {
        const reason = reasonFor(lease.poolId);
        if (reason !== null) this.apply(tx, revokeLease(lease, now, reason), ended);
      }
    });
    this.notify(ended);
    return ended.length;
  }
}
