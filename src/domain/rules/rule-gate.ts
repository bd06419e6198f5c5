import type { AcquireGate, GateVerdict } from '../gate.js';
import type { ClientIdentity } from '../lease.js';
import type { RuleUsage } from '../ports.js';
import { decide, type EffectiveLimits, type RuleBook, type Usage } from './limits.js';

/**
 * Enforces a RuleBook at acquire time. Counts come from the durable lease
 * table and lease log inside the acquire transaction, so neither a reload
 * nor a restart resets them.
 */
export class RuleGate implements AcquireGate {
  constructor(readonly book: RuleBook) {}

  async check(who: ClientIdentity, product: string, now: number, usage: RuleUsage): Promise<GateVerdict> {
    const limits = this.book.limitsFor({ listener: who.listener, user: who.user, groups: who.groups, product });
    if (!limits.blocked && limits.counts.length === 0 && limits.frequencies.length === 0) {
      return { allowed: true, logAll: this.book.logAll };
    }
    const decision = decide(limits, who, now, await counted(limits, now, usage));
    return decision.allowed ? { allowed: true, logAll: this.book.logAll } : decision;
  }
}

const scope = (product: string | null): string => product ?? '';

/** Reads every count the limits name (the store may be across the network), for `decide` to judge at once. */
async function counted(limits: EffectiveLimits, now: number, usage: RuleUsage): Promise<Usage> {
  const held = new Map<string, number>();
  const since = new Map<string, number>();
  if (!limits.blocked) {
    for (const f of limits.frequencies) since.set(`${now - f.periodMs}\u0000${scope(f.product)}`, await usage.acquiredSince(now - f.periodMs, f.product));
    for (const c of limits.counts) if (!held.has(scope(c.product))) held.set(scope(c.product), await usage.held(c.product));
  }
  return {
    held: (product) => held.get(scope(product)) ?? 0,
    acquiredSince: (sinceMs, product) => since.get(`${sinceMs}\u0000${scope(product)}`) ?? 0,
  };
}
