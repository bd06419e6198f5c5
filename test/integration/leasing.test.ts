import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyLeaseToken } from '../../src/adapters/crypto/lease-tokens.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { FakeClock, until } from '../support/helpers.js';
import { errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

/**
 * Sends raw bytes and collects the reply lines. With `count`, resolves as soon as
 * that many lines came (the connection is then proved open by a probe request
 * that must be answered too); without, resolves when the server closes.
 */
function raw(address: string, payload: string | Buffer, count?: number, halfClose = false): Promise<{ lines: string[]; closed: boolean }> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const s = connect({ host, port: Number(port) });
    let buf = '';
    let probing = false;
    const lines = () => buf.split('\n').filter((l) => l !== '');
    s.on('data', (d) => {
      buf += d.toString();
      if (count === undefined) return;
      if (!probing && lines().length >= count) {
        probing = true;
        s.write('{"op":"ping","id":"probe"}\n');
      } else if (probing && lines().some((l) => l.includes('"probe"'))) {
        s.destroy();
        resolve({ lines: lines().filter((l) => !l.includes('"probe"')), closed: false });
      }
    });
    s.on('close', () => resolve({ lines: lines(), closed: true }));
    s.on('error', () => {});
    s.write(payload);
    if (halfClose) s.end();
  });
}

describe('leasing over TCP', () => {
  it('grants until the seats run out, then says NO_FREE_SEATS with retryAfterMs', async () => {
    server = await startServer({ seats: 2 });
    const a = await server.connect('a');
    const b = await server.connect('b');
    const c = await server.connect('c');
    expect(leaseOf(await a.request('acquire', { product: 'cad' })).product).toBe('cad');
    leaseOf(await b.request('acquire', { product: 'cad' }));
    const denied = errorOf(await c.request('acquire', { product: 'cad' }));
    expect(denied.code).toBe('NO_FREE_SEATS');
    expect(denied.retryAfterMs).toBeGreaterThan(0);
    const log = await server.floatd.store.queryEvents({ events: ['denied'] });
    expect(log).toHaveLength(1);
    expect(log[0]).toMatchObject({ user: 'c', code: 'NO_FREE_SEATS', remote: '127.0.0.1', seatsInUse: 2, seatsTotal: 2 });
  });

  it('returns the same lease to an instance that acquires twice, even on a new connection (with its secret)', async () => {
    server = await startServer({ seats: 1 });
    const granted = await (await server.connect('a', 'i1')).request('acquire', { product: 'cad' });
    const first = leaseOf(granted);
    const leaseSecret = (granted as Record<string, unknown>)['leaseSecret'];
    const again = await (await server.connect('a', 'i1')).request('acquire', { product: 'cad', leaseSecret });
    expect(leaseOf(again).id).toBe(first.id);
    expect((again as Record<string, unknown>)['renewed']).toBe(true);
    expect(errorOf(await (await server.connect('a', 'i2')).request('acquire', { product: 'cad' })).code).toBe('NO_FREE_SEATS');
  });

  it('renews with fresh durations and a token signed by the server key', async () => {
    server = await startServer({ flags: { leaseSeconds: 60 } });
    const t = await TcpTransport.connect(server.address);
    const hello = await t.request('hello', { v: 1, client: { user: 'alice', host: 'ws', instance: 'i' }, product: 'cad' });
    const publicKey = (hello as Record<string, unknown>)['publicKey'] as Record<string, string>;
    const lease = leaseOf(await t.request('acquire'));
    expect(lease.leaseMs).toBe(60_000);
    // Durations count from when the reply left the server, so a little under half.
    expect(lease.renewAfterMs).toBeGreaterThan(29_000);
    expect(lease.renewAfterMs).toBeLessThanOrEqual(30_000);
    expect(lease.expiresInMs).toBeLessThanOrEqual(60_000);
    expect(lease.expiresInMs).toBeGreaterThan(59_000);
    const renewed = leaseOf(await t.request('renew', { lease: lease.id }));
    expect(renewed.id).toBe(lease.id);
    const claims = await verifyLeaseToken(renewed.token, publicKey);
    expect(claims).toMatchObject({ leaseId: lease.id, product: 'cad', user: 'alice', instance: 'i', host: 'ws' });
    expect(errorOf(await t.request('renew', { lease: 'no-such-lease' })).code).toBe('LEASE_NOT_FOUND');
    t.close();
  });

  it('releases, frees the seat, and accepts a second release', async () => {
    server = await startServer({ seats: 1 });
    const a = await server.connect('a');
    const lease = leaseOf(await a.request('acquire', { product: 'cad' }));
    expect(await a.request('release', { lease: lease.id })).toMatchObject({ ok: true, released: true });
    expect(await a.request('release', { lease: lease.id })).toMatchObject({ ok: true, released: false });
    leaseOf(await (await server.connect('b')).request('acquire', { product: 'cad' }));
    expect((await server.floatd.store.queryEvents({})).filter((e) => e.user !== null).map((e) => e.event)).toEqual(['granted', 'released', 'granted']);
  });

  it('keeps the lease when the connection drops', async () => {
    server = await startServer({ seats: 1 });
    const a = await server.connect('a');
    const granted = await a.request('acquire', { product: 'cad' });
    const lease = leaseOf(granted);
    a.close();
    await until(() => a.closed, 'the connection to close');
    expect(errorOf(await (await server.connect('b')).request('acquire', { product: 'cad' })).code).toBe('NO_FREE_SEATS');
    const back = await server.connect('a');
    expect(leaseOf(await back.request('renew', { lease: lease.id, leaseSecret: (granted as Record<string, unknown>)['leaseSecret'] })).id).toBe(lease.id);
  });

  it('grants exactly the seat count to 200 clients racing for 50 seats', async () => {
    server = await startServer({ seats: 50 });
    const s = server;
    const clients = await Promise.all(Array.from({ length: 200 }, (_, i) => s.connect(`user${i}`)));
    const replies = await Promise.all(clients.map((c) => c.request('acquire', { product: 'cad' })));
    const granted = replies.filter((r) => r.ok);
    expect(granted).toHaveLength(50);
    expect(new Set(granted.map((r) => leaseOf(r).id)).size).toBe(50);
    expect(replies.filter((r) => !r.ok).every((r) => errorOf(r).code === 'NO_FREE_SEATS')).toBe(true);
    expect((await server.floatd.status()).products).toEqual([{ product: 'cad', seatsTotal: 50, seatsGrantable: 50, seatsInUse: 50, seatsFree: 0 }]);
  });

  it('serves evaluation seats with no key and says so in status', async () => {
    server = await startServer({ evaluation: true, flags: { 'evaluation.seats': 2, 'evaluation.days': 30 } });
    const a = await server.connect('a');
    expect(leaseOf(await a.request('acquire')).product).toBe('evaluation');
    leaseOf(await (await server.connect('b')).request('acquire', { product: 'anything' }));
    expect(errorOf(await (await server.connect('c')).request('acquire')).code).toBe('NO_FREE_SEATS');
    const status = await a.request('status');
    expect(status).toMatchObject({ ok: true, view: 'public', mode: 'evaluation', products: [{ product: 'evaluation', seatsTotal: 2, seatsInUse: 2 }] });
    expect(await server.floatd.status()).toMatchObject({ mode: 'evaluation', evaluation: { seats: 2, daysLeft: 30, expired: false } });
  });
});

