import type Database from 'better-sqlite3';
import type { Block } from '../../domain/blocks.js';
import type { LeaseEventInput } from '../../domain/events.js';
import type { Lease } from '../../domain/lease.js';
import { toLease, type LeaseRow } from '../store/rows.js';
import type { DenialWindow, LeaseTx } from '../../domain/ports.js';
import type { blockStatements } from './blocks.js';
import type { LogChainAppender } from './log-chain-appender.js';
import type { SeatCounts } from './seat-counts.js';

function leaseStatements(db: Database.Database) {
  return {
    findLease: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE id = ?'),
    findByHolder: db.prepare<[string, string, string], LeaseRow>('SELECT * FROM leases WHERE user = ? AND instance = ? AND product = ?'),
    countHeld: db.prepare<[string, string, number], { n: number }>('SELECT COUNT(*) AS n FROM leases WHERE user = ? AND listener = ? AND expires_at > ?'),
    countGrants: db.prepare<[string, number, string], { n: number }>(
      "SELECT COUNT(*) AS n FROM events WHERE user = ? AND ts > ? AND event = 'granted' AND listener = ?",
    ),
    countHeldOfProduct: db.prepare<[string, string, number, string], { n: number }>(
      'SELECT COUNT(*) AS n FROM leases WHERE user = ? AND listener = ? AND expires_at > ? AND product = ?',
    ),
    countGrantsOfProduct: db.prepare<[string, number, string, string], { n: number }>(
      "SELECT COUNT(*) AS n FROM events WHERE user = ? AND ts > ? AND event = 'granted' AND listener = ? AND product = ?",
    ),
    poolMinExpiry: db.prepare<[string, number], { t: number | null }>('SELECT MIN(expires_at) AS t FROM leases WHERE pool_id = ? AND expires_at > ?'),
    insertLease: db.prepare(
      `INSERT INTO leases (id, pool_id, product, user, host, instance, remote, listener, granted_at, renewed_at, expires_at, lease_ms, secret_hash)
       VALUES (@id, @poolId, @product, @user, @host, @instance, @remote, @listener, @grantedAt, @renewedAt, @expiresAt, @leaseMs, @secretHash)`,
    ),
    shiftExpiries: db.prepare<[number, number]>('UPDATE leases SET renewed_at = renewed_at + ?, expires_at = expires_at + ?'),
    expired: db.prepare<[number, number], LeaseRow>('SELECT * FROM leases WHERE expires_at <= ? ORDER BY expires_at LIMIT ?'),
    allLeases: db.prepare<[], LeaseRow>('SELECT * FROM leases ORDER BY product, granted_at'),
    updateExpiryOf: db.prepare<[number, number, string], { pool_id: string }>('UPDATE leases SET renewed_at = ?, expires_at = ? WHERE id = ? RETURNING pool_id'),
    deleteLeaseOf: db.prepare<[string], { pool_id: string; expires_at: number }>('DELETE FROM leases WHERE id = ? RETURNING pool_id, expires_at'),
    sameDenial: db.prepare<unknown[], { id: number }>(
      `SELECT id FROM events WHERE event = 'denied' AND remote = ? AND ts >= ? AND listener IS ? AND user IS ? AND host IS ?
         AND instance IS ? AND product IS ? AND pool_id IS ? AND code IS ? AND reason IS ? ORDER BY id DESC LIMIT 1`,
    ),
    denialEntries: db.prepare<[string, number], { n: number }>("SELECT COUNT(*) AS n FROM events WHERE event = 'denied' AND remote = ? AND ts >= ?"),
    countDenial: db.prepare<[number]>('UPDATE events SET count = count + 1 WHERE id = ?'),
  };
}

/**
 * The lease tables as a unit of work sees them, inside the store's
 * transaction: lease rows, blocks and the lease log. Keeps the seat counts in
 * step with every lease it writes, and appends log entries to the hash chain.
 * One object per store, its methods on the prototype (the lease path calls
 * them thousands of times a second).
 */
export class SqliteLeaseTx implements LeaseTx {
  readonly activeBlock: (user: string, instance: string, product: string, now: number) => Block | undefined;
  readonly insertBlock: (block: Block) => void;
  readonly deleteBlock: (id: string) => Block | undefined;
  private readonly s: ReturnType<typeof leaseStatements>;

