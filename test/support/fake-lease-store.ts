import { CommitQueue } from '../../src/domain/commit-queue.js';
import type { EventFilter, LeaseEvent, LeaseEventInput } from '../../src/domain/events.js';
import type { Lease } from '../../src/domain/lease.js';
import type { LeaseStore, LeaseTx, StoredLicense } from '../../src/domain/ports.js';

/** An in-memory LeaseStore. The contract suite runs against it and SQLite alike. */
export class FakeLeaseStore implements LeaseStore {
  private leases = new Map<string, Lease>();
  private events: LeaseEvent[] = [];
  private meta = new Map<string, string>();
  private licenses: StoredLicense[] = [];
  private nextEventId = 1;
  private version = 0;

  private readonly tx: LeaseTx = {
    findLease: (id) => this.leases.get(id),
    findLeaseByHolder: (user, instance, product) =>
      [...this.leases.values()].find((l) => l.user === user && l.instance === instance && l.product === product),
    countActive: (poolId, now) => [...this.leases.values()].filter((l) => l.poolId === poolId && l.expiresAt > now).length,
    countHeld: (listener, user, now, product) =>
      [...this.leases.values()].filter(
        (l) => l.listener === listener && l.user === user && l.expiresAt > now && (product === undefined || l.product === product),
      ).length,
    countGrantsSince: (listener, user, since, product) =>
      this.events.filter(
        (e) => e.event === 'granted' && e.listener === listener && e.user === user && e.ts > since && (product === undefined || e.product === product),
      ).length,
    earliestExpiry: (poolIds, now) => {
      const times = [...this.leases.values()].filter((l) => poolIds.includes(l.poolId) && l.expiresAt > now).map((l) => l.expiresAt);
      return times.length === 0 ? undefined : Math.min(...times);
    },
    insertLease: (lease) => {
      for (const l of this.leases.values()) {
        if (l.user === lease.user && l.instance === lease.instance && l.product === lease.product) {
          throw new Error('UNIQUE constraint failed: leases.user, leases.instance, leases.product');
        }
      }
      this.leases.set(lease.id, { ...lease });
    },
    updateExpiry: (id, renewedAt, expiresAt) => {
      const l = this.leases.get(id);
      if (l) this.leases.set(id, { ...l, renewedAt, expiresAt });
    },
    shiftExpiries: (deltaMs) => {
      for (const [id, l] of this.leases) this.leases.set(id, { ...l, renewedAt: l.renewedAt + deltaMs, expiresAt: l.expiresAt + deltaMs });
      return this.leases.size;
    },
    deleteLease: (id) => void this.leases.delete(id),
    expiredLeases: (now, limit) =>
      [...this.leases.values()].filter((l) => l.expiresAt <= now).sort((a, b) => a.expiresAt - b.expiresAt).slice(0, limit),
    appendEvent: (event) => void this.events.push({ ...event, id: this.nextEventId++ }),
  };

  private readonly commits = new CommitQueue((err) => {
    throw err;
  });

  transact<T>(fn: (tx: LeaseTx) => T): T {
    return this.atomically(() => fn(this.tx));
  }

  batch(fn: () => void): void {
    this.atomically(fn);
  }

  afterCommit(fn: () => void): void {
    this.commits.afterCommit(fn);
  }

  private atomically<T>(fn: () => T): T {
    const saved = { leases: new Map(this.leases), events: [...this.events], next: this.nextEventId };
    return this.commits.within(() => {
      try {
        return fn();
      } catch (err) {
        this.leases = saved.leases;
        this.events = saved.events;
        this.nextEventId = saved.next;
        throw err;
      }
    });
  }

  nextExpiry(): number | undefined {
    const times = [...this.leases.values()].map((l) => l.expiresAt);
    return times.length === 0 ? undefined : Math.min(...times);
  }

  latestRecordedTime(): number | undefined {
    const times = [...this.events.map((e) => e.ts), ...[...this.leases.values()].map((l) => l.renewedAt)];
    return times.length === 0 ? undefined : Math.max(...times);
  }

  allLeases(): Lease[] {
    return [...this.leases.values()].sort((a, b) => a.product.localeCompare(b.product) || a.grantedAt - b.grantedAt);
  }

  getMeta(key: string): string | undefined {
    return this.meta.get(key);
  }

  setMeta(key: string, value: string): void {
    this.meta.set(key, value);
  }

  initMeta(key: string, value: string): string {
    if (!this.meta.has(key)) this.meta.set(key, value);
    return this.meta.get(key)!;
  }

  listLicenses(): StoredLicense[] {
    return [...this.licenses].sort((a, b) => a.addedAt - b.addedAt || a.id.localeCompare(b.id));
  }

  addLicense(license: StoredLicense, event: LeaseEventInput): void {
    if (this.licenses.some((l) => l.id === license.id)) throw new Error('UNIQUE constraint failed: licenses.id');
    this.licenses.push(license);
    this.tx.appendEvent(event);
  }

  removeLicense(id: string, event: LeaseEventInput): boolean {
    const before = this.licenses.length;
    this.licenses = this.licenses.filter((l) => l.id !== id);
    if (this.licenses.length === before) return false;
    this.tx.appendEvent(event);
    return true;
  }

  appendEvent(event: LeaseEventInput): void {
    this.tx.appendEvent(event);
  }

  queryEvents(f: EventFilter): LeaseEvent[] {
    const out = this.events.filter(
      (e) =>
        (f.afterId === undefined || e.id > f.afterId) &&
        (f.sinceMs === undefined || e.ts >= f.sinceMs) &&
        (f.untilMs === undefined || e.ts < f.untilMs) &&
        (f.user === undefined || e.user === f.user) &&
        (f.host === undefined || e.host === f.host) &&
        (f.product === undefined || e.product === f.product) &&
        (f.pool === undefined || e.poolId === f.pool) &&
        (f.events === undefined || f.events.length === 0 || f.events.includes(e.event)),
    );
    return f.limit === undefined ? out : out.slice(-f.limit);
  }

  pruneEvents(beforeMs: number): number {
    const before = this.events.length;
    this.events = this.events.filter((e) => e.ts >= beforeMs);
    return before - this.events.length;
  }

  checkpoint(): void {}

  changeCounter(): number {
    return this.version;
  }

  close(): void {}
}
