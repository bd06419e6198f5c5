import type { Lease } from '../../domain/lease.js';
import type { LeaseTx, LeaseUnit } from '../../domain/ports.js';

/** What a store gives a unit built over its synchronous transaction view. */
export interface TxUnitParts {
  readonly tx: LeaseTx;
  /** Every lease, read inside the transaction. */
  readonly leases: () => Lease[];
  readonly publish: (fn: () => void) => void;
  readonly onRollback: (fn: () => void) => void;
  /** Awaited before every call (a store that stands in for a networked one waits here); none: the call runs at once. */
  readonly before?: () => Promise<void>;
}

/**
 * A LeaseUnit over a store's synchronous transaction view (SQLite, memory):
 * each call runs at once and its promise is already settled, so a unit that
 * awaits only the store runs to its end without giving the event loop a turn.
 */
export function unitOverTx(p: TxUnitParts): LeaseUnit {
  const { tx } = p;
  const call = p.before === undefined
    ? <T>(fn: () => T): Promise<T> => {
        try {
          return Promise.resolve(fn());
        } catch (err) {
          return Promise.reject(err);
        }
      }
    : async <T>(fn: () => T): Promise<T> => {
        await p.before!();
        return fn();
      };
  return {
    findLease: (id) => call(() => tx.findLease(id)),
    findByHolder: (user, instance, product) => call(() => tx.findLeaseByHolder(user, instance, product)),
    seatsInUse: (poolId, now) => call(() => tx.countActive(poolId, now)),
    earliestExpiry: (poolIds, now) => call(() => tx.earliestExpiry(poolIds, now)),
    ruleUsage: (listener, user, now) => ({
      held: (product) => call(() => tx.countHeld(listener, user, now, product ?? undefined)),
      acquiredSince: (sinceMs, product) => call(() => tx.countGrantsSince(listener, user, sinceMs, product ?? undefined)),
    }),
    activeBlock: (user, instance, product, now) => call(() => tx.activeBlock(user, instance, product, now)),
    expiredLeases: (now, limit) => call(() => tx.expiredLeases(now, limit)),
    leases: () => call(p.leases),
    apply: (changes) =>
      call(() => {
        for (const w of changes.writes) {
          if (w.op === 'insert') tx.insertLease(w.lease);
          else if (w.op === 'extend') tx.updateExpiry(w.leaseId, w.renewedAt, w.expiresAt);
          else tx.deleteLease(w.leaseId);
        }
        for (const e of changes.log) tx.appendEvent(e);
      }),
    shiftExpiries: (deltaMs) => call(() => tx.shiftExpiries(deltaMs)),
    recordDenial: (event, window) => call(() => tx.recordDenial(event, window)),
    insertBlock: (block) => call(() => tx.insertBlock(block)),
    deleteBlock: (id) => call(() => tx.deleteBlock(id)),
    appendEvent: (event) => call(() => tx.appendEvent(event)),
    publish: p.publish,
    onRollback: p.onRollback,
  };
}
