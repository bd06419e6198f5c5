import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { makeCerts } from '../support/certs.js';
import { call } from '../support/http.js';
import { FakeClock } from '../support/helpers.js';
import { capturingLogger, startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.stop();
  server = undefined;
});

const LOOPBACK_ONLY = ['127.0.0.1/32'];

/** A listener object as the config file takes it. */
function proxied(address: string, name: string, trustedProxies = LOOPBACK_ONLY) {
  return { address, name, proxyProtocol: true, trustedProxies };
}

function ipv6Bytes(address: string): number[] {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A PROXY header as HAProxy's send-proxy (v1) or send-proxy-v2 (v2) writes it. */
function header(version: 1 | 2, source: string, sourcePort = 40123): Buffer {
  const six = source.includes(':');
  const destination = six ? '2001:db8::1' : '192.0.2.1';
  if (version === 1) return Buffer.from(`PROXY TCP${six ? 6 : 4} ${source} ${destination} ${sourcePort} 8989\r\n`);
  const address = six ? ipv6Bytes : (a: string) => a.split('.').map(Number);
  const body = [...address(source), ...address(destination), sourcePort >> 8, sourcePort & 0xff, 8989 >> 8, 8989 & 0xff];
  return Buffer.from([...V2_SIGNATURE, 0x21, six ? 0x21 : 0x11, 0, body.length, ...body]);
}

const V2_LOCAL = Buffer.from([...V2_SIGNATURE, 0x20, 0x00, 0, 0]);

/** A raw connection that records every byte it receives and when it closed. */
class Peer {
  received = Buffer.alloc(0);
  readonly closed: Promise<void>;
  private waiters: Array<() => void> = [];

  constructor(readonly socket: Socket) {
    sockets.push(socket);
    socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
    this.closed = once(socket, 'close').then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async to(port: number): Promise<Peer> {
    const socket = netConnect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    return new Peer(socket);
  }

  /** Sends a PROXY header, then speaks TLS (with the test CA) over the same connection. */
  static async tlsTo(port: number, proxyHeader: Buffer, ca: Buffer): Promise<Peer> {
    const raw = netConnect({ host: '127.0.0.1', port });
    sockets.push(raw);
    await once(raw, 'connect');
    raw.write(proxyHeader);
    const socket = tlsConnect({ socket: raw, ca, servername: 'localhost' });
    await once(socket, 'secureConnect');
    return new Peer(socket);
  }

  write(...parts: Array<Buffer | string>): void {
    this.socket.write(Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p))));
  }

  /** The first `n` NDJSON replies. */
  async lines(n: number): Promise<Array<Record<string, unknown>>> {
    for (;;) {
      const text = this.received.toString('utf8');
      const lines = text.split('\n').slice(0, -1);
      if (lines.length >= n) return lines.slice(0, n).map((l) => JSON.parse(l) as Record<string, unknown>);
      if (this.socket.destroyed) throw new Error(`connection closed after ${lines.length} line(s): ${text}`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** The HTTP response to a request sent with `Connection: close`. */
  async response(): Promise<{ status: number; body: Record<string, unknown> }> {
    await this.closed;
    const text = this.received.toString('utf8');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
    return { status, body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Record<string, unknown> };
  }
}

function ndjson(...messages: Array<Record<string, unknown>>): string {
  return messages.map((m, i) => `${JSON.stringify({ id: i + 1, ...m })}\n`).join('');
}

const HELLO_AND_ACQUIRE = (user: string) => ndjson({ op: 'hello', v: 1, client: { user, instance: `${user}-1` } }, { op: 'acquire', product: 'cad' });

function httpAcquire(user: string): string {
  const body = JSON.stringify({ client: { user, instance: `${user}-1` }, product: 'cad' });
  return `POST /v1/leases HTTP/1.1\r\nHost: floatd\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

function port(s: TestServer, name: string): number {
  const l = s.floatd.listenerStatus().find((x) => x.name === name);
  if (!l) throw new Error(`no listener ${name}`);
  return l.port;
}

async function granted(s: TestServer, user: string) {
  const events = await s.floatd.store.queryEvents({ user, events: ['granted'] });
  expect(events).toHaveLength(1);
  return events[0]!;
}

/** Expects the server to close the connection without sending a byte. */
async function refused(peer: Peer): Promise<void> {
  await peer.closed;
  expect(peer.received.length).toBe(0);
}

function warnings(lines: Array<Record<string, unknown>>) {
  return lines.filter((l) => l['level'] === 40 && typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('PROXY protocol'));
}

describe('PROXY protocol on the NDJSON TCP listener', () => {
  it.each([
    ['v1', 1, '203.0.113.7'],
    ['v1', 1, '2001:db8:0:0:0:0:0:7'],
    ['v2', 2, '198.51.100.20'],
    ['v2', 2, '2001:db8:0:1::20'],
  ] as const)('takes the client address from a %s header (%s) for rules, host and the lease log', async (_v, version, address) => {
    server = await startServer({ flags: { listeners: [proxied('127.0.0.1:0', 'lb')], 'http.listen': ['127.0.0.1:0'] } });
    const peer = await Peer.to(port(server, 'lb'));
    // Header, hello and acquire in one segment, as a proxy forwards them.
    peer.write(header(version, address), HELLO_AND_ACQUIRE('alice'));
    const [hello, acquire] = await peer.lines(2);
    expect(hello).toMatchObject({ ok: true, server: 'floatd' });
    expect(acquire).toMatchObject({ ok: true, lease: { product: 'cad' } });
    const shown = address.replace('2001:db8:0:0:0:0:0:7', '2001:db8::7');
    // The host defaults to the remote address; both come from the header.
    expect(await granted(server, 'alice')).toMatchObject({ remote: shown, host: shown, listener: 'lb' });
    // And the admin API's lease list (floatd admin leases) shows it too.
    expect((await server.floatd.status()).leasesHeld).toBe(1);
    const http = server.floatd.listenerStatus().find((l) => l.scheme === 'http')!;
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const listed = await call(`http://127.0.0.1:${http.port}/v1/admin/leases`, 'GET', undefined, { headers: { authorization: `Bearer ${token}` } });
    expect(listed.body['leases']).toMatchObject([{ user: 'alice', remote: shown }]);
  });

  it('reads a header that arrives in pieces, then the requests after it', async () => {
    server = await startServer({ flags: { listeners: [proxied('127.0.0.1:0', 'lb')] } });
    const peer = await Peer.to(port(server, 'lb'));
    const bytes = Buffer.concat([header(2, '2001:db8::99'), Buffer.from(HELLO_AND_ACQUIRE('bob'))]);
    for (const cut of [[0, 5], [5, 13], [13, 30], [30, bytes.length]]) {
      peer.write(bytes.subarray(cut[0], cut[1]));
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await peer.lines(2))[1]).toMatchObject({ ok: true });
    expect(await granted(server, 'bob')).toMatchObject({ remote: '2001:db8::99' });
  });

  it('uses the connection address for a v2 LOCAL header (a load balancer health check)', async () => {
    server = await startServer({ flags: { listeners: [proxied('127.0.0.1:0', 'lb')] } });
    const peer = await Peer.to(port(server, 'lb'));
    peer.write(V2_LOCAL, HELLO_AND_ACQUIRE('carol'));
    expect((await peer.lines(2))[1]).toMatchObject({ ok: true });
    expect(await granted(server, 'carol')).toMatchObject({ remote: '127.0.0.1' });
  });

  it('closes a connection without a header unanswered, and warns about it', async () => {
    const { logger, lines } = capturingLogger();
    server = await startServer({ logger, flags: { listeners: [proxied('127.0.0.1:0', 'lb')] } });
    const peer = await Peer.to(port(server, 'lb'));
    peer.write(HELLO_AND_ACQUIRE('dave'));
    await refused(peer);
    expect(warnings(lines)).toMatchObject([{ listener: 'lb', source: '127.0.0.1', reason: 'no-header' }]);
    expect(await server.floatd.store.queryEvents({ user: 'dave' })).toEqual([]);
    // The start-up log says which listeners expect headers, and from whom.
    expect(lines.filter((l) => l['level'] === 30 && String(l['msg']).includes('PROXY protocol'))).toMatchObject([{ listener: 'lb', trustedProxies: ['127.0.0.1/32'] }]);
  });

  it('closes a connection whose header is malformed, or does not come within the handshake timeout', async () => {
    const { logger, lines } = capturingLogger();
    server = await startServer({ logger, flags: { listeners: [proxied('127.0.0.1:0', 'lb')], handshakeTimeoutSeconds: 1 } });
    const malformed = await Peer.to(port(server, 'lb'));
    malformed.write('PROXY TCP4 203.0.113.300 192.0.2.1 1 2\r\n', HELLO_AND_ACQUIRE('erin'));
    await refused(malformed);
    const slow = await Peer.to(port(server, 'lb'));
    slow.write('PROXY TCP4 203.0.113.7 ');
    const started = Date.now();
    await refused(slow);
    expect(Date.now() - started).toBeGreaterThan(800);
    // One warning per source address a minute: the second refusal is held back.
    expect(warnings(lines)).toMatchObject([{ reason: 'malformed-header', source: '127.0.0.1' }]);
  });

  it('refuses a header from an address outside trustedProxies, warning once a minute per source', async () => {
    const { logger, lines } = capturingLogger();
    const clock = new FakeClock();
    server = await startServer({ logger, clock, flags: { listeners: [proxied('127.0.0.1:0', 'lb', ['10.0.0.0/8', '::1/128'])] } });
    for (let i = 0; i < 3; i++) {
      const peer = await Peer.to(port(server, 'lb'));
      peer.write(header(1, '203.0.113.7'), HELLO_AND_ACQUIRE('frank'));
      await refused(peer);
    }
    expect(warnings(lines)).toMatchObject([{ source: '127.0.0.1', reason: 'untrusted-source', heldBack: 0 }]);
    clock.advance(60_000);
    const later = await Peer.to(port(server, 'lb'));
    later.write(header(1, '203.0.113.7'));
    await refused(later);
    expect(warnings(lines)).toHaveLength(2);
    expect(warnings(lines)[1]).toMatchObject({ reason: 'untrusted-source', heldBack: 2, msg: expect.stringContaining('127.0.0.1 is not in trustedProxies') });
    expect(await server.floatd.store.queryEvents({ user: 'frank' })).toEqual([]);
  });

  it('looks for no header on a listener without the setting: a PROXY line there is a bad request, as any other garbage', async () => {
    server = await startServer({ flags: { listeners: ['127.0.0.1:0', proxied('127.0.0.1:0', 'lb')] } });
    const line = header(1, '203.0.113.7');
    const plain = await Peer.to(port(server, 'tcp'));
    plain.write(line, HELLO_AND_ACQUIRE('gina'));
    const [bad, hello, acquire] = await plain.lines(3);
    expect(bad).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(hello).toMatchObject({ ok: true });
    expect(acquire).toMatchObject({ ok: true });
    expect(await granted(server, 'gina')).toMatchObject({ remote: '127.0.0.1', listener: 'tcp' });
    // The same bytes on the PROXY-protocol listener are a header.
    const viaProxy = await Peer.to(port(server, 'lb'));
    viaProxy.write(line, HELLO_AND_ACQUIRE('hank'));
    expect((await viaProxy.lines(2))[1]).toMatchObject({ ok: true });
    expect(await granted(server, 'hank')).toMatchObject({ remote: '203.0.113.7', listener: 'lb' });
  });
});

