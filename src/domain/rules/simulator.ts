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
  readonly listener: string;
  readonly user: string;
  readonly product: string | null;
}

/**
 * Replays acquisitions and releases through the same decision logic the
 * server uses, on simulated time, with counters kept in memory: held leases
 * per (listener, user) and the times of accepted acquisitions.
 */
export class RuleSimulator {
  private readonly held = new Map<string, Held>();
  private readonly grants = new Map<string, Array<{ t: number; product: string | null }>>();

  constructor(private readonly book: RuleBook) {}

  acquire(a: SimAcquire): Decision {
    // Re-acquiring a lease already held is not a new acquisition.
    if (this.held.has(a.lease)) return { allowed: true };
    const key = `${a.listener}\u0000${a.user}`;
    const grants = this.grants.get(key) ?? [];
    const limits = this.book.limitsFor({ listener: a.listener, user: a.user, groups: a.groups, product: a.product });
    const decision = decide(limits, a, a.tMs, {
      held: (product) => {
        let n = 0;
        for (const h of this.held.values()) {
          if (h.listener === a.listener && h.user === a.user && (product === null || h.product === product)) n += 1;
        }
        return n;
      },
      acquiredSince: (since, product) => grants.filter((g) => g.t > since && (product === null || g.product === product)).length,
    });
    if (decision.allowed) {
      this.held.set(a.lease, { listener: a.listener, user: a.user, product: a.product });
      grants.push({ t: a.tMs, product: a.product });
      this.grants.set(key, grants);
    }
    return decision;
  }

  /** Ends a lease; unknown leases (never granted, or denied in the simulation) are ignored. */
  release(lease: string): void {
    this.held.delete(lease);
  }
}
