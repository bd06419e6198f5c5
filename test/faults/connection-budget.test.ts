import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../support/helpers.js';
import { capturingLogger, leaseOf, startServer, type TestServer } from '../support/server.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';

let server: TestServer | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.stop();
  server = undefined;
});

function webPort(s: TestServer): number {
  return s.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port;
}

/** An HTTP/1.1 keep-alive connection that makes one request, reads the answer and then stays open, idle. */
async function idleKeepAlive(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  sockets.push(socket);
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString();
      if (/\r\n\r\n[\s\S]*\}$/.test(text)) resolve();
    });
    socket.once('close', () => reject(new Error(`closed before answering: ${text}`)));
    socket.write('GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: keep-alive\r\n\r\n');
  });
  return socket;
}

function closed(socket: Socket): Promise<void> {
  return socket.destroyed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}

describe('one connection budget over every listener (maxConnections)', () => {
  it('closes idle HTTP keep-alive connections to serve a lease client when the budget is spent', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'], maxConnections: 6 } });
    const port = webPort(server);
    const idle: Socket[] = [];
    for (let i = 0; i < 6; i++) idle.push(await idleKeepAlive(port));

    // Every slot is an idle HTTP connection: a lease client still gets in, and gets a seat.
    const t = await TcpTransport.connect(server.address);
    expect((await t.request('hello', { v: 1, client: { user: 'alice', instance: 'a-1' } })).ok).toBe(true);
    leaseOf(await t.request('acquire', { product: 'cad' }));
    // The oldest idle HTTP connection made room.
    await closed(idle[0]!);
    expect(idle.slice(1).every((s) => !s.destroyed)).toBe(true);
    t.close();
  });

  it('refuses past the budget when nothing is idle, over HTTP and NDJSON alike, and warns (once a minute)', async () => {
    const { logger, lines } = capturingLogger();
    server = await startServer({ logger, flags: { 'http.listen': ['127.0.0.1:0'], maxConnections: 3 } });
    const held: TcpTransport[] = [];
    for (let i = 0; i < 3; i++) {
      const t = await TcpTransport.connect(server.address);
      expect((await t.request('hello', { v: 1, client: { user: `u${i}`, instance: `i${i}` } })).ok).toBe(true);
      held.push(t);
    }
    // NDJSON: refused with a reason.
    const refused = await new Promise<Array<Record<string, unknown>>>((resolve) => {
      const got: Array<Record<string, unknown>> = [];
      void TcpTransport.connect(server!.address, { onEvent: (m) => got.push(m), onClose: () => resolve(got) }).catch(() => resolve(got));
    });
    expect(refused[0]).toMatchObject({ ok: false, error: { code: 'TOO_MANY_CONNECTIONS' } });
    // HTTP: closed unanswered.
    const http = connect({ host: '127.0.0.1', port: webPort(server) });
    http.on('error', () => {});
    let answered = '';
    http.on('data', (d: Buffer) => (answered += d.toString()));
    http.write('GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n');
    await closed(http);
    expect(answered).toBe('');
    await until(() => lines.some((l) => String(l['msg']).startsWith('connection refused: the server holds its maximum of 3 connections over all listeners')), 'the warning');
    expect(lines.filter((l) => String(l['msg']).startsWith('connection refused')).length).toBe(1);
    for (const t of held) t.close();
    // Slots come back as connections close.
    const again = await (async () => {
      for (let i = 0; i < 40; i++) {
        const t = await TcpTransport.connect(server!.address);
        const r = await t.request('hello', { v: 1, client: { user: 'late', instance: 'l-1' } }).catch(() => null);
        if (r?.ok) return t;
        t.close();
        await new Promise((r) => setTimeout(r, 25));
      }
      return null;
    })();
    expect(again).not.toBeNull();
    again?.close();
  });
});

describe('the web endpoint\'s request timeout', () => {
  it('cuts a request whose headers do not arrive within handshakeTimeoutSeconds, when the timeout says (not at Node\'s 30-second check)', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'], handshakeTimeoutSeconds: 1 } });
    const socket = connect({ host: '127.0.0.1', port: webPort(server) });
    sockets.push(socket);
    socket.on('error', () => {});
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const t0 = performance.now();
    // A slow client: the request line and one header, then nothing.
    socket.write('POST /v1/leases HTTP/1.1\r\nhost: localhost\r\n');
    const cut = await Promise.race([closed(socket).then(() => performance.now() - t0), new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
    expect(cut, 'the slow request was still open after 5 s').not.toBeNull();
    expect(cut!).toBeGreaterThanOrEqual(900);
    expect(cut!).toBeLessThan(2000);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  }, 10_000);
});
