import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LeaseService } from '../../src/app/lease-service.js';
import { PoolRegistry } from '../../src/app/pool-registry.js';
import { SqliteLeaseStore } from '../../src/adapters/sqlite/sqlite-lease-store.js';
import type { GroupCommitBudget } from '../../src/adapters/store/group-commit.js';
import { FakeClock } from '../support/fake-clock.js';
import { client, licenseKey, tempDir } from '../support/helpers.js';

/** A real SQLite store whose batches are counted and can be made to fail at commit. */
function setup(batch?: { budget: GroupCommitBudget; clock: FakeClock }) {
  const control = { failNext: false, batches: 0 };
  const real = new SqliteLeaseStore(join(tempDir(), 'floatd.db'), {
    beforeCommit: () => {
      control.batches++;
      const fail = control.failNext;
      control.failNext = false;
      // As a full disk would at COMMIT: the whole batch rolls back.
      if (fail) throw new Error('disk I/O error');
    },
    // A clock that stands still unless told: the time budget never cuts a batch short by surprise.
    batchClock: batch?.clock ?? new FakeClock(Date.now()),
    ...(batch === undefined ? {} : { batchBudget: batch.budget }),
  });
  const store = real;
  const clock = new FakeClock(Date.now());
  const pools = new PoolRegistry();
  pools.set([licenseKey({ seats: 20 })], null, clock.now());
  const ended: string[] = [];
  const scheduled: number[] = [];
  const tallies: string[] = [];
  const leases = new LeaseService(store, clock, pools, { leaseMs: 60_000, logLevel: 'detailed' }, {
    leaseEnded: (l, kind) => ended.push(`${kind}:${l.user}`),
    expiryScheduled: (at) => scheduled.push(at),
    tally: (t) => tallies.push(t.kind),
  });
  return { real, store, control, leases, ended, scheduled, tallies };
}

describe('Group commit (units of work from every door)', () => {
  it('runs the operations submitted in one turn in one commit, each on its own', async () => {
    const { leases, control, real } = setup();
    const outcomes = await Promise.all(Array.from({ length: 25 }, (_, i) => leases.acquire(client(`u${i}`), 'cad', undefined, `u${i}`)));
    expect(outcomes.filter((o) => o.ok)).toHaveLength(20);
    expect(outcomes.filter((o) => !o.ok).map((o) => !o.ok && o.code)).toEqual(Array(5).fill('NO_FREE_SEATS'));
    expect(control.batches).toBe(1);
    expect(await real.allLeases()).toHaveLength(20);
    // One failing operation rolls back only itself.
    const [good, bad] = await Promise.allSettled([
      leases.release(client('u0'), (await real.allLeases()).find((l) => l.user === 'u0')!.id, { secret: outcomes[0]!.ok ? outcomes[0]!.secret! : '' }),
      real.unit(async (u) => {
        await u.appendEvent({ ts: 1, event: 'rules-reloaded', message: 'rolled back with its unit' });
        throw new Error('a bug in one request');
      }),
    ]);
    expect(good).toMatchObject({ status: 'fulfilled', value: { ok: true, released: true } });
    expect(bad).toMatchObject({ status: 'rejected' });
    expect(await real.allLeases()).toHaveLength(19);
    expect(await real.queryEvents({ events: ['rules-reloaded'] })).toEqual([]);
  });

  it('a batch whose commit fails rejects every operation in it, keeps nothing and tells and counts nothing', async () => {
    const { leases, control, real, ended, scheduled, tallies } = setup();
    const held = await leases.acquire(client('alice'), 'cad');
    expect(held.ok).toBe(true);
    const leaseId = held.ok ? held.lease.id : '';
    const proof = { secret: held.ok ? held.secret! : '' };
    const eventsBefore = (await real.queryEvents({})).length;
    ended.length = 0;
    scheduled.length = 0;
    tallies.length = 0;
    control.failNext = true;
    const results = await Promise.allSettled([
      leases.release(client('alice'), leaseId, proof),
      leases.acquire(client('bob'), 'cad'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(ended).toEqual([]);
    expect(scheduled).toEqual([]);
    // Nothing of the rolled-back batch is counted either (metrics hang on these hooks).
    expect(tallies).toEqual([]);
    expect((await real.allLeases()).map((l) => l.user)).toEqual(['alice']);
    expect(await real.queryEvents({})).toHaveLength(eventsBefore);
    // The next batch commits and tells.
    await leases.release(client('alice'), leaseId, proof);
    expect(ended).toEqual(['released:alice']);
    await real.drained();
  });
});

describe('Group commit budgets (fairness)', () => {
  it('takes a few operations per client per batch, the least busy first, each client in order', async () => {
    const clock = new FakeClock(Date.now());
    const { store, control } = setup({ budget: { perSource: 2, timeMs: 1000 }, clock });
    const order: string[] = [];
    const op = (name: string) => async () => {
      order.push(name);
      return name;
    };
    await Promise.all([
      ...['b1', 'b2', 'b3', 'b4', 'b5'].map((n) => store.unit(op(n), { source: 'busy' })),
      store.unit(op('q1'), { source: 'quiet' }),
    ]);
    // Batch 1: the quiet client first (one waiting), then two of the busy one; then two more; then the last.
    expect(order).toEqual(['q1', 'b1', 'b2', 'b3', 'b4', 'b5']);
    expect(control.batches).toBe(3);
  });

  it('commits and yields once a batch has run its time, and runs the rest next', async () => {
    const clock = new FakeClock(Date.now());
    const { store, control } = setup({ budget: { perSource: 100, timeMs: 10 }, clock });
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        store.unit(async () => {
          clock.advance(4);
          return { ok: true };
        }, { source: `c${i}` }),
      ),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    // 4 ms each, 10 ms a batch: three operations per batch (the third starts before the time is up).
    expect(control.batches).toBe(2);
  });
});