describe('expiry sweeping with an injected clock', () => {
  it('frees the seat at expires_at, logs it, and tells a connected holder', async () => {
    const clock = new FakeClock(Date.now());
    server = await startServer({ seats: 1, clock, flags: { leaseSeconds: 30 } });
    const events: Array<Record<string, unknown>> = [];
    const t = await TcpTransport.connect(server.address, { onEvent: (e) => events.push(e) });
    await t.request('hello', { v: 1, client: { user: 'a', instance: 'i' }, product: 'cad' });
    const lease = leaseOf(await t.request('acquire'));
    const grantedAt = clock.now();
    clock.advance(29_999);
    await server.settle();
    expect(await server.floatd.store.allLeases()).toHaveLength(1);
    clock.advance(1);
    await server.settle();
    expect(await server.floatd.store.allLeases()).toHaveLength(0);
    const expired = await server.floatd.store.queryEvents({ events: ['expired'] });
    expect(expired).toHaveLength(1);
    expect(expired[0]).toMatchObject({ leaseId: lease.id, ts: grantedAt + 30_000, seatsInUse: 0 });
    await until(() => events.length > 0, 'the expiry to be pushed');
    expect(events).toEqual([{ event: 'expired', lease: lease.id, product: 'cad' }]);
    expect(errorOf(await t.request('renew', { lease: lease.id })).code).toBe('LEASE_NOT_FOUND');
    t.close();
  });

  it('wakes for a lease that expires sooner than the one it planned for', async () => {
    const clock = new FakeClock(Date.now());
    server = await startServer({ seats: 5, clock, flags: { leaseSeconds: 600 } });
    const a = await server.connect('a');
    leaseOf(await a.request('acquire', { product: 'cad' }));
    clock.advance(300_000);
    const b = await server.connect('b');
    leaseOf(await b.request('acquire', { product: 'cad' }));
    clock.advance(300_000);
    await server.settle();
    expect((await server.floatd.store.allLeases()).map((l) => l.user)).toEqual(['b']);
    clock.advance(300_000);
    await server.settle();
    expect(await server.floatd.store.allLeases()).toEqual([]);
  });
});

