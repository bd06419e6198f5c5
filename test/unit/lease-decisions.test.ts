import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deny } from '../../src/domain/errors.js';
import {
  allFull,
  decideHeld,
  decideNewSeat,
  decideRelease,
  decideRenew,
  decideSweep,
  type LeaseChanges,
  type NewSeatFacts,
  type PoolSeats,
  type Settings,
} from '../../src/domain/lease-decisions.js';
import type { Lease } from '../../src/domain/lease.js';
import type { Pool } from '../../src/domain/pool.js';
import { client } from '../support/helpers.js';

const NOW = 1_800_000_000_000;
const SETTINGS: Settings = { leaseMs: 60_000, logRenewals: false };
const MISMATCH = () => deny('LEASE_SECRET_MISMATCH', 'not yours to prove');

function pool(id: string, seats: number, extra: Partial<Pool> = {}): Pool {
  return { id, kind: 'license', product: 'cad', seats, licensee: 'Acme', notBefore: null, expiresAt: null, maxLeaseMs: null, ...extra };
}

function lease(extra: Partial<Lease> = {}): Lease {
  return {
    id: 'l1',
    poolId: 'k1',
    product: 'cad',
    user: 'alice',
    host: 'ws1',
    instance: 'alice-1',
    remote: '127.0.0.1',
    listener: 'tcp',
    grantedAt: NOW - 30_000,
    renewedAt: NOW - 30_000,
    expiresAt: NOW + 30_000,
    leaseMs: 60_000,
    ...extra,
  };
}

function seatFacts(extra: Partial<NewSeatFacts> = {}): NewSeatFacts {
  return {
    client: client('alice'),
    product: 'cad',
    now: NOW,
    block: null,
    verdict: { allowed: true, logAll: false },
    pools: [{ pool: pool('k1', 2), inUse: 0 }],
    fresh: { id: 'new-1', secretHash: 'h' },
    heldOnListener: null,
    earliestExpiry: undefined,
    ...extra,
  };
}

describe('decideNewSeat', () => {
  it('takes a seat of the first pool with one free, logging the seats in use after the grant', () => {
    const d = decideNewSeat(seatFacts({ pools: [{ pool: pool('k1', 1), inUse: 1 }, { pool: pool('k2', 3), inUse: 1 }] }), SETTINGS);
    expect(d.outcome).toMatchObject({ ok: true, renewed: false, lease: { id: 'new-1', poolId: 'k2', expiresAt: NOW + 60_000, secretHash: 'h' } });
    expect(d.writes).toEqual([{ op: 'insert', lease: (d.outcome as { lease: Lease }).lease }]);
    expect(d.log).toMatchObject([{ event: 'granted', poolId: 'k2', seatsInUse: 2, seatsTotal: 3, message: null }]);
  });

  it('never lets a lease outlive its key, and caps its length at the key maximum', () => {
    const ending = decideNewSeat(seatFacts({ pools: [{ pool: pool('k1', 1, { expiresAt: NOW + 10_000 }), inUse: 0 }] }), SETTINGS);
    expect(ending.outcome).toMatchObject({ lease: { expiresAt: NOW + 10_000, leaseMs: 60_000 } });
    const capped = decideNewSeat(seatFacts({ pools: [{ pool: pool('k1', 1, { maxLeaseMs: 5_000 }), inUse: 0 }] }), SETTINGS);
    expect(capped.outcome).toMatchObject({ lease: { expiresAt: NOW + 5_000, leaseMs: 5_000 } });
  });

  it('denies NO_FREE_SEATS when every pool is full, with a retry hint from the earliest expiry held to 1–10 s', () => {
    const full = [{ pool: pool('k1', 1), inUse: 1 }];
    expect(allFull(full)).toBe(true);
    const hint = (earliestExpiry: number | undefined) => {
      const d = decideNewSeat(seatFacts({ pools: full, earliestExpiry }), SETTINGS);
      expect(d.writes).toEqual([]);
      expect(d.deniedAt).toEqual({ poolId: 'k1', seatsInUse: 1, seatsTotal: 1 });
      return (d.outcome as { code: string; details: { retryAfterMs: number } }).details.retryAfterMs;
    };
    expect(hint(NOW + 4_000)).toBe(4_000);
    expect(hint(NOW + 100)).toBe(1_000);
    expect(hint(NOW + 60_000)).toBe(10_000);
    expect(hint(undefined)).toBe(10_000);
  });

  it('keeps out a blocked user or instance, and whoever a rule denies, before any seat is counted', () => {
    const block = { id: 'b1', scope: 'user' as const, user: 'alice', instance: null, product: 'cad', createdAt: NOW - 1, until: NOW + 60_000, reason: 'misuse', actor: 'ops', leaseId: 'l0' };
    const blocked = decideNewSeat(seatFacts({ block }), SETTINGS);
    expect(blocked.outcome).toMatchObject({ code: 'RULE_DENIED', details: { reason: 'revoked', blockedUntil: new Date(NOW + 60_000).toISOString() } });
    const ruled = decideNewSeat(seatFacts({ verdict: { allowed: false, reason: 'count', message: 'at most 1' } }), SETTINGS);
    expect(ruled.outcome).toMatchObject({ code: 'RULE_DENIED', message: 'at most 1', details: { reason: 'count' } });
    expect([...blocked.writes, ...ruled.writes]).toEqual([]);
  });

  it('names the holder\'s lease count on the listener when the rules log every grant', () => {
    const d = decideNewSeat(seatFacts({ verdict: { allowed: true, logAll: true }, heldOnListener: 2 }), SETTINGS);
    expect(d.log[0]!.message).toBe('user alice now holds 3 lease(s) on listener tcp');
  });
});

