import { describe, expect, it } from 'vitest';
import { LeaseService } from '../../src/app/lease-service.js';
import { PoolRegistry } from '../../src/app/pool-registry.js';
import { SqliteLeaseStore } from '../../src/adapters/sqlite/sqlite-lease-store.js';
import type { Lease } from '../../src/domain/lease.js';
import type { LeaseStore, LeaseTx } from '../../src/domain/ports.js';
import { FakeLeaseStore } from '../support/fake-lease-store.js';
import { FakeClock, client, licenseKey, tempDir } from '../support/helpers.js';
import { join } from 'node:path';
import { newEd25519KeyPair } from '../../src/adapters/crypto/keys.js';
import { logVerifier } from '../../src/adapters/crypto/log-signer.js';

/** A store with its synchronous transaction view, which the first tests below check directly. */
type TestStore = LeaseStore & { transact<T>(fn: (tx: LeaseTx) => T): T };

const STORES: Array<[string, () => TestStore]> = [
  ['FakeLeaseStore', () => new FakeLeaseStore()],
  // Every call of a unit waits a macrotask, as a networked database would.
  ['FakeLeaseStore (networked)', () => new FakeLeaseStore({ networked: true })],
  ['SqliteLeaseStore', () => new SqliteLeaseStore(join(tempDir(), 'floatd.db'))],
];

function lease(overrides: Partial<Lease> = {}): Lease {
  return {
    id: 'l1',
    poolId: 'key-1',
    product: 'cad',
    user: 'alice',
    host: 'ws1',
    instance: 'i1',
    remote: '127.0.0.1',
    listener: 'tcp',
    grantedAt: 1000,
    renewedAt: 1000,
    expiresAt: 5000,
    leaseMs: 4000,
    ...overrides,
  };
}

