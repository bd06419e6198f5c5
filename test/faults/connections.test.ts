import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { makeCerts } from '../support/certs.js';
import { FakeClock, until } from '../support/helpers.js';
import { errorOf, startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.stop();
  server = undefined;
});

const HELLO_ACQUIRE = '{"op":"hello","id":1,"client":{"user":"carol","instance":"c-1"}}\n{"op":"acquire","id":2,"product":"cad"}\n';

/** Writes `payload`, shuts the sending side at once (as `nc -N` does), and collects every line until the server closes. */
function halfClose(socket: Socket, payload: string): Promise<Array<Record<string, unknown>>> {
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    let buf = '';
    socket.on('data', (d: Buffer) => (buf += d.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve(buf.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)));
    socket.end(payload);
  });
}

function lines(socket: Socket): { all: string[]; closed: Promise<void> } {
  const all: string[] = [];
  let buf = '';
  socket.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      all.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  socket.on('error', () => {});
  return { all, closed: new Promise((resolve) => socket.once('close', () => resolve())) };
}

describe('a client that half-closes (printf "hello\\nacquire\\n" | nc -N host port)', () => {
  it('gets the reply of its committed acquire over plain TCP, then the server closes', async () => {
    server = await startServer();
    const [host, port] = server.address.split(':');
    const replies = await halfClose(connect({ host, port: Number(port) }), HELLO_ACQUIRE);
    expect(replies).toMatchObject([{ id: 1, ok: true }, { id: 2, ok: true, lease: { product: 'cad' } }]);
    const leaseId = (replies[1]!['lease'] as { id: string }).id;
    expect((await server.floatd.store.allLeases()).map((l) => l.id)).toEqual([leaseId]);
  });

  it('gets it inside TLS too (tls://)', async () => {
    const certs = makeCerts();
    server = await startServer({ flags: { listeners: ['tls://127.0.0.1:0'], 'tls.certFile': certs.serverCert, 'tls.keyFile': certs.serverKey } });
    const port = server.floatd.listenerStatus().find((l) => l.scheme === 'tls')!.port;
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: certs.ca });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    const replies = await halfClose(socket, HELLO_ACQUIRE);
    expect(replies).toMatchObject([{ id: 1, ok: true }, { id: 2, ok: true, lease: { product: 'cad' } }]);
    expect(await server.floatd.store.allLeases()).toHaveLength(1);
  });
});

describe('idle timeout', () => {
  it('counts complete requests, not bytes: a byte every 12 s after hello does not keep a connection open', async () => {
    // The connections' timeouts wait on the fake clock: a minute of it passes in no time.
    const clock = new FakeClock(Date.now());
    server = await startServer({ clock, connectionTimersOnClock: true, flags: { idleTimeoutSeconds: 60 } });
    const [host, port] = server.address.split(':');
    const slow = connect({ host, port: Number(port) });
    sockets.push(slow);
    const got = lines(slow);
    let closed = false;
    void got.closed.then(() => (closed = true));
    slow.write('{"op":"hello","id":1,"client":{"user":"sloth","instance":"s-1"}}\n');
    await until(() => got.all.length === 1, 'the hello reply');
    // A request that never ends, a byte every 12 s: still open after 48 s, closed at 60 s.
    for (let i = 0; i < 4; i++) {
      await new Promise<void>((r) => slow.write(' ', () => r()));
      clock.advance(12_000);
    }
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(false);
    slow.write(' ');
    clock.advance(12_000);
    await got.closed;
    expect(JSON.parse(got.all.at(-1)!)).toMatchObject({ ok: false, error: { code: 'IDLE_TIMEOUT' } });
  });

  it('keeps a connection that sends a request within every timeout', async () => {
    const clock = new FakeClock(Date.now());
    server = await startServer({ clock, connectionTimersOnClock: true, flags: { idleTimeoutSeconds: 60 } });
    const t = await server.connect('busy');
    for (let i = 0; i < 6; i++) {
      clock.advance(50_000);
      expect((await t.request('ping')).ok).toBe(true);
    }
  });
});

describe('fairness', () => {
  it('answers a ping at once while another client has 500 status requests pipelined and 5,000 leases are held', async () => {
    // 5,000 acquisitions from 127.0.0.1 at once: past the default acquisition burst, so the limit is off here.
    server = await startServer({ seats: 6000, flags: { 'acquireRateLimit.perSecond': 0 } });
    const api = server.floatd.api;
    for (let i = 0; i < 5000; i += 500) {
      const outcomes = await Promise.all(
        Array.from({ length: 500 }, (_, j) => api.acquire({ user: `u${i + j}`, instance: `i${i + j}`, host: 'h', remote: '10.0.0.1', listener: 'tcp' }, 'cad')),
      );
      expect(outcomes.every((o) => o.ok)).toBe(true);
    }
    const pinger = await server.connect('pinger');
    const [host, port] = server.address.split(':');
    const flooder = connect({ host, port: Number(port) });
    sockets.push(flooder);
    const got = lines(flooder);
    await new Promise<void>((resolve) => flooder.once('connect', () => resolve()));
    flooder.write('{"op":"hello","id":0,"client":{"user":"flood","instance":"f-1"}}\n' + '{"op":"status"}\n'.repeat(500));
    // Let the flood arrive first.
    await new Promise((r) => setTimeout(r, 20));
    const t0 = performance.now();
    expect((await pinger.request('ping')).ok).toBe(true);
    const waited = performance.now() - t0;
    // Before status was served from a snapshot and requests were served in turn, the ping waited 14.9 s.
    expect(waited).toBeLessThan(500);
    while (got.all.length < 501) await new Promise((r) => setTimeout(r, 20));
    expect(JSON.parse(got.all[500]!)).toMatchObject({ ok: true, leasesHeld: 5000 });
  });

  it('shows a change in status at once, though status is served from a snapshot', async () => {
    server = await startServer({ seats: 3 });
    const t = await server.connect('alice');
    const held = async (c: typeof t) => ((await c.request('status')) as unknown as { leasesHeld: number }).leasesHeld;
    expect(await held(t)).toBe(0);
    await t.request('acquire', { product: 'cad' });
    expect(await held(t)).toBe(1);
    const other = await server.connect('bob');
    errorOf(await other.request('renew', { lease: 'nope' }));
    expect(await held(other)).toBe(1);
  });
});
