import { afterEach, describe, expect, it } from 'vitest';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { FakeClock, until } from '../support/helpers.js';
import { capturingLogger, leaseOf, startServer, type TestServer } from '../support/server.js';

const HOUR = 3_600_000;
const LEASE_MS = 120_000;

let servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function start(clock: FakeClock, extra: Partial<Parameters<typeof startServer>[0]> = {}) {
  const log = capturingLogger();
  const server = await startServer({ seats: 2, clock, flags: { leaseSeconds: LEASE_MS / 1000 }, logger: log.logger, ...extra });
  servers.push(server);
  const jumps = () => log.lines.filter((l) => typeof l['jumpMs'] === 'number');
  return { server, log, jumps };
}

async function holder(server: TestServer, user: string) {
  const events: Array<Record<string, unknown>> = [];
  const t = await TcpTransport.connect(server.address, { onEvent: (e) => events.push(e) });
  await t.request('hello', { v: 1, client: { user, host: `${user}-host`, instance: `${user}-1` }, product: 'cad' });
  return { t, events, lease: leaseOf(await t.request('acquire')) };
}

const held = async (server: TestServer) => {
  await server.settle();
  return (await server.floatd.store.allLeases()).map((l) => l.user).sort();
};

describe('a wall clock that jumps while the server runs', () => {
  it('forward 1 h: live leases survive, a dead client\'s lease ends at its true time, and the jump is logged, recorded and counted', async () => {
    const clock = new FakeClock(Date.now());
    const { server, jumps } = await start(clock);
    const live = await holder(server, 'live');
    const dead = await holder(server, 'dead');
    clock.advance(10_000);
    clock.jumpWall(HOUR);
    clock.advance(1_000);
    expect(await held(server)).toEqual(['dead', 'live']);
    expect(jumps()).toHaveLength(1);
    expect(jumps()[0]).toMatchObject({ level: 40, jumpMs: HOUR, leases: 2 });
    expect(jumps()[0]!['msg']).toMatch(/^the wall clock jumped forward by 1 h 0 min 0 s against the monotonic clock/);
    // Stored and shown times are wall-clock times again, with the time left unchanged.
    const stored = (await server.floatd.store.allLeases()).find((l) => l.user === 'dead')!;
    expect(stored.expiresAt).toBe(clock.now() + LEASE_MS - 11_000);
    expect(await server.floatd.store.queryEvents({ events: ['clock-jump'] })).toMatchObject([{ ts: clock.now() }]);
    expect((await server.floatd.metrics.text()).body).toMatch(/^floatd_clock_jumps_total 1$/m);

    clock.advance(49_000);
    const renewed = leaseOf(await live.t.request('renew', { lease: live.lease.id }));
    expect(renewed.expiresInMs).toBe(LEASE_MS);
    clock.advance(LEASE_MS - 60_000 - 1);
    expect(await held(server)).toEqual(['dead', 'live']);
    clock.advance(1);
    expect(await held(server)).toEqual(['live']);
    await until(() => dead.events.length > 0, 'the expiry to be pushed');
    expect(dead.events).toEqual([{ event: 'expired', lease: dead.lease.id, product: 'cad' }]);
    expect(jumps()).toHaveLength(1);
  });

  it('back 1 h: a dead client\'s lease ends on time instead of an hour late', async () => {
    const clock = new FakeClock(Date.now());
    const { server, jumps } = await start(clock);
    const live = await holder(server, 'live');
    await holder(server, 'dead');
    clock.jumpWall(-HOUR);
    clock.advance(60_000);
    await server.settle();
    expect(jumps()[0]).toMatchObject({ level: 40, jumpMs: -HOUR });
    expect(jumps()[0]!['msg']).toMatch(/jumped back by 1 h 0 min 0 s/);
    expect(leaseOf(await live.t.request('renew', { lease: live.lease.id })).expiresInMs).toBe(LEASE_MS);
    clock.advance(LEASE_MS - 60_000 - 1);
    expect(await held(server)).toEqual(['dead', 'live']);
    clock.advance(1);
    expect(await held(server)).toEqual(['live']);
    const expired = await server.floatd.store.queryEvents({ events: ['expired'] });
    expect(expired).toMatchObject([{ user: 'dead', ts: clock.now() }]);
  });
});

describe('a wall clock changed while the server was stopped', () => {
  async function leaseThenRestart(shiftMs: number) {
    const clock = new FakeClock(Date.now());
    const { server } = await start(clock);
    const { lease } = await holder(server, 'dead');
    await server.stop();
    servers = [];
    const later = new FakeClock(clock.now() + shiftMs);
    const again = await start(later, { dataDir: server.config.dataDir, vendor: server.vendor });
    return { ...again, later, lease };
  }

  it('turned back 1 h: stored times rule, but no lease keeps more than its full length, and the server says so', async () => {
    const { server, later, jumps } = await leaseThenRestart(-HOUR);
    expect(jumps()).toHaveLength(1);
    // (The latest time recorded may be the key's installation, on the real clock a moment after the fake one started.)
    expect(jumps()[0]).toMatchObject({ level: 40, leases: 1 });
    expect(jumps()[0]!['jumpMs']).toBeCloseTo(-HOUR, -4);
    expect(jumps()[0]!['msg']).toMatch(/^the wall clock is 1 h 0 min \d s behind the latest time recorded in the database/);
    expect((await server.floatd.store.allLeases())[0]!.expiresAt).toBe(later.now() + LEASE_MS);
    later.advance(LEASE_MS - 1);
    expect(await held(server)).toEqual(['dead']);
    later.advance(1);
    expect(await held(server)).toEqual([]);
  });

  it('set forward: stored times rule, so leases whose time passed are ended at start', async () => {
    const { server, jumps } = await leaseThenRestart(10 * 60_000);
    expect(jumps()).toEqual([]);
    expect(await held(server)).toEqual([]);
    expect(await server.floatd.store.queryEvents({ events: ['expired'] })).toMatchObject([{ user: 'dead' }]);
  });
});
