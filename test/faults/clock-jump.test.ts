import { afterEach, describe, expect, it } from 'vitest';
import type { TcpTransport } from '../../src/client/tcp-transport.js';
import { FakeClock } from '../support/helpers.js';
import { errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

const HOUR = 3_600_000;

describe('fault: the wall clock jumps back and forth under load', () => {
  it('loses no live lease, grants no seat twice, and ends dead clients\' leases on monotonic time', async () => {
    const clock = new FakeClock(Date.now());
    const started = clock.monotonic();
    const at = async (ms: number) => {
      clock.advance(started + ms - clock.monotonic());
      await server!.settle();
    };
    const SEATS = 11;
    server = await startServer({ seats: SEATS, clock, flags: { leaseSeconds: 120 } });
    const live: Array<{ t: TcpTransport; id: string }> = [];
    for (let i = 0; i < SEATS - 1; i++) {
      const t = await server.connect(`live-${i}`, `live-${i}`, 'cad');
      live.push({ t, id: leaseOf(await t.request('acquire')).id });
    }
    const renewAll = async () => {
      for (const l of live) expect(leaseOf(await l.t.request('renew', { lease: l.id })).expiresInMs).toBe(120_000);
    };
    const users = async () => (await server!.floatd.store.allLeases()).map((l) => l.user);
    const inUse = async () => (await users()).length;

    // A client takes the last seat and dies; the wall clock jumps an hour ahead.
    await (await server.connect('dead-1', 'dead-1', 'cad')).request('acquire');
    for (const [t, jump] of [[30_000, HOUR], [60_000, 0], [90_000, 0]] as const) {
      await at(t);
      clock.jumpWall(jump);
      await renewAll();
    }
    await at(119_999);
    expect(await users()).toContain('dead-1');
    await at(120_000);
    expect(await users()).not.toContain('dead-1');
    expect(await inUse()).toBe(SEATS - 1);

    // Another takes the freed seat and dies; the clock jumps two hours back.
    const newcomer = await server.connect('dead-2', 'dead-2', 'cad');
    leaseOf(await newcomer.request('acquire'));
    const late = await server.connect('late', 'late', 'cad');
    expect(errorOf(await late.request('acquire')).code).toBe('NO_FREE_SEATS');
    for (const [t, jump] of [[150_000, -2 * HOUR], [180_000, 0], [210_000, 30 * 60_000], [239_999, 0]] as const) {
      await at(t);
      clock.jumpWall(jump);
      await renewAll();
      expect(await inUse()).toBe(SEATS);
    }
    await at(240_000);
    expect(await users()).not.toContain('dead-2');
    expect(leaseOf(await late.request('acquire')).expiresInMs).toBe(120_000);
    expect(await inUse()).toBe(SEATS);
    expect(await server.floatd.store.queryEvents({ events: ['clock-jump'] })).toHaveLength(3);
    // Stored times are the wall clock's again.
    for (const l of await server.floatd.store.allLeases()) expect(l.expiresAt - clock.now()).toBeLessThanOrEqual(120_000);
  });
});