describe('decideHeld', () => {
  const seats: PoolSeats = { pool: pool('k1', 2), inUse: 1 };

  it('extends a running lease in a pool that grants (an idempotent acquire), or refuses one the caller cannot prove', () => {
    const r = decideHeld({ lease: lease(), pool: seats, grantable: true, proven: true }, NOW, { ...SETTINGS, logRenewals: true }, MISMATCH);
    expect('done' in r && r.done.outcome).toMatchObject({ ok: true, renewed: true, lease: { expiresAt: NOW + 60_000, renewedAt: NOW } });
    expect('done' in r && r.done.log).toMatchObject([{ event: 'renewed', seatsInUse: 1, message: 'acquire while holding the lease' }]);
    const refused = decideHeld({ lease: lease(), pool: seats, grantable: true, proven: false }, NOW, SETTINGS, MISMATCH);
    expect('done' in refused && refused.done).toMatchObject({ outcome: { code: 'LEASE_SECRET_MISMATCH' }, deniedAt: { poolId: 'k1' }, writes: [] });
  });

  it('expires a lease that ran out, and revokes one whose pool no longer grants; the acquire goes on', () => {
    const expired = decideHeld({ lease: lease({ expiresAt: NOW }), pool: seats, grantable: true, proven: true }, NOW, SETTINGS, MISMATCH);
    expect('next' in expired && expired.next).toMatchObject({ writes: [{ op: 'delete', leaseId: 'l1' }], log: [{ event: 'expired', seatsInUse: 1 }], ended: [{ kind: 'expired' }] });
    const revoked = decideHeld({ lease: lease(), pool: seats, grantable: false, proven: true }, NOW, SETTINGS, MISMATCH);
    expect('next' in revoked && revoked.next).toMatchObject({ log: [{ event: 'revoked', reason: 'the license key of its pool is no longer valid' }], ended: [{ kind: 'revoked' }] });
    expect(decideHeld(undefined, NOW, SETTINGS, MISMATCH)).toEqual({ next: { writes: [], log: [], ended: [] } });
  });
});

