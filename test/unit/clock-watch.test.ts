import { describe, expect, it } from 'vitest';
import { ClockWatch, span } from '../../src/app/clock-watch.js';
import { LeaseService } from '../../src/app/lease-service.js';
import { PoolRegistry } from '../../src/app/pool-registry.js';
import { SteadyClock } from '../../src/domain/steady-clock.js';
import { FakeLeaseStore } from '../support/fake-lease-store.js';
import { FakeClock, client, licenseKey } from '../support/helpers.js';

const HOUR = 3_600_000;

function setup(keyExpiresIn: number | null = null) {
  const wall = new FakeClock();
  const clock = new SteadyClock(wall);
  const store = new FakeLeaseStore();
  const pools = new PoolRegistry();
  pools.set([licenseKey({ seats: 3, expiresAt: keyExpiresIn === null ? null : wall.now() + keyExpiresIn })], null, wall.now());
  const service = new LeaseService(store, clock, pools, { leaseMs: 120_000, logLevel: 'detailed' });
  const watch = new ClockWatch(clock, store, service);
  const acquire = async (user: string) => {
    const got = await service.acquire(client(user), 'cad');
    if (!got.ok) throw new Error(got.message);
    return got.lease;
  };
  return { wall, clock, store, service, watch, acquire };
}

describe('SteadyClock', () => {
  it('follows the monotonic clock, not the wall clock, until re-based', async () => {
    const wall = new FakeClock();
    const clock = new SteadyClock(wall);
    const start = wall.now();
    wall.advance(1000);
    expect(clock.now()).toBe(start + 1000);
    wall.jumpWall(HOUR);
    expect(clock.now()).toBe(start + 1000);
    expect(clock.drift()).toBe(HOUR);
    clock.rebase(clock.drift());
    expect(clock.now()).toBe(wall.now());
    expect(clock.drift()).toBe(0);
  });
});

describe('ClockWatch', () => {
  it('leaves small differences alone', async () => {
    const { wall, watch, store, acquire } = setup();
    await acquire('a');
    wall.jumpWall(4_999);
    expect(await watch.check()).toBeNull();
    wall.jumpWall(-9_998);
    expect(await watch.check()).toBeNull();
    expect(await store.queryEvents({ events: ['clock-jump'] })).toEqual([]);
  });

  it('on a jump forward moves every expiry with the wall clock, so each lease keeps the time it had left', async () => {
    const { wall, clock, watch, store, service, acquire } = setup();
    const lease = await acquire('a');
    wall.advance(20_000);
    wall.jumpWall(HOUR);
    // Before the check, lease time has not moved: nothing expires.
    expect(await service.sweep()).toBe(0);
    const jump = await watch.check();
    expect(jump).toMatchObject({ shiftMs: HOUR, leases: 1 });
    expect(jump!.message).toMatch(/^the wall clock jumped forward by 1 h 0 min 0 s against the monotonic clock: the expiry of 1 lease\(s\) moved/);
    expect(clock.now()).toBe(wall.now());
    expect((await store.allLeases())[0]!.expiresAt - clock.now()).toBe(100_000);
    expect((await store.allLeases())[0]!.expiresAt).toBe(lease.expiresAt + HOUR);
    expect(await store.queryEvents({ events: ['clock-jump'] })).toMatchObject([{ ts: wall.now(), message: jump!.message }]);
    wall.advance(99_999);
    expect(await service.sweep()).toBe(0);
    wall.advance(1);
    expect(await service.sweep()).toBe(1);
  });

  it('on a jump back does the same, so a dead client\'s lease still ends on time', async () => {
    const { wall, watch, service, acquire } = setup();
    await acquire('a');
    wall.jumpWall(-HOUR);
    expect(await watch.check()).toMatchObject({ shiftMs: -HOUR, leases: 1 });
    wall.advance(119_999);
    expect(await service.sweep()).toBe(0);
    wall.advance(1);
    expect(await service.sweep()).toBe(1);
  });

  it('never moves a lease past the expiry of its key', async () => {
    const { wall, watch, store, acquire } = setup(HOUR + 60_000);
    await acquire('a');
    wall.jumpWall(HOUR);
    await watch.check();
    expect((await store.allLeases())[0]!.expiresAt).toBe(wall.now() + 60_000);
  });

  it('at start, lets stored times rule but cuts a lease with more than its full length left', async () => {
    const { wall, store, acquire } = setup();
    await acquire('a');
    // A restart: a new clock pair, an hour behind what was recorded.
    const later = new FakeClock(wall.now() - HOUR);
    const clock = new SteadyClock(later);
    const watch = new ClockWatch(clock, store, new LeaseService(store, clock, new PoolRegistry(), { leaseMs: 120_000, logLevel: 'detailed' }));
    const jump = await watch.atStart();
    expect(jump).toMatchObject({ shiftMs: -HOUR, leases: 1 });
    expect(jump!.message).toMatch(/^the wall clock is 1 h 0 min 0 s behind the latest time recorded in the database/);
    expect((await store.allLeases())[0]!.expiresAt).toBe(later.now() + 120_000);
    // Nothing to say on a start with the clock where it was.
    expect(await new ClockWatch(new SteadyClock(wall), store, new LeaseService(store, new SteadyClock(wall), new PoolRegistry(), { leaseMs: 1, logLevel: 'detailed' })).atStart()).toBeNull();
  });

  it('says how big a jump was', async () => {
    expect(span(7_500)).toBe('7.5 s');
    expect(span(-HOUR)).toBe('1 h 0 min 0 s');
    expect(span(125_000)).toBe('2 min 5 s');
  });
});