  constructor(
    db: Database.Database,
    private readonly seats: SeatCounts,
    private readonly chain: LogChainAppender,
    blocks: ReturnType<typeof blockStatements>['tx'],
  ) {
    this.s = leaseStatements(db);
    this.activeBlock = blocks.activeBlock;
    this.insertBlock = blocks.insertBlock;
    this.deleteBlock = blocks.deleteBlock;
  }

  findLease(id: string): Lease | undefined {
    const r = this.s.findLease.get(id);
    if (r !== undefined) this.seats.read(r.id, r.expires_at);
    return r && toLease(r);
  }

  findLeaseByHolder(user: string, instance: string, product: string): Lease | undefined {
    const r = this.s.findByHolder.get(user, instance, product);
    if (r !== undefined) this.seats.read(r.id, r.expires_at);
    return r && toLease(r);
  }

  countActive(poolId: string, now: number): number {
    return this.seats.active(poolId, now);
  }

  countHeld(listener: string, user: string, now: number, product?: string): number {
    const s = this.s;
    return (product === undefined ? s.countHeld.get(user, listener, now) : s.countHeldOfProduct.get(user, listener, now, product))!.n;
  }

  countGrantsSince(listener: string, user: string, sinceMs: number, product?: string): number {
    const s = this.s;
    return (product === undefined ? s.countGrants.get(user, sinceMs, listener) : s.countGrantsOfProduct.get(user, sinceMs, listener, product))!.n;
  }

  earliestExpiry(poolIds: readonly string[], now: number): number | undefined {
    let min: number | undefined;
    for (const id of poolIds) {
      const t = this.s.poolMinExpiry.get(id, now)!.t;
      if (t !== null && (min === undefined || t < min)) min = t;
    }
    return min;
  }

  insertLease(lease: Lease): void {
    this.s.insertLease.run({ ...lease, secretHash: lease.secretHash ?? null });
    this.seats.added(lease.id, lease.poolId, lease.expiresAt);
  }

  updateExpiry(id: string, renewedAt: number, expiresAt: number): void {
    const row = this.s.updateExpiryOf.get(renewedAt, expiresAt, id);
    if (row !== undefined) this.seats.expiryMoved(id, row.pool_id, expiresAt);
  }

  shiftExpiries(deltaMs: number): number {
    this.seats.expiriesShifted();
    return this.s.shiftExpiries.run(deltaMs, deltaMs).changes;
  }

  deleteLease(id: string): void {
    const row = this.s.deleteLeaseOf.get(id);
    if (row !== undefined) this.seats.removed(id, row.pool_id, row.expires_at);
  }

  expiredLeases(now: number, limit: number): Lease[] {
    return this.s.expired.all(now, limit).map((r) => {
      this.seats.read(r.id, r.expires_at);
      return toLease(r);
    });
  }

  /** Every lease, oldest grant first within each product. */
  allLeases(): Lease[] {
    return this.s.allLeases.all().map(toLease);
  }

  appendEvent(event: LeaseEventInput): void {
    this.chain.append(event);
  }

  recordDenial(event: LeaseEventInput, window: DenialWindow): void {
    const s = this.s;
    const remote = event.remote ?? '';
    const key = (e: LeaseEventInput) =>
      [remote, window.sinceMs, e.listener ?? null, e.user ?? null, e.host ?? null, e.instance ?? null, e.product ?? null, e.poolId ?? null, e.code ?? null, e.reason ?? null];
    const same = s.sameDenial.get(...key(event));
    if (same !== undefined) {
      s.countDenial.run(same.id);
      return;
    }
    if (s.denialEntries.get(remote, window.sinceMs)!.n < window.perAddress) {
      this.chain.append({ ...event, remote });
      return;
    }
    const overflow: LeaseEventInput = { ts: event.ts, event: 'denied', remote, listener: event.listener ?? null, message: window.overflowMessage };
    const catchAll = s.sameDenial.get(...key(overflow));
    if (catchAll !== undefined) s.countDenial.run(catchAll.id);
    else this.chain.append(overflow);
  }
}