describe('PROXY protocol on the web endpoint and TLS listeners', () => {
  it.each([
    [1, '203.0.113.8'],
    [2, '2001:db8::8'],
  ] as const)('takes the client address from a v%s header on a plain-HTTP listener (%s)', async (version, address) => {
    server = await startServer({ flags: { 'http.listen': [proxied('127.0.0.1:0', 'web-lb')] } });
    const peer = await Peer.to(port(server, 'web-lb'));
    peer.write(header(version, address), httpAcquire('ivy'));
    expect(await peer.response()).toMatchObject({ status: 201, body: { ok: true, lease: { product: 'cad' } } });
    expect(await granted(server, 'ivy')).toMatchObject({ remote: address, host: address, listener: 'web-lb' });
  });

  it('refuses HTTP without a header, or from an untrusted address, with no HTTP answer', async () => {
    const { logger, lines } = capturingLogger();
    server = await startServer({
      logger,
      flags: { 'http.listen': [proxied('127.0.0.1:0', 'web-lb'), proxied('127.0.0.1:0', 'web-far', ['192.0.2.0/24'])] },
    });
    const bare = await Peer.to(port(server, 'web-lb'));
    bare.write(httpAcquire('jack'));
    await refused(bare);
    const untrusted = await Peer.to(port(server, 'web-far'));
    untrusted.write(header(1, '203.0.113.9'), httpAcquire('jack'));
    await refused(untrusted);
    // Both from 127.0.0.1 within a minute: one warning.
    expect(warnings(lines)).toMatchObject([{ listener: 'web-lb', reason: 'no-header' }]);
    expect(await server.floatd.store.queryEvents({ user: 'jack' })).toEqual([]);
  });

  it('reads the header before the TLS handshake on tls:// and HTTPS listeners', async () => {
    const certs = makeCerts();
    server = await startServer({
      flags: {
        listeners: [proxied('tls://127.0.0.1:0', 'tls-lb')],
        'https.listen': [proxied('127.0.0.1:0', 'https-lb')],
        'tls.certFile': certs.serverCert,
        'tls.keyFile': certs.serverKey,
      },
    });
    const ndjsonPeer = await Peer.tlsTo(port(server, 'tls-lb'), header(2, '198.51.100.30'), certs.ca);
    ndjsonPeer.write(HELLO_AND_ACQUIRE('kate'));
    expect((await ndjsonPeer.lines(2))[1]).toMatchObject({ ok: true });
    expect(await granted(server, 'kate')).toMatchObject({ remote: '198.51.100.30', listener: 'tls-lb' });

    const httpsPeer = await Peer.tlsTo(port(server, 'https-lb'), header(1, '2001:db8::31'), certs.ca);
    httpsPeer.write(httpAcquire('liam'));
    expect(await httpsPeer.response()).toMatchObject({ status: 201, body: { ok: true } });
    expect(await granted(server, 'liam')).toMatchObject({ remote: '2001:db8::31', listener: 'https-lb' });

    // TLS straight away, without a header: closed before any TLS byte is answered.
    const bare = netConnect({ host: '127.0.0.1', port: port(server, 'https-lb') });
    sockets.push(bare);
    await once(bare, 'connect');
    const hello = tlsConnect({ socket: bare, ca: certs.ca, servername: 'localhost' });
    const failure = await new Promise<string>((resolve) => {
      hello.once('secureConnect', () => resolve('handshake completed'));
      hello.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(failure).toMatch(/ECONNRESET|socket disconnected/);
  });

  it('stops promptly while connections are still sending their header', async () => {
    server = await startServer({
      flags: { listeners: [proxied('127.0.0.1:0', 'lb')], 'http.listen': [proxied('127.0.0.1:0', 'web-lb')], handshakeTimeoutSeconds: 30 },
    });
    const tcp = await Peer.to(port(server, 'lb'));
    const web = await Peer.to(port(server, 'web-lb'));
    tcp.write('PROXY TCP4 ');
    web.write('PROXY TCP4 ');
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await server.stop();
    server = undefined;
    expect(Date.now() - started).toBeLessThan(3000);
    await Promise.all([refused(tcp), refused(web)]);
  });
});
