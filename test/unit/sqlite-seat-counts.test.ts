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
      fc.record({ kind: fc.constant('insert' as const), id: fc.integer({ min: 0, max: 15 }), pool: fc.constantFrom('p1', 'p2', 'p3'), life: fc.integer({ min: 1, max: 50 }) }),
      fc.record({ kind: fc.constant('renew' as const), id: fc.integer({ min: 0, max: 15 }), life: fc.integer({ min: 1, max: 50 }) }),
      fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 0, max: 15 }) }),
      fc.record({ kind: fc.constant('tick' as const), by: fc.integer({ min: 0, max: 30 }) }),
    );
    const batch = fc.record({ ops: fc.array(fc.record({ op, fail: fc.boolean() }), { maxLength: 6 }), commitFails: fc.boolean() });
    fc.assert(
      fc.property(fc.array(batch, { maxLength: 12 }), (batches) => {
        const file = join(tempDir(), 'floatd.db');
        const store = new SqliteLeaseStore(file);
        let now = 100;
        for (const b of batches) {
          try {
            store.batch(() => {
              for (const { op: o, fail } of b.ops) {
                if (o.kind === 'tick') {
                  now += o.by;
                  continue;
                }
                try {
                  store.transact((tx) => {
                    const id = `l${o.id}`;
                    const found = tx.findLease(id);
                    if (o.kind === 'insert' && found === undefined) tx.insertLease(lease(id, o.pool, now + o.life));
                    if (o.kind === 'renew' && found !== undefined) tx.updateExpiry(id, now, now + o.life);
                    if (o.kind === 'delete' && found !== undefined) tx.deleteLease(id);
                    if (fail) throw new Error('savepoint rolled back');
                  });
                } catch {
                  // That operation alone is undone.
                }
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
      { numRuns: 60, seed: 14 },
    );
  });
});