describe.each(STORES)('LeaseStore contract: %s', (_name, make) => {
  it('stores, finds, renews and deletes a lease', () => {
    const store = make();
    store.transact((tx) => tx.insertLease(lease()));
    expect(store.transact((tx) => tx.findLease('l1'))).toEqual(lease());
    expect(store.transact((tx) => tx.findLeaseByHolder('alice', 'i1', 'cad'))?.id).toBe('l1');
    expect(store.transact((tx) => tx.findLeaseByHolder('alice', 'i2', 'cad'))).toBeUndefined();
    store.transact((tx) => tx.updateExpiry('l1', 2000, 9000));
    expect(store.transact((tx) => tx.findLease('l1'))).toMatchObject({ renewedAt: 2000, expiresAt: 9000 });
    store.transact((tx) => tx.deleteLease('l1'));
    expect(store.transact((tx) => tx.findLease('l1'))).toBeUndefined();
    store.close();
  });

  it('counts only running leases of a pool', async () => {
    const store = make();
    store.transact((tx) => {
      tx.insertLease(lease({ id: 'a', instance: 'a', expiresAt: 5000 }));
      tx.insertLease(lease({ id: 'b', instance: 'b', expiresAt: 8000 }));
      tx.insertLease(lease({ id: 'c', instance: 'c', poolId: 'other', expiresAt: 8000 }));
    });
    expect(store.transact((tx) => tx.countActive('key-1', 4999))).toBe(2);
    expect(store.transact((tx) => tx.countActive('key-1', 5000))).toBe(1);
    expect(store.transact((tx) => tx.countActive('other', 0))).toBe(1);
    expect(store.transact((tx) => tx.countActive('none', 0))).toBe(0);
    expect(store.transact((tx) => tx.earliestExpiry(['key-1'], 0))).toBe(5000);
    expect(store.transact((tx) => tx.earliestExpiry(['key-1'], 5000))).toBe(8000);
    expect(await store.nextExpiry()).toBe(5000);
    const expired = store.transact((tx) => tx.expiredLeases(8000, 10)).map((l) => l.id);
    expect(expired[0]).toBe('a');
    expect([...expired].sort()).toEqual(['a', 'b', 'c']);
    expect(store.transact((tx) => tx.expiredLeases(8000, 1))).toHaveLength(1);
    expect(store.transact((tx) => tx.expiredLeases(4999, 10))).toHaveLength(0);
    store.close();
  });

  it('refuses a second lease for the same user, instance and product', () => {
    const store = make();
    store.transact((tx) => tx.insertLease(lease()));
    expect(() => store.transact((tx) => tx.insertLease(lease({ id: 'l2' })))).toThrow(/UNIQUE/);
    store.close();
  });

  it('rolls back every write of a failed transaction', async () => {
    const store = make();
    expect(() =>
      store.transact((tx) => {
        tx.insertLease(lease());
        tx.appendEvent({ ts: 1, event: 'granted' });
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(await store.allLeases()).toEqual([]);
    expect(await store.queryEvents({})).toEqual([]);
    store.close();
  });

  it('counts held leases and recent grants per listener and user', () => {
    const store = make();
    store.transact((tx) => {
      tx.insertLease(lease({ id: 'a', instance: 'a' }));
      tx.insertLease(lease({ id: 'b', instance: 'b', listener: 'https' }));
      tx.appendEvent({ ts: 100, event: 'granted', user: 'alice', listener: 'tcp' });
      tx.appendEvent({ ts: 200, event: 'granted', user: 'alice', listener: 'tcp' });
      tx.appendEvent({ ts: 300, event: 'renewed', user: 'alice', listener: 'tcp' });
      tx.appendEvent({ ts: 300, event: 'granted', user: 'bob', listener: 'tcp' });
      tx.appendEvent({ ts: 400, event: 'granted', user: 'alice', listener: 'tcp', product: 'other' });
    });
    expect(store.transact((tx) => tx.countHeld('tcp', 'alice', 0))).toBe(1);
    expect(store.transact((tx) => tx.countHeld('https', 'alice', 0))).toBe(1);
    expect(store.transact((tx) => tx.countHeld('tcp', 'alice', 5000))).toBe(0);
    expect(store.transact((tx) => tx.countGrantsSince('tcp', 'alice', 99))).toBe(3);
    expect(store.transact((tx) => tx.countGrantsSince('tcp', 'alice', 100))).toBe(2);
    expect(store.transact((tx) => tx.countGrantsSince('tcp', 'alice', 99, 'other'))).toBe(1);
    expect(store.transact((tx) => tx.countHeld('tcp', 'alice', 0, 'other'))).toBe(0);
    expect(store.transact((tx) => tx.countHeld('tcp', 'alice', 0, lease({}).product))).toBe(1);
    store.close();
  });

  it('queries and prunes the lease log', async () => {
    const store = make();
    for (let i = 1; i <= 5; i++) await store.appendEvent({ ts: i * 100, event: i % 2 ? 'granted' : 'released', user: i < 3 ? 'alice' : 'bob', product: 'cad' });
    expect((await store.queryEvents({})).map((e) => e.ts)).toEqual([100, 200, 300, 400, 500]);
    expect((await store.queryEvents({ user: 'alice' })).map((e) => e.ts)).toEqual([100, 200]);
    expect((await store.queryEvents({ events: ['released'] })).map((e) => e.ts)).toEqual([200, 400]);
    expect((await store.queryEvents({ sinceMs: 200, untilMs: 400 })).map((e) => e.ts)).toEqual([200, 300]);
    expect((await store.queryEvents({ limit: 2 })).map((e) => e.ts)).toEqual([400, 500]);
    const third = (await store.queryEvents({}))[2]!;
    expect((await store.queryEvents({ afterId: third.id })).map((e) => e.ts)).toEqual([400, 500]);
    expect((await store.queryEvents({ first: 2 })).map((e) => e.ts)).toEqual([100, 200]);
    expect((await store.queryEvents({ first: 2, afterId: third.id })).map((e) => e.ts)).toEqual([400, 500]);
    expect(await store.pruneBoundary(250)).toBe(third.id);
    expect(await store.pruneBoundary(501)).toBeUndefined();
    // In slices: the oldest first, never past the boundary.
    expect(await store.pruneEvents(third.id, 1)).toBe(1);
    expect((await store.queryEvents({})).map((e) => e.ts)).toEqual([200, 300, 400, 500]);
    expect(await store.pruneEvents(third.id, 10)).toBe(1);
    expect(await store.pruneEvents(third.id, 10)).toBe(0);
    expect((await store.queryEvents({})).map((e) => e.ts)).toEqual([300, 400, 500]);
    store.close();
  });

  it('folds identical denials into one counted entry per window, and past the per-address cap into one catch-all entry', async () => {
    const store = make();
    const window = (sinceMs: number) => ({ sinceMs, perAddress: 3, overflowMessage: 'the rest' });
    const denial = (ts: number, user: string, remote = '10.0.0.1') =>
      ({ ts, event: 'denied', user, host: 'h', instance: `${user}-1`, remote, listener: 'tcp', product: 'cad', code: 'NO_FREE_SEATS', message: 'full' }) as const;
    store.transact((tx) => {
      for (let i = 0; i < 50; i++) tx.recordDenial(denial(60_000 + i, 'alice'), window(60_000));
      tx.recordDenial({ ...denial(60_100, 'alice'), code: 'RULE_DENIED', reason: 'count' }, window(60_000));
      tx.recordDenial(denial(60_200, 'bob'), window(60_000));
      // The address has its 3 entries: others from it go to the catch-all, counted.
      for (const user of ['carol', 'dave', 'carol']) tx.recordDenial(denial(60_300, user), window(60_000));
      tx.recordDenial(denial(60_400, 'alice'), window(60_000));
      // Another address has its own allowance; the next window starts afresh.
      tx.recordDenial(denial(60_500, 'erin', '10.0.0.2'), window(60_000));
      tx.recordDenial(denial(120_000, 'alice'), window(120_000));
    });
    const rows = (await store.queryEvents({ events: ['denied'] })).map((e) => [e.ts, e.user ?? null, e.code ?? null, e.remote, e.count, e.message]);
    expect(rows).toEqual([
      [60_000, 'alice', 'NO_FREE_SEATS', '10.0.0.1', 51, 'full'],
      [60_100, 'alice', 'RULE_DENIED', '10.0.0.1', 1, 'full'],
      [60_200, 'bob', 'NO_FREE_SEATS', '10.0.0.1', 1, 'full'],
      [60_300, null, null, '10.0.0.1', 3, 'the rest'],
      [60_500, 'erin', 'NO_FREE_SEATS', '10.0.0.2', 1, 'full'],
      [120_000, 'alice', 'NO_FREE_SEATS', '10.0.0.1', 1, 'full'],
    ]);
    expect((await store.queryEvents({})).filter((e) => e.event !== 'denied').every((e) => e.count === 1)).toBe(true);
    store.close();
  });

  it('moves every lease\'s renewal and expiry time together, and knows the latest time it recorded', async () => {
    const store = make();
    expect(await store.latestRecordedTime()).toBeUndefined();
    store.transact((tx) => {
      tx.insertLease(lease({ id: 'a', instance: 'a', renewedAt: 1000, expiresAt: 5000 }));
      tx.insertLease(lease({ id: 'b', instance: 'b', renewedAt: 3000, expiresAt: 7000 }));
    });
    expect(await store.latestRecordedTime()).toBe(3000);
    await store.appendEvent({ ts: 4000, event: 'server-started' });
    expect(await store.latestRecordedTime()).toBe(4000);
    expect(store.transact((tx) => tx.shiftExpiries(3_600_000))).toBe(2);
    expect((await store.allLeases()).map((l) => [l.id, l.grantedAt, l.renewedAt, l.expiresAt])).toEqual([
      ['a', 1000, 3_601_000, 3_605_000],
      ['b', 1000, 3_603_000, 3_607_000],
    ]);
    expect(await store.nextExpiry()).toBe(3_605_000);
    // Moving back frees nothing and counts nothing twice: seats in use stay exact.
    expect(store.transact((tx) => tx.shiftExpiries(-3_600_000))).toBe(2);
    expect(store.transact((tx) => tx.countActive('key-1', 4999))).toBe(2);
    expect(store.transact((tx) => tx.countActive('key-1', 5000))).toBe(1);
    store.close();
  });

  it('keeps meta values and license keys', async () => {
    const store = make();
    expect(await store.initMeta('k', 'first')).toBe('first');
    expect(await store.initMeta('k', 'second')).toBe('first');
    await store.setMeta('k', 'third');
    expect(await store.getMeta('k')).toBe('third');
    await store.addLicense({ id: 'x', token: 'a.b.c', addedAt: 5 }, { ts: 5, event: 'key-added' });
    expect(await store.listLicenses()).toEqual([{ id: 'x', token: 'a.b.c', addedAt: 5 }]);
    expect(await store.removeLicense('x', { ts: 6, event: 'key-removed' })).toBe(true);
    expect(await store.removeLicense('x', { ts: 6, event: 'key-removed' })).toBe(false);
    expect((await store.queryEvents({})).map((e) => e.event)).toEqual(['key-added', 'key-removed']);
    store.close();
  });

  describe('LeaseService on this store', () => {
    function setup(seats = 2, leaseMs = 60_000) {
      const store = make();
      const clock = new FakeClock();
      const pools = new PoolRegistry();
      pools.set([licenseKey({ seats })], null, clock.now());
      const ended: string[] = [];
      const service = new LeaseService(store, clock, pools, { leaseMs, logLevel: 'detailed' }, { leaseEnded: (l, kind) => ended.push(`${kind}:${l.user}`) });
      return { store, clock, pools, service, ended };
    }

    it('grants up to the seat count, then denies with NO_FREE_SEATS and a retry hint', async () => {
      const { service, store, clock } = setup(2);
      expect((await service.acquire(client('a'), 'cad')).ok).toBe(true);
      clock.advance(1000);
      expect((await service.acquire(client('b'), 'cad')).ok).toBe(true);
      const third = await service.acquire(client('c'), 'cad');
      expect(third).toMatchObject({ ok: false, code: 'NO_FREE_SEATS' });
      if (!third.ok) expect(third.details.retryAfterMs).toBe(10_000);
      const log = await store.queryEvents({});
      expect(log.map((e) => e.event)).toEqual(['granted', 'granted', 'denied']);
      expect(log.map((e) => e.seatsInUse)).toEqual([1, 2, 2]);
      expect(log[2]).toMatchObject({ user: 'c', code: 'NO_FREE_SEATS' });
    });

    it('is idempotent per user, instance and product: the same lease, renewed', async () => {
      const { service, store, clock } = setup(1);
      const first = await service.acquire(client('a'), 'cad');
      clock.advance(5000);
      // Another connection, say: without the lease's secret it is another holder.
      expect(await service.acquire(client('a'), 'cad')).toMatchObject({ ok: false, code: 'LEASE_SECRET_MISMATCH' });
      const again = await service.acquire(client('a'), 'cad', { secret: first.ok ? first.secret! : '' });
      expect(again.ok && first.ok && again.lease.id === first.lease.id).toBe(true);
      expect(again.ok && again.renewed).toBe(true);
      expect(again.ok && again.lease.expiresAt).toBe(clock.now() + 60_000);
      expect(await store.allLeases()).toHaveLength(1);
      expect(await service.acquire(client('a', 'a-2'), 'cad')).toMatchObject({ ok: false, code: 'NO_FREE_SEATS' });
    });

    it('renews a held lease, refuses a lease of another instance, and an unknown one', async () => {
      const { service, clock } = setup();
      const got = await service.acquire(client('a'), 'cad');
      if (!got.ok) throw new Error('no lease');
      clock.advance(30_000);
      expect(await service.renew(client('a'), got.lease.id)).toMatchObject({ ok: false, code: 'LEASE_SECRET_MISMATCH' });
      expect(await service.renew(client('a'), got.lease.id, { secret: 'not-it' })).toMatchObject({ ok: false, code: 'LEASE_SECRET_MISMATCH' });
      expect((await service.renew(client('a'), got.lease.id, { boundTo: new Set([got.lease.id]) })).ok).toBe(true);
      const renewed = await service.renew(client('a'), got.lease.id, { secret: got.secret! });
      expect(renewed.ok && renewed.lease.expiresAt).toBe(clock.now() + 60_000);
      expect(await service.renew(client('b'), got.lease.id)).toMatchObject({ ok: false, code: 'LEASE_NOT_YOURS' });
      expect(await service.renew(client('a'), 'nope')).toMatchObject({ ok: false, code: 'LEASE_NOT_FOUND' });
    });

    it('refuses to renew an expired lease and frees its seat', async () => {
      const { service, clock, store } = setup(1);
      const got = await service.acquire(client('a'), 'cad');
      if (!got.ok) throw new Error('no lease');
      clock.advance(60_000);
      expect(await service.renew(client('a'), got.lease.id, { secret: got.secret! })).toMatchObject({ ok: false, code: 'LEASE_EXPIRED' });
      expect(await store.allLeases()).toHaveLength(0);
      expect((await service.acquire(client('b'), 'cad')).ok).toBe(true);
    });

    it('releases once and accepts a second release', async () => {
      const { service, store } = setup(1);
      const got = await service.acquire(client('a'), 'cad');
      if (!got.ok) throw new Error('no lease');
      expect(await service.release(client('b'), got.lease.id)).toMatchObject({ ok: false, code: 'LEASE_NOT_YOURS' });
      expect(await service.release(client('a'), got.lease.id)).toMatchObject({ ok: false, code: 'LEASE_SECRET_MISMATCH' });
      expect(await service.release(client('a'), got.lease.id, { secret: got.secret! })).toEqual({ ok: true, released: true });
      expect(await service.release(client('a'), got.lease.id)).toEqual({ ok: true, released: false });
      expect((await service.acquire(client('b'), 'cad')).ok).toBe(true);
      expect((await store.queryEvents({ events: ['released'] }))[0]).toMatchObject({ user: 'a', seatsInUse: 0, seatsTotal: 1 });
    });

    it('sweeps exactly the leases that expired', async () => {
      const { service, clock, store, ended } = setup(3);
      await service.acquire(client('a'), 'cad');
      clock.advance(10_000);
      await service.acquire(client('b'), 'cad');
      clock.advance(50_000);
      expect(await service.sweep()).toBe(1);
      expect(ended).toEqual(['expired:a']);
      expect((await store.allLeases()).map((l) => l.user)).toEqual(['b']);
      expect((await store.queryEvents({ events: ['expired'] }))[0]).toMatchObject({ user: 'a', seatsInUse: 1 });
    });

    it('caps the lease length at the key maximum', async () => {
      const store = make();
      const pools = new PoolRegistry();
      pools.set([licenseKey({ maxLeaseSeconds: 60 })], null, 0);
      const service = new LeaseService(store, new FakeClock(), pools, { leaseMs: 1_800_000, logLevel: 'detailed' });
      const got = await service.acquire(client('a'), 'cad');
      expect(got.ok && got.lease.leaseMs).toBe(60_000);
    });

    it('denies unknown products, expired keys and a missing product with several', async () => {
      const store = make();
      const clock = new FakeClock();
      const pools = new PoolRegistry();
      pools.set([licenseKey(), licenseKey({ id: 'k2', product: 'viewer', expiresAt: clock.now() + 1000 })], null, clock.now());
      const service = new LeaseService(store, clock, pools, { leaseMs: 60_000, logLevel: 'detailed' });
      expect(await service.acquire(client('a'), 'paint')).toMatchObject({ ok: false, code: 'UNKNOWN_PRODUCT' });
      expect(await service.acquire(client('a'), undefined)).toMatchObject({ ok: false, code: 'PRODUCT_REQUIRED' });
      expect((await service.acquire(client('a'), 'viewer')).ok).toBe(true);
      clock.advance(1000);
      expect(await service.acquire(client('b'), 'viewer')).toMatchObject({ ok: false, code: 'LICENSE_EXPIRED' });
      expect((await store.queryEvents({ events: ['denied'] })).map((e) => e.code)).toEqual(['UNKNOWN_PRODUCT', 'PRODUCT_REQUIRED', 'LICENSE_EXPIRED']);
    });

    it('revokes leases whose pool is gone', async () => {
      const { service, pools, store, ended } = setup(2);
      await service.acquire(client('a'), 'cad');
      pools.set([], null, 0);
      expect(await service.revokeInvalid((id) => (pools.get(id) ? null : 'gone'))).toBe(1);
      expect(ended).toEqual(['revoked:a']);
      expect((await store.queryEvents({ events: ['revoked'] }))[0]).toMatchObject({ user: 'a', reason: 'gone' });
    });

    it('leaves renewals out of the lease log at summary level', async () => {
      const { store, clock, pools } = setup(1);
      const service = new LeaseService(store, clock, pools, { leaseMs: 60_000, logLevel: 'summary' });
      const got = await service.acquire(client('a'), 'cad');
      if (!got.ok) throw new Error('no lease');
      await service.renew(client('a'), got.lease.id);
      expect((await store.queryEvents({})).map((e) => e.event)).toEqual(['granted']);
    });

    it('grants exactly the seats there are to 200 concurrent acquires for 50 seats', async () => {
      const { service, store } = setup(50);
      const outcomes = await Promise.all(Array.from({ length: 200 }, (_, i) => service.acquire(client(`u${i}`), 'cad', undefined, `u${i}`)));
      expect(outcomes.filter((o) => o.ok)).toHaveLength(50);
      expect(outcomes.filter((o) => !o.ok).map((o) => !o.ok && o.code)).toEqual(Array(150).fill('NO_FREE_SEATS'));
      expect(await store.allLeases()).toHaveLength(50);
      expect((await store.queryEvents({ events: ['granted'] })).map((e) => e.seatsInUse).sort((a, b) => a! - b!)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      await store.drained();
    });
  });

  describe('units of work', () => {
    it('keep nothing of a unit that fails, tell nothing it published, and undo what it changed in memory', async () => {
      const store = make();
      const told: string[] = [];
      await expect(
        store.unit(async (u) => {
          await u.apply({ writes: [{ op: 'insert', lease: lease() }], log: [{ ts: 1, event: 'granted', leaseId: 'l1' }] });
          u.publish(() => told.push('published'));
          u.onRollback(() => told.push('undone'));
          expect(await u.findLease('l1')).toEqual(lease());
          throw new Error('a bug half-way');
        }),
      ).rejects.toThrow('a bug half-way');
      expect(told).toEqual(['undone']);
      expect(await store.allLeases()).toEqual([]);
      expect(await store.queryEvents({})).toEqual([]);
      // The next unit commits, and tells after its commit: what is read from then on is committed.
      let readWhenTold: Promise<unknown[]> | undefined;
      await store.unit(async (u) => {
        await u.apply({ writes: [{ op: 'insert', lease: lease() }], log: [] });
        u.publish(() => {
          told.push('published');
          readWhenTold = store.allLeases();
        });
      });
      expect(told).toEqual(['undone', 'published']);
      expect(await readWhenTold).toHaveLength(1);
    });

    it('run one at a time: a unit never sees another half-done', async () => {
      const store = make();
      const seen: number[] = [];
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.unit(async (u) => {
            const before = (await u.leases()).length;
            await u.apply({ writes: [{ op: 'insert', lease: lease({ id: `l${i}`, instance: `i${i}` }) }], log: [] });
            seen.push(before, (await u.leases()).length);
          }),
        ),
      );
      expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => Math.floor((i + 1) / 2)));
    });
  });
});

