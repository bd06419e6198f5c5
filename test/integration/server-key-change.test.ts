import { afterEach, describe, expect, it } from 'vitest';
import { advanceUntil, FakeClock } from '../support/fake-clock.js';
import { LeaseClient, type LeaseClientOptions } from '../../src/client/index.js';
import { startServer, type TestServer } from '../support/server.js';

const servers: TestServer[] = [];
const clients: LeaseClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.stop();
});

async function server(opts: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  const s = await startServer({ ...opts, flags: { leaseSeconds: 60, ...opts.flags } });
  servers.push(s);
  return s;
}

function record(c: LeaseClient): string[] {
  const seen: string[] = [];
  for (const e of ['acquired', 'renewed', 'lost', 'regained', 'revoked', 'serverKeyChanged'] as const) c.on(e, () => seen.push(e));
  c.on('denied', (d) => seen.push(`denied:${d.code}`));
  return seen;
}

/** A client holding a lease from one server, whose address is then answered by another server (another data directory, so another key). */
async function swapped(extra: Partial<LeaseClientOptions>) {
  const clock = new FakeClock(Date.parse('2026-11-21T08:00:00Z'));
  const first = await startServer({ clock, flags: { leaseSeconds: 60 } });
  const c = new LeaseClient({ server: first.address, clock, user: 'alice', instance: 'a-1', ...extra });
  clients.push(c);
  const seen = record(c);
  const changes: Array<{ from: string; to: string; refused: boolean }> = [];
  c.on('serverKeyChanged', (e) => changes.push(e));
  await c.acquire();
  const firstKey = (await first.floatd.status()).serverKeyFingerprint;
  await first.stop();
  const other = await server({ clock, vendor: first.vendor, flags: { listeners: [first.address] } });
  const otherKey = (await other.floatd.status()).serverKeyFingerprint;
  expect(otherKey).not.toBe(firstKey);
  return { clock, c, seen, changes, other, firstKey, otherKey };
}

describe('a server whose key changed under a client', () => {
  it('is reported loudly (serverKeyChanged, from and to), and its lease taken when nothing is pinned', async () => {
    const { clock, c, seen, changes, other, firstKey, otherKey } = await swapped({});
    await advanceUntil(clock, () => seen.includes('regained'), 60_000, 1000);
    expect(changes).toEqual([{ from: firstKey, to: otherKey, refused: false }]);
    expect(seen.indexOf('serverKeyChanged')).toBeLessThan(seen.indexOf('regained'));
    expect((await other.floatd.store.allLeases()).map((l) => l.id)).toEqual([c.lease!.id]);
  });

  it('with pinServerKey (true: the first key seen) refuses the changed server: SERVER_KEY_CHANGED, no lease from it', async () => {
    const { clock, seen, changes, other, firstKey, otherKey } = await swapped({ pinServerKey: true, retryIntervalMs: 5000 });
    await advanceUntil(clock, () => seen.includes('denied:SERVER_KEY_CHANGED'), 120_000, 1000);
    expect(changes[0]).toEqual({ from: firstKey, to: otherKey, refused: true });
    expect(seen).not.toContain('regained');
    expect(seen).toContain('lost');
    expect(await other.floatd.store.allLeases()).toEqual([]);
  });

  it('with vendorPublicKey refuses a server whose key changed (SERVER_KEY_CHANGED), before looking at its lease', async () => {
    const first = await startServer();
    const c = new LeaseClient({ server: first.address, user: 'carol', instance: 'c-1', retryIntervalMs: 0, vendorPublicKey: first.vendor.pair.publicJwk });
    clients.push(c);
    const changes: Array<{ refused: boolean }> = [];
    c.on('serverKeyChanged', (e) => changes.push(e));
    // This server's key needs no activation, so its lease does not chain: refused, but its key is now the one seen.
    await expect(c.acquire()).rejects.toMatchObject({ code: 'TOKEN_INVALID' });
    await first.stop();
    const other = await server({ vendor: first.vendor, flags: { listeners: [first.address] } });
    await expect(c.acquire()).rejects.toMatchObject({ code: 'SERVER_KEY_CHANGED', message: expect.stringContaining('vendorPublicKey') });
    expect(changes).toMatchObject([{ refused: true }]);
    expect(await other.floatd.store.allLeases()).toEqual([]);
  });

  it('with pinServerKey set to a fingerprint refuses any other key from the start', async () => {
    const s = await server();
    const c = new LeaseClient({ server: s.address, user: 'bob', instance: 'b-1', pinServerKey: 'not-this-servers-key', retryIntervalMs: 0 });
    clients.push(c);
    await expect(c.acquire()).rejects.toMatchObject({ code: 'SERVER_KEY_CHANGED', message: expect.stringContaining(String((await s.floatd.status()).serverKeyFingerprint)) });
    expect(await s.floatd.store.allLeases()).toEqual([]);
  });
});
