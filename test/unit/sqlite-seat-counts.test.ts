import fc from 'fast-check';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteLeaseStore } from '../../src/adapters/sqlite/sqlite-lease-store.js';
import type { Lease } from '../../src/domain/lease.js';
import { tempDir } from '../support/helpers.js';

function lease(id: string, poolId: string, expiresAt: number): Lease {
  return { id, poolId, product: 'cad', user: id, host: 'h', instance: id, remote: '127.0.0.1', listener: 'tcp', grantedAt: 0, renewedAt: 0, expiresAt, leaseMs: expiresAt };
}

/** Running leases per pool as the database has them, asked the slow way. */
function counted(file: string, now: number): Record<string, number> {
  const db = new Database(file, { readonly: true });
  const rows = db.prepare<[number], { pool_id: string; n: number }>('SELECT pool_id, COUNT(*) AS n FROM leases WHERE expires_at > ? GROUP BY pool_id').all(now);
  db.close();
  return Object.fromEntries(rows.map((r) => [r.pool_id, r.n]));
}

describe('SqliteLeaseStore seat counts kept in memory', () => {
  it('follow inserts, renewals, deletes and expiry, and roll back with a savepoint or a failed batch', () => {
    const file = join(tempDir(), 'floatd.db');
    const store = new SqliteLeaseStore(file);
    store.transact((tx) => {
      tx.insertLease(lease('a', 'p1', 5000));
      tx.insertLease(lease('b', 'p1', 9000));
      tx.insertLease(lease('c', 'p2', 9000));
    });
    expect(store.transact((tx) => [tx.countActive('p1', 1000), tx.countActive('p1', 5000), tx.countActive('p2', 1000)])).toEqual([2, 1, 1]);
    // A renewal that moves an expiry earlier is seen at once.
    store.transact((tx) => tx.updateExpiry('b', 100, 2000));
    expect(store.transact((tx) => [tx.countActive('p1', 1999), tx.countActive('p1', 2000)])).toEqual([2, 1]);
    store.batch(() => {
      store.transact((tx) => tx.insertLease(lease('d', 'p1', 9000)));
      expect(() =>
        store.transact((tx) => {
          tx.insertLease(lease('e', 'p1', 9000));
          tx.deleteLease('c');
          throw new Error('rolled back');
        }),
      ).toThrow('rolled back');
      expect(store.transact((tx) => [tx.countActive('p1', 1000), tx.countActive('p2', 1000)])).toEqual([3, 1]);
    });
    expect(store.seatCounts()).toEqual({ inMemory: { p1: 3, p2: 1 }, inDatabase: { p1: 3, p2: 1 } });
    expect(() =>
      store.batch(() => {
        store.transact((tx) => tx.deleteLease('a'));
        throw new Error('the whole batch fails');
      }),
    ).toThrow('the whole batch fails');
    expect(store.seatCounts()).toEqual({ inMemory: { p1: 3, p2: 1 }, inDatabase: { p1: 3, p2: 1 } });
    expect(store.transact((tx) => tx.countActive('p1', 1000))).toBe(3);
    store.close();
  });

  it('count expired leases exactly as time moves on, whether or not a changed lease was read first', () => {
    const store = new SqliteLeaseStore(join(tempDir(), 'floatd.db'));
    store.transact((tx) => {
      tx.insertLease(lease('a', 'p1', 102));
      tx.insertLease(lease('b', 'p1', 104));
      tx.insertLease(lease('c', 'p1', 200));
    });
    store.batch(() => {
      expect(store.transact((tx) => tx.countActive('p1', 103))).toBe(2);
      expect(store.transact((tx) => tx.countActive('p1', 104))).toBe(1);
      // Not read in this transaction: its old expiry is unknown to the store.
      store.transact((tx) => tx.updateExpiry('a', 104, 150));
      expect(store.transact((tx) => tx.countActive('p1', 104))).toBe(2);
      // A lease inserted, and one deleted, expiring exactly at the time last counted.
      store.transact((tx) => tx.insertLease(lease('d', 'p1', 104)));
      expect(store.transact((tx) => tx.countActive('p1', 104))).toBe(2);
      store.transact((tx) => tx.deleteLease('b'));
      expect(store.transact((tx) => [tx.countActive('p1', 104), tx.countActive('p1', 150), tx.countActive('p1', 100)])).toEqual([2, 1, 3]);
    });
    store.close();
  });

  it('are loaded again when another process changed the leases', () => {
    const file = join(tempDir(), 'floatd.db');
    const store = new SqliteLeaseStore(file);
    store.transact((tx) => tx.insertLease(lease('a', 'p1', 9000)));
    expect(store.transact((tx) => tx.countActive('p1', 0))).toBe(1);
    const other = new Database(file);
    other.prepare('DELETE FROM leases').run();
    other.close();
    expect(store.transact((tx) => tx.countActive('p1', 0))).toBe(0);
    store.close();
    const reopened = new SqliteLeaseStore(file);
    expect(reopened.seatCounts()).toEqual({ inMemory: {}, inDatabase: {} });
    reopened.close();
  });

  it('equal a COUNT over the lease table after any sequence of operations, rollbacks and clock steps', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('insert' as const), id: fc.integer({ min: 0, max: 15 }), pool: fc.constantFrom('p1', 'p2', 'p3'), life: fc.integer({ min: 0, max: 6 }) }),
      fc.record({ kind: fc.constant('renew' as const), id: fc.integer({ min: 0, max: 15 }), life: fc.integer({ min: -3, max: 6 }) }),
      fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 0, max: 15 }) }),
      fc.record({ kind: fc.constant('blind-renew' as const), id: fc.integer({ min: 0, max: 15 }), life: fc.integer({ min: -3, max: 6 }) }),
      fc.record({ kind: fc.constant('tick' as const), by: fc.integer({ min: -2, max: 4 }) }),
    );
    const batch = fc.record({ ops: fc.array(fc.record({ op, fail: fc.boolean() }), { maxLength: 10 }), commitFails: fc.boolean() });
    fc.assert(
      fc.property(fc.array(batch, { maxLength: 10 }), (batches) => {
        const file = join(tempDir(), 'floatd.db');
        const store = new SqliteLeaseStore(file);
        // The same connection, to count inside a batch what is not committed yet.
        const db = (store as unknown as { db: Database.Database }).db;
        const running = db.prepare<[string, number], number>('SELECT COUNT(*) FROM leases WHERE pool_id = ? AND expires_at > ?').pluck();
        let now = 100;
        for (const b of batches) {
          try {
            store.batch(() => {
              for (const { op: o, fail } of b.ops) {
                if (o.kind === 'tick') {
                  now = Math.max(0, now + o.by);
                  continue;
                }
                try {
                  store.transact((tx) => {
                    const id = `l${o.id}`;
                    // A blind renewal changes a lease the store has not read in this transaction.
                    const found = o.kind === 'blind-renew' ? undefined : tx.findLease(id);
                    if (o.kind === 'insert' && found === undefined) tx.insertLease(lease(id, o.pool, now + o.life));
                    if (o.kind === 'renew' && found !== undefined) tx.updateExpiry(id, now, now + o.life);
                    if (o.kind === 'delete' && found !== undefined) tx.deleteLease(id);
                    if (fail) throw new Error('savepoint rolled back');
                  });
                } catch {
                  // That operation alone is undone.
                }
                if (o.kind === 'blind-renew') store.transact((tx) => tx.updateExpiry(`l${o.id}`, now, now + o.life));
                for (const pool of ['p1', 'p2', 'p3']) expect(store.transact((tx) => tx.countActive(pool, now))).toBe(running.get(pool, now));
              }
              if (b.commitFails) throw new Error('commit failed');
            });
          } catch {
            // The batch is undone as a whole.
          }
          const expected = counted(file, now);
          for (const pool of ['p1', 'p2', 'p3']) expect(store.transact((tx) => tx.countActive(pool, now))).toBe(expected[pool] ?? 0);
          const { inMemory, inDatabase } = store.seatCounts();
          expect(inMemory).toEqual(inDatabase);
        }
        store.close();
      }),
      { numRuns: 100, seed: 14 },
    );
  });
});
