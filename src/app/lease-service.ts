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
  type LeaseEnded,
  type HeldLease,
  type LeaseEndKind,
  type PoolSeats,
  type Settings,
} from '../domain/lease-decisions.js';
import { poolIsValid } from '../domain/pool.js';
import type { DenialWindow, LeaseStore, LeaseUnit } from '../domain/ports.js';
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
/** Lease time for a unit: the store's clock when it keeps one (a shared database), else the server's. */
function leaseTime(u: LeaseUnit, clock: Clock): number {
  return u.now === undefined ? clock.now() : u.now();
}

export class LeaseService {
  private gate: AcquireGate = OPEN_GATE;

  constructor(
    private readonly store: Pick<LeaseStore, 'unit'>,
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
  private async seatsOf(u: LeaseUnit, poolId: string, now: number): Promise<PoolSeats | undefined> {
    const pool = this.pools.get(poolId);
    return pool === undefined ? undefined : { pool, inUse: await u.seatsInUse(pool.id, now, pool.seats) };
  }

  /** Writes a decision's rows, then its lease-log entries, in the unit; its ended leases are told after the commit. */
  private async apply(u: LeaseUnit, changes: LeaseChanges): Promise<void> {
    await u.apply(changes);
    if (changes.ended.length > 0) this.publishEnded(u, changes.ended);
  }

  /**
   * Ends a lease at once (an operator's revoke). The connected holder is told
   * (`revoked`); a holder that renews later is told why its lease is gone.
   */
  revoke(leaseId: string, reason: string, actor: string, block?: { readonly seconds: number; readonly scope: BlockScope }): Promise<{ ok: true; lease: Lease; block: Block | null } | Denial> {
    return this.store.unit(async (u): Promise<{ ok: true; lease: Lease; block: Block | null } | Denial> => {
      const now = leaseTime(u, this.clock);
      const lease = await u.findLease(leaseId);
      if (lease === undefined) return deny('LEASE_NOT_FOUND', `no lease ${leaseId}`);
      const until = block === undefined ? null : now + block.seconds * 1000;
      const keptOut = until === null ? '' : `; ${block!.scope === 'user' ? 'the user' : 'the instance'} is kept out of ${lease.product} until ${new Date(until).toISOString()}`;
      await this.apply(u, revokeLease(lease, now, `by ${actor}: ${reason}${keptOut}`, actor));
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
      await u.insertBlock(made);
      await u.appendEvent({
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
  }

  /** Lifts a block before its end (`floatd admin unblock`). */
  unblock(blockId: string, actor: string): Promise<{ ok: true; block: Block } | Denial> {
    return this.store.unit(async (u): Promise<{ ok: true; block: Block } | Denial> => {
      const now = leaseTime(u, this.clock);
      const block = await u.deleteBlock(blockId);
      if (block === undefined || block.until <= now) return deny('BLOCK_NOT_FOUND', `no block in force has id ${blockId} (see floatd admin blocks)`);
      await u.appendEvent({
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

  /** Tells the hooks of ended leases once the unit has committed; never if it rolls back. */
  private publishEnded(u: LeaseUnit, ended: readonly LeaseEnded[]): void {
    u.publish(() => {
      for (const { lease, kind, reason } of ended) {
        if (kind === 'revoked' && reason !== null) this.rememberRevoked(lease.id, reason);
        this.hooks.leaseEnded?.(lease, kind, reason);
      }
    });
  }

  /** Tells the hooks of a set expiry and of the operation, once the unit has committed. */
  private publishOutcome(u: LeaseUnit, outcome: LeaseOutcome, tally: boolean): void {
    u.publish(() => {
      if (outcome.ok) this.hooks.expiryScheduled?.(outcome.lease.expiresAt);
      if (tally) this.hooks.tally?.(LeaseService.tallyOf(outcome));
    });
  }

  private static tallyOf(outcome: LeaseOutcome): Tally {
    if (outcome.ok) return { kind: outcome.renewed ? 'renewed' : 'granted', product: outcome.lease.product };
    return { kind: 'denied', code: outcome.code, reason: typeof outcome.details.reason === 'string' ? outcome.details.reason : null };
  }

  /** Records a denied acquire in the lease log; repeats within the minute only count up their entry (a retrying client, a flooding peer). */
  private async denied(u: LeaseUnit, client: ClientIdentity, product: string | undefined, now: number, d: Denial, at: Decision<unknown>['deniedAt']): Promise<Denial> {
    await u.recordDenial(
      {
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
      },
      denialWindow(now),
    );
    return d;
  }

  /** Takes a seat for `client`, or returns the lease it already holds, renewed. */
  acquire(client: ClientIdentity, product: string | undefined, proof: LeaseProof = NO_PROOF, source = ''): Promise<LeaseOutcome> {
    return this.store.unit(async (u) => {
      const outcome = await this.acquireIn(u, client, product, proof);
      this.publishOutcome(u, outcome, true);
      return outcome;
    }, { source });
  }

  private async acquireIn(u: LeaseUnit, client: ClientIdentity, product: string | undefined, proof: LeaseProof): Promise<LeaseOutcome> {
    const now = leaseTime(u, this.clock);
    const settings = this.settings;
    const selection = this.pools.select(product, now);
    if (!selection.ok) return this.denied(u, client, product, now, selection, undefined);
    const existing = await u.findByHolder(client.user, client.instance, selection.product);
    let held: HeldLease | undefined;
    if (existing !== undefined) {
      const pool = await this.seatsOf(u, existing.poolId, now);
      const grantable = pool !== undefined && poolIsValid(pool.pool, this.pools.judgedAt(now)) && this.pools.blocked(pool.pool.id) === null;
      held = { lease: existing, pool, grantable, proven: grantable && existing.expiresAt > now ? proven(existing, proof) : true };
    }
    const first = decideHeld(held, now, settings, () => secretMismatch(existing!.id, proof, 'acquiring'));
    if ('done' in first) {
      await this.apply(u, first.done);
      return first.done.outcome.ok ? first.done.outcome : this.denied(u, client, product, now, first.done.outcome, first.done.deniedAt);
    }
    await this.apply(u, first.next);
    const block = (await u.activeBlock(client.user, client.instance, selection.product, now)) ?? null;
    const verdict = block === null ? await this.gate.check(client, selection.product, now, u.ruleUsage(client.listener, client.user, now)) : { allowed: true as const, logAll: false };
    const pools: PoolSeats[] = [];
    for (const pool of selection.pools) pools.push({ pool, inUse: await u.seatsInUse(pool.id, now, pool.seats) });
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
        heldOnListener: verdict.allowed && verdict.logAll ? await u.ruleUsage(client.listener, client.user, now).held(null) : null,
        earliestExpiry: allFull(pools) ? await u.earliestExpiry(pools.map((p) => p.pool.id), now) : undefined,
      },
      settings,
    );
    await this.apply(u, decision);
    if (!decision.outcome.ok) return this.denied(u, client, product, now, decision.outcome, decision.deniedAt);
    return { ...decision.outcome, secret: secret.secret };
  }

  /** Extends a lease the client holds. */
  renew(client: Pick<ClientIdentity, 'user' | 'instance'>, leaseId: string, proof: LeaseProof = NO_PROOF, source = ''): Promise<LeaseOutcome> {
    return this.store.unit(async (u) => {
      const now = leaseTime(u, this.clock);
      const settings = this.settings;
      const lease = await u.findLease(leaseId);
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
          inUse: pool !== undefined && renewCounts(lease, now, settings) ? await u.seatsInUse(pool.id, now, pool.seats, 'read') : null,
          poolValid: pool !== undefined && poolIsValid(pool, this.pools.judgedAt(now)),
          blocked: pool === undefined ? null : this.pools.blocked(pool.id),
        },
        settings,
        () => secretMismatch(leaseId, proof, 'renewing'),
      );
      await this.apply(u, decision);
      this.publishOutcome(u, decision.outcome, decision.outcome.ok);
      return decision.outcome;
    }, { source });
  }

  /** Gives a seat back. Releasing an unknown or already ended lease is fine. */
  release(client: Pick<ClientIdentity, 'user' | 'instance'>, leaseId: string, proof: LeaseProof = NO_PROOF, source = ''): Promise<{ ok: true; released: boolean } | Denial> {
    return this.store.unit(async (u) => {
      const now = leaseTime(u, this.clock);
      const lease = await u.findLease(leaseId);
      const mine = lease !== undefined && holds(lease, client);
      const canEnd = mine && proven(lease, proof);
      const decision = decideRelease(
        { leaseId, lease, now, holds: mine, proven: canEnd, pool: canEnd ? await this.seatsOf(u, lease.poolId, now) : undefined },
        () => secretMismatch(leaseId, proof, 'releasing'),
      );
      await this.apply(u, decision);
      return decision.outcome;
    }, { source });
  }

  /** Ends every lease whose expiry has passed; returns how many. */
  async sweep(): Promise<number> {
    return (await this.sweepFor(Infinity)).swept;
  }

  /**
   * Ends leases whose expiry has passed, in units of up to 500, until none is
   * left or the unit that used up `budgetMs` has committed; `more` says some
   * are left (to sweep on a later turn of the event loop, so that requests
   * are answered in between).
   */
  async sweepFor(budgetMs: number): Promise<{ swept: number; more: boolean }> {
    const started = this.clock.monotonic();
    let swept = 0;
    for (;;) {
      const n = await this.store.unit(async (u) => {
        // Lease time as the unit runs: a clock jump committed before it has moved the stored expiries and the clock together.
        const now = leaseTime(u, this.clock);
        const expired = await u.expiredLeases(now, SWEEP_BATCH);
        // Running leases counted once per pool: taking expired ones away leaves that count as it is.
        const pools = new Map<string, PoolSeats>();
        for (const lease of expired) {
          if (pools.has(lease.poolId)) continue;
          const seats = await this.seatsOf(u, lease.poolId, now);
          if (seats !== undefined) pools.set(lease.poolId, seats);
        }
        await this.apply(u, decideSweep(expired, now, pools));
        return expired.length;
      });
      swept += n;
      if (n < SWEEP_BATCH) return { swept, more: false };
      if (this.clock.monotonic() - started >= budgetMs) return { swept, more: true };
    }
  }

  /**
   * The wall clock moved `shiftMs` against the monotonic one, and lease time
   * takes its side: moves every lease's renewal and expiry time by as much, in
   * one unit with its lease-log entry, so each lease keeps exactly the time it
   * had left. A lease never outlives its key, so one moved past its key's
   * expiry ends at the key's. `rebase` moves lease time in the same unit (and
   * `rebase(-shiftMs)` takes it back if the unit rolls back), so units after
   * it judge expiries on the moved clock.
   */
  clockJumped(shiftMs: number, describe: (moved: number) => string, rebase: (shiftMs: number) => void): Promise<{ moved: number; message: string }> {
    return this.store.unit(async (u) => {
      const at = this.clock.now() + shiftMs;
      const moved = await u.shiftExpiries(shiftMs);
      if (shiftMs > 0) {
        const writes: LeaseChanges['writes'][number][] = [];
        for (const lease of await u.leases()) {
          const end = this.pools.get(lease.poolId)?.expiresAt ?? null;
          if (end !== null && lease.expiresAt > end) writes.push({ op: 'extend', leaseId: lease.id, renewedAt: lease.renewedAt, expiresAt: end });
        }
        await u.apply({ writes, log: [] });
      }
      const message = describe(moved);
      await u.appendEvent({ ts: at, event: 'clock-jump', message });
      rebase(shiftMs);
      u.onRollback(() => rebase(-shiftMs));
      return { moved, message };
    });
  }

  /**
   * At start, when stored wall-clock times rule: a lease can have no more than
   * its full length left (it never had more when it was renewed), so a clock
   * turned back while the server was stopped cannot keep a dead client's seat
   * for that much longer. Returns how many leases were cut short.
   */
  capRemaining(): Promise<number> {
    return this.store.unit(async (u) => {
      const now = leaseTime(u, this.clock);
      const writes: LeaseChanges['writes'][number][] = [];
      for (const lease of await u.leases()) {
        if (lease.expiresAt > now + lease.leaseMs) writes.push({ op: 'extend', leaseId: lease.id, renewedAt: now, expiresAt: now + lease.leaseMs });
      }
      await u.apply({ writes, log: [] });
      return writes.length;
    });
  }

  /** Revokes the leases of pools that are gone or no longer valid; returns how many. */
  revokeInvalid(reasonFor: (poolId: string) => string | null): Promise<number> {
    return this.store.unit(async (u) => {
      const now = leaseTime(u, this.clock);
      let n = 0;
      for (const lease of await u.leases()) {
        const reason = reasonFor(lease.poolId);
        if (reason === null) continue;
        await this.apply(u, revokeLease(lease, now, reason));
        n++;
      }
      return n;
    });
  }
}
