import type Database from 'better-sqlite3';

/**
 * Seats taken per pool (lease rows, expired or not yet swept), kept in memory
 * so that granting and writing a lease-log row cost no COUNT: loaded from the
 * lease table when the store opens and again whenever another process has
 * committed (PRAGMA data_version), changed by this store's own inserts and
 * deletes, and taken back with the savepoint or transaction that rolls back.
 *
 * Running = taken − expired. For the expired part each pool keeps a lower
 * bound of its earliest expiry (while it is in the future nothing has
 * expired: no statement at all), and the last count of expired leases with
 * the time it was for: a later time adds only the leases expiring in between
 * (an index range of a few rows), instead of counting every expired lease
 * again, which matters while a large sweep is under way. Every change this
 * store makes keeps that count exact; what it cannot tell (a lease's old
 * expiry it has not read in this transaction) drops it.
 */
export class SeatCounts {
  private readonly held = new Map<string, number>();
  private readonly earliest = new Map<string, number>();
  private readonly expired = new Map<string, { at: number; n: number }>();
  /** Expiries of leases read or written in the current outermost transaction. */
  private readonly known = new Map<string, number>();
  private readonly undo: Array<readonly [string, number]> = [];
  private version = -1;

  private readonly dataVersion: Database.Statement<[], number>;
  private readonly perPool: Database.Statement<[], { pool_id: string; n: number }>;
  private readonly expiredInPool: Database.Statement<[string, number], { n: number }>;
  private readonly expiringInPool: Database.Statement<[string, number, number], number>;
  private readonly poolMinExpiry: Database.Statement<[string, number], { t: number | null }>;

  constructor(db: Database.Database) {
    this.dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    this.perPool = db.prepare<[], { pool_id: string; n: number }>('SELECT pool_id, COUNT(*) AS n FROM leases GROUP BY pool_id');
    this.expiredInPool = db.prepare<[string, number], { n: number }>('SELECT COUNT(*) AS n FROM leases WHERE pool_id = ? AND expires_at <= ?');
    this.expiringInPool = db.prepare<[string, number, number], number>('SELECT COUNT(*) FROM leases WHERE pool_id = ? AND expires_at > ? AND expires_at <= ?').pluck();
    this.poolMinExpiry = db.prepare<[string, number], { t: number | null }>('SELECT MIN(expires_at) AS t FROM leases WHERE pool_id = ? AND expires_at > ?');
  }

  /** At the start of an outermost transaction: reload if another process committed since. */
  sync(): void {
    this.known.clear();
    const v = this.dataVersion.get()!;
    if (v === this.version) return;
    this.version = v;
    this.held.clear();
    this.forgetExpiries();
    for (const r of this.perPool.all()) this.held.set(r.pool_id, r.n);
  }

  active(poolId: string, now: number): number {
    const held = this.held.get(poolId) ?? 0;
    if (held === 0) return 0;
    if ((this.earliest.get(poolId) ?? -Infinity) > now) return held;
    const last = this.expired.get(poolId);
    const n = last === undefined || now < last.at ? this.expiredInPool.get(poolId, now)!.n : last.n + (now === last.at ? 0 : this.expiringInPool.get(poolId, last.at, now)!);
    this.expired.set(poolId, { at: now, n });
    // None expired: the earliest expiry of the pool's leases is a lower bound until a lease moves earlier.
    if (n === 0) this.earliest.set(poolId, this.poolMinExpiry.get(poolId, now)!.t ?? Infinity);
    return held - n;
  }

  read(id: string, expiresAt: number): void {
    this.known.set(id, expiresAt);
  }

  added(id: string, poolId: string, expiresAt: number): void {
    this.change(poolId, 1);
    this.lower(poolId, expiresAt);
    this.countExpired(poolId, expiresAt, 1);
    this.known.set(id, expiresAt);
  }

  removed(id: string, poolId: string, expiresAt: number): void {
    this.change(poolId, -1);
    this.countExpired(poolId, expiresAt, -1);
    this.known.delete(id);
  }

  expiryMoved(id: string, poolId: string, expiresAt: number): void {
    this.lower(poolId, expiresAt);
    const before = this.known.get(id);
    if (before === undefined) this.expired.delete(poolId);
    else {
      this.countExpired(poolId, before, -1);
      this.countExpired(poolId, expiresAt, 1);
    }
    this.known.set(id, expiresAt);
  }

  /** Every expiry moved by the same amount: what was learnt of them is learnt again. */
  expiriesShifted(): void {
    this.forgetExpiries();
  }

  mark(): number {
    return this.undo.length;
  }

  rollback(mark: number): void {
    while (this.undo.length > mark) {
      const [pool, delta] = this.undo.pop()!;
      this.held.set(pool, (this.held.get(pool) ?? 0) - delta);
    }
    // What was learnt inside the rolled-back work may not hold for what is back.
    this.forgetExpiries();
  }

  committed(): void {
    this.undo.length = 0;
  }

  /** Counts from the lease table again at the next outermost transaction. */
  reloadNextTime(): void {
    this.version = -1;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.held].filter(([, n]) => n !== 0));
  }

  /** The seats taken per pool as the lease table has them (to compare with `snapshot`). */
  inDatabase(): Record<string, number> {
    return Object.fromEntries(this.perPool.all().map((r) => [r.pool_id, r.n]));
  }

  private forgetExpiries(): void {
    this.earliest.clear();
    this.expired.clear();
    this.known.clear();
  }

  private lower(poolId: string, expiresAt: number): void {
    const bound = this.earliest.get(poolId);
    if (bound !== undefined && expiresAt < bound) this.earliest.set(poolId, expiresAt);
  }

  /** A lease expiring at `expiresAt` came (+1) or went (−1): the kept count changes if it had expired by then. */
  private countExpired(poolId: string, expiresAt: number, delta: number): void {
    const last = this.expired.get(poolId);
    if (last !== undefined && expiresAt <= last.at) last.n += delta;
  }

  private change(poolId: string, delta: number): void {
    this.held.set(poolId, (this.held.get(poolId) ?? 0) + delta);
    this.undo.push([poolId, delta]);
  }
}