describe('SqliteLeaseStore units whose commit fails', () => {
  it('keep the hash chain intact and tell nothing', async () => {
    const control = { fail: false };
    const store = new SqliteLeaseStore(join(tempDir(), 'floatd.db'), {
      beforeCommit: () => {
        if (control.fail) throw new Error('disk I/O error');
      },
    });
    const clock = new FakeClock();
    const pools = new PoolRegistry();
    pools.set([licenseKey({ seats: 5 })], null, clock.now());
    const told: string[] = [];
    const service = new LeaseService(store, clock, pools, { leaseMs: 60_000, logLevel: 'detailed' }, { tally: (t) => told.push(t.kind), leaseEnded: (l, kind) => told.push(kind) });
    await service.acquire(client('a'), 'cad');
    control.fail = true;
    const failed = await Promise.allSettled([service.acquire(client('b'), 'cad'), service.acquire(client('c'), 'cad'), service.sweep()]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    control.fail = false;
    await service.acquire(client('d'), 'cad');
    expect(told).toEqual(['granted', 'granted']);
    expect((await store.allLeases()).map((l) => l.user)).toEqual(['a', 'd']);
    expect((await store.queryEvents({})).map((e) => `${e.id}:${e.user}`)).toEqual(['1:a', '2:d']);
    const pair = await newEd25519KeyPair();
    expect(store.verifyLog(logVerifier(pair.publicJwk as typeof pair.publicJwk & { kid: string }))).toMatchObject({ ok: true, entries: 2 });
    store.close();
  });
});
