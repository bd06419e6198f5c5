import type { AcquireGate, GateVerdict } from '../gate.js';
import type { ClientIdentity } from '../lease.js';
import type { LeaseTx } from '../ports.js';
import { decide, type RuleBook } from './limits.js';

/**
 * Enforces a RuleBook at acquire time. Counts come from the durable lease
 * table and lease log inside the acquire transaction, so neither a reload
 * nor a restart resets them.
 */
export class RuleGate implements AcquireGate {
  constructor(readonly book: RuleBook) {}

  check(who: ClientIdentity, product: string, now: number, tx: LeaseTx): GateVerdict {
    const limits = this.book.limitsFor({ listener: who.listener, user: who.user, groups: who.groups, product });
    if (!limits.blocked && limits.counts.length === 0 && limits.frequencies.length === 0) {
      return { allowed: true, logAll: this.book.logAll };
    }
    const decision = decide(limits, who, now, {
      held: (p) => tx.countHeld(who.listener, who.user, now, p ?? undefined),
      acquiredSince: (since, p) => tx.countGrantsSince(who.listener, who.user, since, p ?? undefined),
    });
    return decision.allowed ? { allowed: true, logAll: this.book.logAll } : decision;
  }
}
