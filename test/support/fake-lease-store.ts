import { CommitQueue } from '../../src/domain/commit-queue.js';
import type { EventFilter, LeaseEvent, LeaseEventInput } from '../../src/domain/events.js';
import { blockCovers, type Block } from '../../src/domain/blocks.js';
import type { Lease } from '../../src/domain/lease.js';
import type { LeaseStore, LeaseTx, LeaseUnit, StoredLicense } from '../../src/domain/ports.js';
import { CounterChangeFeed, SingleNode } from '../../src/adapters/store/single-node.js';
import { TxUnit } from '../../src/adapters/store/tx-unit.js';

/** A macrotask: what a call to a networked database costs at the least. */
const macrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** `unit` with a macrotask before every call that answers through a promise (rule counts too). */
function networked(unit: LeaseUnit): LeaseUnit {
  const late =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      await macrotask();
      return fn(...args);
    };
  return {
    findLease: late((id) => unit.findLease(id)),
    findByHolder: late((user, instance, product) => unit.findByHolder(user, instance, product)),
    seatsInUse: late((poolId, now, seats, intent) => unit.seatsInUse(poolId, now, seats, intent)),
    earliestExpiry: late((poolIds, now) => unit.earliestExpiry(poolIds, now)),
    ruleUsage: (listener, user, now) => {
      const usage = unit.ruleUsage(listener, user, now);
      return { held: late((p) => usage.held(p)), acquiredSince: late((since, p) => usage.acquiredSince(since, p)) };
    },
    activeBlock: late((user, instance, product, now) => unit.activeBlock(user, instance, product, now)),
    expiredLeases: late((now, limit) => unit.expiredLeases(now, limit)),
    leases: late(() => unit.leases()),
    apply: late((changes) => unit.apply(changes)),
    shiftExpiries: late((delta) => unit.shiftExpiries(delta)),
    recordDenial: late((event, window) => unit.recordDenial(event, window)),
    insertBlock: late((block) => unit.insertBlock(block)),
    deleteBlock: late((id) => unit.deleteBlock(id)),
    appendEvent: late((event) => unit.appendEvent(event)),
    publish: (fn) => unit.publish(fn),
    onRollback: (fn) => unit.onRollback(fn),
  };
}

/**
 * An in-memory LeaseStore. The contract suite runs against it and SQLite
 * alike. With `{ networked: true }` every call of a unit of work, and of the
 * store's other methods, waits a macrotask first, as a database across the
 * network would: other units' requests arrive meanwhile, and the store must
 * still keep them apart.
 */
export class FakeLeaseStore implements LeaseStore {
  readonly changes = new CounterChangeFeed(() => this.version);
  readonly cluster = new SingleNode('fake');
  private tail: Promise<unknown> = Promise.resolve();
  private running = 0;