describe('decideRenew', () => {
  const facts = (extra: Partial<Parameters<typeof decideRenew>[0]> = {}) => ({
    leaseId: 'l1',
    lease: lease(),
    now: NOW,
    holds: true,
    proven: true,
    revokedReason: undefined,
    pool: pool('k1', 2),
    inUse: null,
    poolValid: true,
    blocked: null,
    ...extra,
  });

  it('extends the holder\'s running lease by a full lease length', () => {
    const d = decideRenew(facts(), SETTINGS, MISMATCH);
    expect(d.outcome).toMatchObject({ ok: true, renewed: true, lease: { renewedAt: NOW, expiresAt: NOW + 60_000 } });
    expect(d.writes).toEqual([{ op: 'extend', leaseId: 'l1', renewedAt: NOW, expiresAt: NOW + 60_000 }]);
    expect(d.log).toEqual([]);
  });

  it('answers why it cannot: unknown, revoked lately, another instance\'s, unproven', () => {
    expect(decideRenew(facts({ lease: undefined }), SETTINGS, MISMATCH).outcome).toMatchObject({ code: 'LEASE_NOT_FOUND', message: 'no lease l1; acquire a new one' });
    expect(decideRenew(facts({ lease: undefined, revokedReason: 'by ops: gone' }), SETTINGS, MISMATCH).outcome).toMatchObject({ code: 'LEASE_NOT_FOUND', details: { reason: 'by ops: gone' } });
    expect(decideRenew(facts({ holds: false }), SETTINGS, MISMATCH).outcome).toMatchObject({ code: 'LEASE_NOT_YOURS' });
    expect(decideRenew(facts({ proven: false }), SETTINGS, MISMATCH).outcome).toMatchObject({ code: 'LEASE_SECRET_MISMATCH' });
  });

  it('expires a lease that ran out, and revokes one whose key is gone, expired or not activated', () => {
    const expired = decideRenew(facts({ lease: lease({ expiresAt: NOW - 1 }), inUse: 1 }), SETTINGS, MISMATCH);
    expect(expired).toMatchObject({ outcome: { code: 'LEASE_EXPIRED' }, log: [{ event: 'expired', seatsInUse: 1, seatsTotal: 2 }], ended: [{ kind: 'expired' }] });
    expect(decideRenew(facts({ pool: undefined, poolValid: false }), SETTINGS, MISMATCH)).toMatchObject({ outcome: { code: 'LICENSE_EXPIRED', message: 'lease l1 cannot be renewed: its license key was removed' }, ended: [{ kind: 'revoked' }] });
    expect(decideRenew(facts({ pool: pool('k1', 2, { expiresAt: NOW }), poolValid: false }), SETTINGS, MISMATCH).outcome).toMatchObject({ message: `lease l1 cannot be renewed: its license key expired at ${new Date(NOW).toISOString()}` });
    expect(decideRenew(facts({ blocked: 'not activated' }), SETTINGS, MISMATCH)).toMatchObject({ outcome: { code: 'NOT_ACTIVATED' }, log: [{ event: 'revoked', reason: 'not activated' }] });
  });
});

describe('decideRelease', () => {
  it('ends the holder\'s lease, logging the seats then in use; an unknown lease is released already', () => {
    const running = decideRelease({ leaseId: 'l1', lease: lease(), now: NOW, holds: true, proven: true, pool: { pool: pool('k1', 2), inUse: 2 } }, MISMATCH);
    expect(running).toMatchObject({ outcome: { ok: true, released: true }, writes: [{ op: 'delete', leaseId: 'l1' }], log: [{ event: 'released', seatsInUse: 1 }], ended: [{ kind: 'released' }] });
    const late = decideRelease({ leaseId: 'l1', lease: lease({ expiresAt: NOW }), now: NOW, holds: true, proven: true, pool: { pool: pool('k1', 2), inUse: 1 } }, MISMATCH);
    expect(late).toMatchObject({ log: [{ event: 'expired', seatsInUse: 1 }], ended: [{ kind: 'expired' }] });
    expect(decideRelease({ leaseId: 'l1', lease: undefined, now: NOW, holds: false, proven: false, pool: undefined }, MISMATCH).outcome).toEqual({ ok: true, released: false });
    expect(decideRelease({ leaseId: 'l1', lease: lease(), now: NOW, holds: false, proven: false, pool: undefined }, MISMATCH).outcome).toMatchObject({ code: 'LEASE_NOT_YOURS' });
  });
});

describe('decideSweep', () => {
  it('expires each lease found, naming its pool\'s running leases', () => {
    const d = decideSweep([lease({ id: 'a', expiresAt: NOW - 1 }), lease({ id: 'b', poolId: 'gone', expiresAt: NOW - 1 })], NOW, new Map([['k1', { pool: pool('k1', 2), inUse: 1 }]]));
    expect(d.writes).toEqual([{ op: 'delete', leaseId: 'a' }, { op: 'delete', leaseId: 'b' }]);
    expect(d.log).toMatchObject([{ leaseId: 'a', seatsInUse: 1, seatsTotal: 2 }, { leaseId: 'b', seatsInUse: null, seatsTotal: null }]);
  });
});