describe('protocol hygiene', () => {
  it('requires hello first, validates it, and answers unknown ops', async () => {
    server = await startServer();
    const { lines } = await raw(
      server.address,
      [
        '{"op":"acquire","id":1}',
        '{"op":"hello","id":2,"client":{"user":"a"}}',
        '{"op":"hello","id":3,"v":2,"client":{"user":"a","instance":"i"}}',
        '{"op":"hello","id":4,"client":{"user":"a","instance":"i"}}',
        '{"op":"teleport","id":5}',
        '{"op":"acquire","id":6,"product":""}',
        '{"id":7}',
        '',
      ].join('\n'),
      7,
    );
    const replies = lines.map((l) => JSON.parse(l) as { id: number; ok: boolean; error?: { code: string; message: string } });
    const byId = new Map(replies.map((r) => [r.id, r]));
    expect(byId.get(1)?.error?.code).toBe('HELLO_REQUIRED');
    expect(byId.get(2)?.error).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('client.instance') });
    expect(byId.get(3)?.error?.code).toBe('UNSUPPORTED_VERSION');
    expect(byId.get(4)?.ok).toBe(true);
    expect(byId.get(5)?.error?.code).toBe('UNKNOWN_OP');
    expect(byId.get(6)?.error?.code).toBe('BAD_REQUEST');
    expect(byId.get(7)?.error?.code).toBe('BAD_REQUEST');
  });

  it('answers garbage with BAD_REQUEST, keeps the connection, and other clients are untouched', async () => {
    server = await startServer();
    const good = await server.connect('good');
    const { lines, closed } = await raw(server.address, 'not json\n[1,2]\n{"op":"ping","id":1}\n', 3);
    expect(lines.map((l) => JSON.parse(l).error?.code ?? 'ok')).toEqual(['BAD_REQUEST', 'BAD_REQUEST', 'HELLO_REQUIRED']);
    expect(closed).toBe(false);
    expect(leaseOf(await good.request('acquire', { product: 'cad' })).product).toBe('cad');
  });

  it('answers every request of a client that shuts its sending side after writing them (nc -N), then closes', async () => {
    server = await startServer();
    const { lines, closed } = await raw(
      server.address,
      '{"op":"hello","id":1,"client":{"user":"carol","instance":"c-1"}}\n{"op":"acquire","id":2,"product":"cad"}\n',
      undefined,
      true,
    );
    expect(closed).toBe(true);
    expect(lines.map((l) => JSON.parse(l) as { id: number; ok: boolean })).toMatchObject([{ id: 1, ok: true }, { id: 2, ok: true }]);
  });

  it('closes a connection that keeps sending garbage', async () => {
    server = await startServer();
    const { lines, closed } = await raw(server.address, 'x\n'.repeat(20));
    expect(lines).toHaveLength(10);
    expect(closed).toBe(true);
  });

  it('closes a connection that sends an oversized line', async () => {
    server = await startServer({ flags: { frameMaxBytes: 1024 } });
    const { lines, closed } = await raw(server.address, `{"op":"hello","pad":"${'x'.repeat(2000)}"}\n`);
    expect(JSON.parse(lines[0]!).error.code).toBe('FRAME_TOO_LARGE');
    expect(closed).toBe(true);
  });

  it('drops a client that does not say hello within the handshake timeout', async () => {
    const clock = new FakeClock(Date.now());
    server = await startServer({ clock, connectionTimersOnClock: true, flags: { handshakeTimeoutSeconds: 30 } });
    // Resolves when the server closes the connection; the handshake timeout waits on the fake clock.
    const pending = raw(server.address, '');
    await until(() => server!.floatd.context.doors.connections() === 1, 'the connection to be accepted');
    clock.advance(30_000);
    const { lines, closed } = await pending;
    expect(JSON.parse(lines[0]!).error.code).toBe('HANDSHAKE_TIMEOUT');
    expect(closed).toBe(true);
  });

  it('refuses connections beyond the cap with TOO_MANY_CONNECTIONS', async () => {
    server = await startServer({ flags: { maxConnections: 2 } });
    await server.connect('a');
    await server.connect('b');
    const { lines, closed } = await raw(server.address, '');
    expect(JSON.parse(lines[0]!).error.code).toBe('TOO_MANY_CONNECTIONS');
    expect(closed).toBe(true);
  });
});
