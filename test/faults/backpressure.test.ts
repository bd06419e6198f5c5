import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TcpServer, type ConnectionHandler, type TcpServerOptions } from '../../src/adapters/tcp/tcp-server.js';
import { clockTimers } from '../../src/adapters/tcp/timers.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { FakeClock, advanceUntil } from '../support/fake-clock.js';

/** A reply of 32 KiB to every `big` request, so a client that does not read backs up within a few hundred requests. */
const PAD = 'x'.repeat(32 << 10);
let handled = 0;
const handler: ConnectionHandler = {
  onMessage: (conn, msg) => {
    conn.markReady();
    if (msg['op'] !== 'big') return { id: msg['id'], ok: true };
    handled++;
    return { id: msg['id'], ok: true, pad: PAD };
  },
  onError: (_conn, msg) => ({ id: msg['id'], ok: false, error: { code: 'INTERNAL', message: 'internal server error' } }),
};

let server: TcpServer | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.stop(100);
  server = undefined;
  handled = 0;
});

const events = { paused: 0, dropped: [] as number[] };
async function start(options: Partial<TcpServerOptions> = {}): Promise<number> {
  events.paused = 0;
  events.dropped = [];
  server = new TcpServer(
    {
      listeners: [{ name: 'tcp', host: '127.0.0.1', port: 0 }],
      frameMaxBytes: 1024,
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 0,
      maxConnections: 100,
      backlog: 64,
      keepAliveMs: 0,
      replyBufferBytes: 64 << 10,
      replyBufferTotalBytes: 32 << 20,
      drainTimeoutMs: 30_000,
      ...options,
    },
    handler,
    { paused: () => events.paused++, slowReaderDropped: (_conn, unsent) => events.dropped.push(unsent) },
  );
  const [bound] = await server.start();
  return bound!.port;
}

/** A client that sends `n` big requests and reads nothing (until told to). */
function nonReader(port: number, n: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.pause();
      s.write(Array.from({ length: n }, (_, i) => `{"op":"big","id":${i + 1}}\n`).join(''));
      resolve(s);
    });
    s.once('error', reject);
    sockets.push(s);
  });
}

/** Waits until `value()` has not changed for `quietMs` (real time; the server works on its own). */
async function settled(value: () => number, quietMs = 300, maxMs = 15_000): Promise<number> {
  let last = value();
  let since = performance.now();
  const start = performance.now();
  while (performance.now() - start < maxMs) {
    await new Promise((r) => setTimeout(r, 25));
    const now = value();
    if (now !== last) {
      last = now;
      since = performance.now();
    } else if (performance.now() - since >= quietMs) {
      return now;
    }
  }
  throw new Error('never settled');
}

describe('backpressure on the NDJSON listener', () => {
  it('stops reading a connection whose replies back up, and answers every request in order once it reads again', async () => {
    const port = await start();
    const n = 3000;
    const s = await nonReader(port, n);
    // The kernel takes some megabytes of replies; then the server's own buffer fills to the bound, and it stops.
    const stoppedAt = await settled(() => handled);
    expect(stoppedAt).toBeLessThan(n);
    expect(server!.backpressure().pausedConnections).toBe(1);
    // (It may have paused and resumed before, as the kernel took more of the replies.)
    expect(events.paused).toBeGreaterThanOrEqual(1);
    // The bound, plus at most the few replies of one turn (written together) and those in flight.
    expect(server!.backpressure().unsentBytes).toBeLessThanOrEqual((64 << 10) + 5 * PAD.length + 1024);
    // A well-behaved client is answered meanwhile.
    const good = await TcpTransport.connect(`127.0.0.1:${port}`);
    const t0 = performance.now();
    expect((await good.request('ping')).ok).toBe(true);
    expect(performance.now() - t0).toBeLessThan(500);
    good.close();
    // Reading again: every reply comes, in order, and the connection is read again.
    const ids: number[] = [];
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        ids.push((JSON.parse(buf.slice(0, nl)) as { id: number }).id);
        buf = buf.slice(nl + 1);
      }
    });
    s.resume();
    await settled(() => ids.length, 200);
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(server!.backpressure()).toEqual({ unsentBytes: 0, pausedConnections: 0 });
  });

  it('drops a connection whose replies do not drain within the drain timeout, and tells why', async () => {
    // The drain timeout runs on a fake clock: 30 s pass without waiting for them.
    const clock = new FakeClock();
    const port = await start({ drainTimeoutMs: 30_000, timers: clockTimers(clock) });
    const s = await nonReader(port, 3000);
    const t0 = performance.now();
    while (events.paused === 0 && performance.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
    expect(events.paused).toBeGreaterThanOrEqual(1);
    const pausedAt = clock.monotonic();
    await advanceUntil(clock, () => events.dropped.length > 0, 120_000, 5000);
    expect(events.dropped).toHaveLength(1);
    // Not before the drain timeout (each pause starts it afresh).
    expect(clock.monotonic() - pausedAt).toBeGreaterThanOrEqual(30_000);
    // The client learns it once it looks.
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    s.resume();
    await closed;
    expect(events.dropped[0]).toBeGreaterThan(32 << 10);
    expect(server!.backpressure()).toEqual({ unsentBytes: 0, pausedConnections: 0 });
    expect(server!.connections()).toBe(0);
  });

  it('keeps the unsent replies of all connections under the total cap: past it, every connection backed up waits', async () => {
    const port = await start({ replyBufferBytes: 256 << 10, replyBufferTotalBytes: 384 << 10 });
    for (let i = 0; i < 6; i++) await nonReader(port, 3000);
    await settled(() => handled);
    const { unsentBytes, pausedConnections } = server!.backpressure();
    expect(pausedConnections).toBe(6);
    // Each connection alone could hold 256 KiB (1.5 MiB for six); the total stays near its cap of 384 KiB.
    expect(unsentBytes).toBeLessThanOrEqual((384 << 10) + 6 * 5 * PAD.length);
    expect(unsentBytes).toBeLessThan(6 * (256 << 10));
  });
});