/** A store as small as can be: leases in a map, decisions applied to it. */
class Model {
  readonly leases = new Map<string, Lease>();
  next = 0;
  constructor(readonly pools: readonly Pool[]) {}

  running(poolId: string, now: number): number {
    let n = 0;
    for (const l of this.leases.values()) if (l.poolId === poolId && l.expiresAt > now) n++;
    return n;
  }

  apply(c: LeaseChanges): void {
    for (const w of c.writes) {
      if (w.op === 'insert') {
        expect(this.leases.has(w.lease.id)).toBe(false);
        this.leases.set(w.lease.id, w.lease);
      } else if (w.op === 'extend') {
        const l = this.leases.get(w.leaseId)!;
        this.leases.set(w.leaseId, { ...l, renewedAt: w.renewedAt, expiresAt: w.expiresAt });
      } else this.leases.delete(w.leaseId);
    }
  }

  seats(now: number): PoolSeats[] {
    return this.pools.map((p) => ({ pool: p, inUse: this.running(p.id, now) }));
  }

  acquire(user: string, instance: string, now: number): void {
    const existing = [...this.leases.values()].find((l) => l.user === user && l.instance === instance);
    const seats = this.seats(now);
    const held = existing && { lease: existing, pool: seats.find((s) => s.pool.id === existing.poolId), grantable: true, proven: true };
    const first = decideHeld(held, now, SETTINGS, MISMATCH);
    if ('done' in first) return this.apply(first.done);
    this.apply(first.next);
    const pools = this.seats(now);
    this.apply(decideNewSeat({ ...seatFacts(), client: client(user, instance), now, pools, fresh: { id: `l${this.next++}`, secretHash: 'h' } }, SETTINGS));
  }

  renew(id: string, now: number): void {
    const l = this.leases.get(id);
    const p = l && this.pools.find((x) => x.id === l.poolId);
    this.apply(decideRenew({ leaseId: id, lease: l, now, holds: true, proven: true, revokedReason: undefined, pool: p, inUse: p ? this.running(p.id, now) : null, poolValid: true, blocked: null }, SETTINGS, MISMATCH));
  }

  release(id: string, now: number): void {
    const l = this.leases.get(id);
    const p = l && this.pools.find((x) => x.id === l.poolId);
    this.apply(decideRelease({ leaseId: id, lease: l, now, holds: true, proven: true, pool: p && { pool: p, inUse: this.running(p.id, now) } }, MISMATCH));
  }

  sweep(now: number): void {
    const expired = [...this.leases.values()].filter((l) => l.expiresAt <= now);
    this.apply(decideSweep(expired, now, new Map(this.seats(now).map((s) => [s.pool.id, s]))));
  }
}

describe('the decisions together', () => {
  it('never run more leases in a pool than its seats, whatever the sequence of acquires, renewals, releases, sweeps and time', () => {
    const step = fc.oneof(
      fc.record({ op: fc.constant('acquire' as const), user: fc.integer({ min: 0, max: 5 }), instance: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ op: fc.constant('renew' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('release' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('sweep' as const) }),
      fc.record({ op: fc.constant('wait' as const), ms: fc.integer({ min: 1, max: 90_000 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.array(step, { maxLength: 60 }), (a, b, steps) => {
        const model = new Model([pool('k1', a, { expiresAt: NOW + 200_000 }), pool('k2', b)]);
        let now = NOW;
        for (const s of steps) {
          const ids = [...model.leases.keys()];
          const pick = (n: number) => ids[n % Math.max(1, ids.length)] ?? 'none';
          if (s.op === 'acquire') model.acquire(`u${s.user}`, `i${s.instance}`, now);
          else if (s.op === 'renew') model.renew(pick(s.pick), now);
          else if (s.op === 'release') model.release(pick(s.pick), now);
          else if (s.op === 'sweep') model.sweep(now);
          else now += s.ms;
          for (const p of model.pools) expect(model.running(p.id, now)).toBeLessThanOrEqual(p.seats);
          // One running lease per user and instance at most (an acquire while holding extends the lease it holds).
          const holders = [...model.leases.values()].filter((l) => l.expiresAt > now).map((l) => `${l.user}/${l.instance}`);
          expect(new Set(holders).size).toBe(holders.length);
        }
      }),
      { numRuns: 300, seed: 18 },
    );
  });
});
