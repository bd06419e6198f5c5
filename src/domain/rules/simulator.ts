import { decide, type Decision, type RuleBook } from './limits.js';

export interface SimAcquire {
  readonly tMs: number;
  readonly lease: string;
  readonly user: string;
  readonly groups: readonly string[];
  readonly listener: string;
  readonly product: string | null;
}

interface Held {
  /** `listener \0 user`: the counters' key. */
  readonly key: string;
  readonly product: string | null;
}

/**
 * Replays acquisitions and releases through the same decision logic the
 * server uses, on simulated time, with counters kept in memory: held leases
 * per (listener, user) and the times of accepted acquisitions.
 */
export class RuleSimulator {
  private readonly held = new Map<string, Held>();
  /** Products of the leases each (listener, user) holds, by lease id. */
  private readonly heldBy = new Map<string, Map<string, string | null>>();
  private readonly grants = new Map<string, Array<{ t: number; product: string | null }>>();

  constructor(private readonly book: RuleBook) {}

  acquire(a: SimAcquire): Decision {
    // Re-acquiring a lease already held is not a new acquisition.
    if (this.held.has(a.lease)) return { allowed: true };
    const key = `${a.listener}\u0000${a.user}`;
    const grants = this.grants.get(key) ?? [];
    const mine = this.heldBy.get(key) ?? new Map<string, string | null>();
    const limits = this.book.limitsFor({ listener: a.listener, user: a.user, groups: a.groups, product: a.product });
    const decision = decide(limits, a, a.tMs, {
      held: (product) => (product === null ? mine.size : [...mine.values()].filter((p) => p === product).length),
      acquiredSince: (since, product) => grants.filter((g) => g.t > since && (product === null || g.product === product)).length,
    });
    if (decision.allowed) {
      this.held.set(a.lease, { key, product: a.product });
      mine.set(a.lease, a.product);
      this.heldBy.set(key, mine);
      grants.push({ t: a.tMs, product: a.product });
      this.grants.set(key, grants);
    }
    return decision;
  }

  /** Ends a lease; unknown leases (never granted, or denied in the simulation) are ignored. */
  release(lease: string): void {
    const held = this.held.get(lease);
    if (held === undefined) return;
    this.held.delete(lease);
    this.heldBy.get(held.key)?.delete(lease);
  }
}
