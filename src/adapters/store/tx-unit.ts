import type { Block } from '../../domain/blocks.js';
import type { LeaseEventInput } from '../../domain/events.js';
import type { Lease } from '../../domain/lease.js';
import type { LeaseWrite } from '../../domain/lease-decisions.js';
import type { DenialWindow, LeaseTx, LeaseUnit, RuleUsage } from '../../domain/ports.js';

/** What a store gives a unit built over its synchronous transaction view. */
export interface TxUnitParts {
  readonly tx: LeaseTx;
  /** Every lease, read inside the transaction. */
  readonly leases: () => Lease[];
  readonly publish: (fn: () => void) => void;
  readonly onRollback: (fn: () => void) => void;
}

/** `fn`'s result as a settled promise: a throw becomes a rejection, as a database call's failure would. */
function settled<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * A LeaseUnit over a store's synchronous transaction view (SQLite, memory):
 * each call runs at once and its promise is already settled, so a unit that
 * awaits only the store runs to its end without giving the event loop a turn.
 * One object per unit, its methods on the prototype: the lease path makes
 * thousands of units a second.
 */
export class TxUnit implements LeaseUnit {
  private readonly tx: LeaseTx;

  constructor(private readonly parts: TxUnitParts) {
    this.tx = parts.tx;
  }

  findLease(id: string): Promise<Lease | undefined> {
    return settled(() => this.tx.findLease(id));
  }

  findByHolder(user: string, instance: string, product: string): Promise<Lease | undefined> {
    return settled(() => this.tx.findLeaseByHolder(user, instance, product));
  }

  seatsInUse(poolId: string, now: number): Promise<number> {
    return settled(() => this.tx.countActive(poolId, now));
  }

  earliestExpiry(poolIds: readonly string[], now: number): Promise<number | undefined> {
    return settled(() => this.tx.earliestExpiry(poolIds, now));
  }

  ruleUsage(listener: string, user: string, now: number): RuleUsage {
    const tx = this.tx;
    return {
      held: (product) => settled(() => tx.countHeld(listener, user, now, product ?? undefined)),
      acquiredSince: (sinceMs, product) => settled(() => tx.countGrantsSince(listener, user, sinceMs, product ?? undefined)),
    };
  }

  activeBlock(user: string, instance: string, product: string, now: number): Promise<Block | undefined> {
    return settled(() => this.tx.activeBlock(user, instance, product, now));
  }

  expiredLeases(now: number, limit: number): Promise<Lease[]> {
    return settled(() => this.tx.expiredLeases(now, limit));
  }

  leases(): Promise<Lease[]> {
    return settled(this.parts.leases);
  }

  apply(changes: { readonly writes: readonly LeaseWrite[]; readonly log: readonly LeaseEventInput[] }): Promise<void> {
    return settled(() => {
      const tx = this.tx;
      for (const w of changes.writes) {
        if (w.op === 'insert') tx.insertLease(w.lease);
        else if (w.op === 'extend') tx.updateExpiry(w.leaseId, w.renewedAt, w.expiresAt);
        else tx.deleteLease(w.leaseId);
      }
      for (const e of changes.log) tx.appendEvent(e);
    });
  }

  shiftExpiries(deltaMs: number): Promise<number> {
    return settled(() => this.tx.shiftExpiries(deltaMs));
  }

  recordDenial(event: LeaseEventInput, window: DenialWindow): Promise<void> {
    return settled(() => this.tx.recordDenial(event, window));
  }

  insertBlock(block: Block): Promise<void> {
    return settled(() => this.tx.insertBlock(block));
  }

  deleteBlock(id: string): Promise<Block | undefined> {
    return settled(() => this.tx.deleteBlock(id));
  }

  appendEvent(event: LeaseEventInput): Promise<void> {
    return settled(() => this.tx.appendEvent(event));
  }

  publish(fn: () => void): void {
    this.parts.publish(fn);
  }

  onRollback(fn: () => void): void {
    this.parts.onRollback(fn);
  }
}