  constructor(private readonly options: { readonly networked?: boolean } = {}) {}
  private leases = new Map<string, Lease>();
  private blockList: Block[] = [];
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
    activeBlock: (user, instance, product, now) =>
      this.blockList.filter((b) => blockCovers(b, user, instance, product, now)).sort((a, b) => b.until - a.until)[0],
    insertBlock: (block) => {
      this.blockList = [...this.blockList.filter((b) => b.until > block.createdAt), { ...block }];
    },
    deleteBlock: (id) => {
      const found = this.blockList.find((b) => b.id === id);
      this.blockList = this.blockList.filter((b) => b.id !== id);
      return found;
    },
    expiredLeases: (now, limit) =>
      [...this.leases.values()].filter((l) => l.expiresAt <= now).sort((a, b) => a.expiresAt - b.expiresAt).slice(0, limit),
    appendEvent: (event) => void this.events.push({ ...event, id: this.nextEventId++, count: 1 }),
    recordDenial: (event, window) => {
      const remote = event.remote ?? '';
      const fields = ['listener', 'user', 'host', 'instance', 'product', 'poolId', 'code', 'reason'] as const;
      const find = (e: LeaseEventInput) =>
        [...this.events].reverse().find((x) => x.event === 'denied' && x.remote === remote && x.ts >= window.sinceMs && fields.every((f) => (x[f] ?? null) === (e[f] ?? null)));
      const bump = (x: LeaseEvent) => (this.events[this.events.indexOf(x)] = { ...x, count: x.count + 1 });
      const same = find(event);
      if (same !== undefined) return void bump(same);
      if (this.events.filter((x) => x.event === 'denied' && x.remote === remote && x.ts >= window.sinceMs).length < window.perAddress) {
        return void this.events.push({ ...event, remote, id: this.nextEventId++, count: 1 });
      }
      const overflow: LeaseEventInput = { ts: event.ts, event: 'denied', remote, listener: event.listener ?? null, message: window.overflowMessage };
      const catchAll = find(overflow);
      if (catchAll !== undefined) bump(catchAll);
      else this.events.push({ ...overflow, id: this.nextEventId++, count: 1 });
    },
  };

  private readonly commits = new CommitQueue((err) => {
    throw err;
  });

  unit<T>(fn: (u: LeaseUnit) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const saved = this.snapshot();
      const published: Array<() => void> = [];
      const rollbacks: Array<() => void> = [];
      try {
        const unit = new TxUnit({ tx: this.tx, leases: () => this.sortedLeases(), publish: (f) => published.push(f), onRollback: (f) => rollbacks.push(f) });
        const value = await fn(this.options.networked ? networked(unit) : unit);
        for (const f of published) f();
        return value;
      } catch (err) {
        this.restore(saved);
        for (const f of rollbacks.reverse()) f();
        throw err;
      }
    };
    // One unit at a time, in the order submitted: the store's serialization.
    this.running++;
    const p = this.tail.then(run, run).finally(() => this.running--);
    this.tail = p.catch(() => {});
    return p;
  }

  async drained(): Promise<void> {
    while (this.running > 0) await this.tail;
  }

  configureCommits(): void {}

  /** Answers a call of the port, a macrotask later when networked (as a database across the network would). */
  private async answer<T>(fn: () => T): Promise<T> {
    if (this.options.networked) await macrotask();
    return fn();
  }

  private snapshot() {
    return { leases: new Map(this.leases), events: [...this.events], next: this.nextEventId, blocks: [...this.blockList] };
  }

  private restore(saved: ReturnType<FakeLeaseStore['snapshot']>): void {
    this.leases = saved.leases;
    this.events = saved.events;
    this.nextEventId = saved.next;
    this.blockList = saved.blocks;
  }

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
    const saved = this.snapshot();
    return this.commits.within(() => {
      try {
        return fn();
      } catch (err) {
        this.restore(saved);
        throw err;
      }
    });
  }

  nextExpiry(after = -Infinity): Promise<number | undefined> {
    return this.answer(() => {
      const times = [...this.leases.values()].map((l) => l.expiresAt).filter((t) => t > after);
      return times.length === 0 ? undefined : Math.min(...times);
    });
  }

  latestRecordedTime(): Promise<number | undefined> {
    return this.answer(() => {
      const times = [...this.events.map((e) => e.ts), ...[...this.leases.values()].map((l) => l.renewedAt)];
      return times.length === 0 ? undefined : Math.max(...times);
    });
  }

  blocks(now: number): Promise<Block[]> {
    return this.answer(() => this.blockList.filter((b) => b.until > now).sort((a, b) => a.until - b.until || a.id.localeCompare(b.id)));
  }

  allLeases(): Promise<Lease[]> {
    return this.answer(() => this.sortedLeases());
  }

  private sortedLeases(): Lease[] {
    return [...this.leases.values()].sort((a, b) => a.product.localeCompare(b.product) || a.grantedAt - b.grantedAt);
  }

  getMeta(key: string): Promise<string | undefined> {
    return this.answer(() => this.meta.get(key));
  }

  setMeta(key: string, value: string): Promise<void> {
    return this.answer(() => {
      this.meta.set(key, value);
    });
  }

  initMeta(key: string, value: string): Promise<string> {
    return this.answer(() => {
      if (!this.meta.has(key)) this.meta.set(key, value);
      return this.meta.get(key)!;
    });
  }

  listLicenses(): Promise<StoredLicense[]> {
    return this.answer(() => [...this.licenses].sort((a, b) => a.addedAt - b.addedAt || a.id.localeCompare(b.id)));
  }

  addLicense(license: StoredLicense, event: LeaseEventInput): Promise<void> {
    return this.answer(() => {
      if (this.licenses.some((l) => l.id === license.id)) throw new Error('UNIQUE constraint failed: licenses.id');
      this.licenses.push(license);
      this.tx.appendEvent(event);
    });
  }

  removeLicense(id: string, event: LeaseEventInput): Promise<boolean> {
    return this.answer(() => {
      const before = this.licenses.length;
      this.licenses = this.licenses.filter((l) => l.id !== id);
      if (this.licenses.length === before) return false;
      this.tx.appendEvent(event);
      return true;
    });
  }

  appendEvent(event: LeaseEventInput): Promise<void> {
    return this.answer(() => {
      this.tx.appendEvent(event);
    });
  }

  queryEvents(f: EventFilter): Promise<LeaseEvent[]> {
    return this.answer(() => {
      const out = this.events.filter(
        (e) =>
          (f.afterId === undefined || e.id > f.afterId) &&
          (f.beforeId === undefined || e.id < f.beforeId) &&
          (f.sinceMs === undefined || e.ts >= f.sinceMs) &&
          (f.untilMs === undefined || e.ts < f.untilMs) &&
          (f.user === undefined || e.user === f.user) &&
          (f.host === undefined || e.host === f.host) &&
          (f.instance === undefined || e.instance === f.instance) &&
          (f.leaseId === undefined || (e.leaseId ?? '').startsWith(f.leaseId)) &&
          (f.listener === undefined || e.listener === f.listener) &&
          (f.actor === undefined || e.actor === f.actor) &&
          (f.product === undefined || e.product === f.product) &&
          (f.pool === undefined || e.poolId === f.pool) &&
          (f.events === undefined || f.events.length === 0 || f.events.includes(e.event)),
      );
      if (f.first !== undefined) return out.slice(0, f.first);
      return f.limit === undefined ? out : out.slice(-f.limit);
    });
  }

  pruneBoundary(beforeMs: number): Promise<number | undefined> {
    return this.answer(() => this.events.find((e) => e.ts >= beforeMs)?.id);
  }

  pruneEvents(beforeId: number, limit: number): Promise<number> {
    return this.answer(() => {
      const gone = this.events.slice(0, limit).filter((e) => e.id < beforeId).length;
      this.events = this.events.slice(gone);
      return gone;
    });
  }

  close(): void {}
}
