import { lookup } from 'node:dns/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { advanceUntil, FakeClock } from '../support/fake-clock.js';
import { LeaseClient, type LeaseClientOptions } from '../../src/client/index.js';
import { unusedPort } from '../support/ports.js';
import { startServer, type TestServer, type TestServerOptions } from '../support/server.js';

/**
 * Failing over between the servers of a list. One SQLite data directory cannot be
 * shared by two live servers, so "another node of the cluster" is a new floatd on
 * the same data directory (same leases, same signing key) at the list's other
 * address, where nothing listened before.
 */

const servers: TestServer[] = [];
const clients: LeaseClient[] = [];
const sinks: Server[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.stop();
  for (const f of sinks.splice(0)) f.close();
});

async function server(opts: TestServerOptions = {}): Promise<TestServer> {
  const s = await startServer({ ...opts, flags: { leaseSeconds: 60, ...opts.flags } });
  servers.push(s);
  return s;
}

/** The same cluster's next node: a floatd on `first`'s data directory (its leases, its key), listening where `flags` say. */
async function nextNode(first: TestServer, clock: FakeClock, flags: Record<string, unknown>): Promise<TestServer> {
  return server({ clock, dataDir: first.config.dataDir, vendor: first.vendor, flags });
}

async function stop(s: TestServer): Promise<void> {
  servers.splice(servers.indexOf(s), 1);
  await s.stop();
}

function client(opts: Partial<LeaseClientOptions> & Pick<LeaseClientOptions, 'server'>): LeaseClient {
  const c = new LeaseClient({ user: 'alice', instance: `i-${clients.length}`, ...opts });
  clients.push(c);
  return c;
}

function record(c: LeaseClient): { seen: string[]; connected: string[] } {
  const seen: string[] = [];
  const connected: string[] = [];
  for (const e of ['acquired', 'renewed', 'lost', 'regained', 'revoked', 'denied'] as const) c.on(e, () => seen.push(e));
  c.on('connected', ({ server }) => connected.push(server));
  return { seen, connected };
}

/** What the lease log says of the lease, in order (await: the store may answer with a promise). */
async function logOf(s: TestServer, leaseId: string): Promise<string[]> {
  const events = await s.floatd.store.queryEvents({});
  return events.filter((e) => e.leaseId === leaseId).map((e) => e.event);
}

/** A TCP port that takes connections and drops them at once, counting them. */
async function dropper(): Promise<{ address: string; visits: () => number }> {
  let visits = 0;
  const sink = createServer((socket: Socket) => {
    visits++;
    socket.destroy();
  });
  sinks.push(sink);
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  return { address: `127.0.0.1:${(sink.address() as { port: number }).port}`, visits: () => visits };
}

/**
 * A node whose database cannot be written: a proxy in front of `target` that answers every
 * renewal UNAVAILABLE, as a node does when it cannot write the shared database, and passes
 * everything else through.
 */
async function unavailableNode(target: string): Promise<{ address: string; refused: () => number }> {
  let refused = 0;
  const [host, port] = [target.split(':')[0]!, Number(target.split(':')[1])];
  const proxy = createServer((client: Socket) => {
    const upstream = connect({ host, port });
    upstream.pipe(client);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    let buffer = '';
    client.on('data', (d: Buffer) => {
      buffer += d.toString();
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl + 1);
        buffer = buffer.slice(nl + 1);
        const msg = JSON.parse(line) as { id: number; op: string };
        if (msg.op !== 'renew') {
          upstream.write(line);
          continue;
        }
        refused++;
        client.write(`${JSON.stringify({ id: msg.id, ok: false, error: { code: 'UNAVAILABLE', reason: 'disk-full', message: 'storage unavailable: the disk is full', retryAfterMs: 5000 } })}\n`);
      }
    });
  });
  sinks.push(proxy);
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return { address: `127.0.0.1:${(proxy.address() as { port: number }).port}`, refused: () => refused };
}

/** A fake clock that keeps the delay of every timer set on it: the lease client's waits. */
class RecordingClock extends FakeClock {
  readonly delays: number[] = [];
  override setTimer(delayMs: number, fn: () => void) {
    this.delays.push(delayMs);
    return super.setTimer(delayMs, fn);
  }
}

const start = Date.parse('2026-11-21T08:00:00Z');
/** What localhost resolves to here: both loopback addresses on most machines, 127.0.0.1 alone on some. */
const localhost = (await lookup('localhost', { all: true })).map((a) => a.address);

describe('LeaseClient with several servers', () => {
  it('renews the same lease on the next server when the one it used goes away, with the pinned key', async () => {
    const clock = new FakeClock(start);
    const a = await server({ clock });
    const b = `127.0.0.1:${await unusedPort()}`;
    const fingerprint = (await a.floatd.status()).serverKeyFingerprint!;
    const c = client({ server: `${a.address},${b}`, clock, serverKeyFingerprint: fingerprint, random: () => 0.5 });
    const { seen, connected } = record(c);
    const dropped: string[] = [];
    c.on('disconnected', ({ server }) => dropped.push(server));
    const lease = await c.acquire();
    expect(connected).toEqual([a.address]);

    await stop(a);
    const node = await nextNode(a, clock, { listeners: [b] });
    // The dropped connection is noticed at once; the next server is tried after a back-off below 100 ms.
    await advanceUntil(clock, () => dropped.length > 0, 0);
    expect(dropped).toEqual([a.address]);
    await advanceUntil(clock, () => seen.includes('renewed'), 100, 10, 200);
    expect(seen).toEqual(['acquired', 'renewed']);
    expect(connected).toEqual([a.address, b]);
    expect(c.lease?.id).toBe(lease.id);
    expect((await node.floatd.store.allLeases()).map((l) => l.id)).toEqual([lease.id]);
    expect(await logOf(node, lease.id)).toEqual(['granted', 'renewed']);

    // And on from there at half-lease, as before.
    await advanceUntil(clock, () => seen.length >= 3, 31_000, 1000);
    expect(seen).toEqual(['acquired', 'renewed', 'renewed']);
    expect(await logOf(node, lease.id)).toEqual(['granted', 'renewed', 'renewed']);
  });

  it('keeps the lease while every server is down for less than the time left, and renews it on the first one back', async () => {
    const clock = new FakeClock(start);
    const a = await server({ clock });
    const b = `127.0.0.1:${await unusedPort()}`;
    // The highest draw: every wait is as long as the back-off allows.
    const c = client({ server: [a.address, b], clock, random: () => 0.999_999 });
    const { seen, connected } = record(c);
    const lease = await c.acquire();
    await stop(a);
    // Both down for 45 s of a 60 s lease: the renewal due at 30 s fails on both, and the client backs off.
    await advanceUntil(clock, () => false, 45_000, 500);
    expect(seen).toEqual(['acquired']);
    expect(c.lease?.id).toBe(lease.id);

    const node = await nextNode(a, clock, { listeners: [b] });
    // The back-off is capped at 5 s: the next round comes within that.
    await advanceUntil(clock, () => seen.includes('renewed'), 5_000, 250, 200);
    expect(seen).toEqual(['acquired', 'renewed']);
    expect(connected).toEqual([a.address, b]);
    expect(c.lease?.id).toBe(lease.id);
    expect(await logOf(node, lease.id)).toEqual(['granted', 'renewed']);
  });

  it('waits a full-jitter back-off between rounds, drawn from the random source below a bound that doubles up to the cap', async () => {
    // The client alone on the recording clock: its timers are its waits.
    const clock = new RecordingClock(start);
    const a = await server();
    const sink = await dropper();
    const c = client({ server: [a.address, sink.address], clock, random: () => 0.5, backoff: { initialMs: 1000, maxMs: 8000 } });
    const { seen } = record(c);
    await c.acquire();
    // The renewal at half-lease (the server, on real time, says a few ms short of 30 s).
    expect(clock.delays).toEqual([expect.closeTo(30_000, -2)]);
    await stop(a);
    // Each round tries the sink (taken, then dropped) and the stopped server (refused): one visit per round.
    await advanceUntil(clock, () => sink.visits() >= 6, 40_000, 250, 200);
    expect(sink.visits()).toBeGreaterThanOrEqual(6);
    // Half of each bound (the draw is 0.5): 1 s, 2 s, 4 s, 8 s, then the cap of 8 s.
    expect(clock.delays.slice(1, 7)).toEqual([500, 1000, 2000, 4000, 4000, 4000]);
    expect(seen).toEqual(['acquired']);
  });

  it('renews on the next server when the one in use answers UNAVAILABLE, and keeps a lone server that does', async () => {
    const clock = new FakeClock(start);
    const a = await server({ clock });
    const sick = await unavailableNode(a.address);
    const c = client({ server: [sick.address, a.address], clock, random: () => 0.5 });
    const { seen, connected } = record(c);
    const lease = await c.acquire();
    expect(connected).toEqual([sick.address]);
    await advanceUntil(clock, () => seen.includes('renewed'), 31_000, 1000, 200);
    expect(sick.refused()).toBe(1);
    expect(connected).toEqual([sick.address, a.address]);
    expect(c.lease?.id).toBe(lease.id);
    expect(await logOf(a, lease.id)).toEqual(['granted', 'renewed']);

    // Alone, the server is kept, and asked again after the back-off: the lease runs on meanwhile.
    const alone = client({ server: sick.address, clock, random: () => 0.5 });
    const solo = record(alone);
    await alone.acquire();
    await advanceUntil(clock, () => sick.refused() >= 4, 35_000, 250, 200);
    expect(solo.connected).toEqual([sick.address]);
    expect(solo.seen).toEqual(['acquired']);
  });

  it('leaves a server that answers SUSPENDED for a lease, and passes over one that turns connections away suspended', async () => {
    const a = await server();
    const b = await server();
    const c = client({ server: [a.address, b.address], retryIntervalMs: 0 });
    const { connected } = record(c);
    await c.acquire();
    await c.release();
    // The connection to a stays open; a now grants nothing new on it.
    a.floatd.context.doors.suspend(null, true);
    const lease = await c.acquire();
    expect(connected).toEqual([a.address, b.address]);
    expect((await b.floatd.store.allLeases()).map((l) => l.id)).toEqual([lease.id]);
    expect(await a.floatd.store.allLeases()).toEqual([]);

    const late = client({ server: [a.address, b.address], retryIntervalMs: 0 });
    const other = record(late);
    await late.acquire();
    expect(other.connected).toEqual([b.address]);
    expect(await b.floatd.store.allLeases()).toHaveLength(2);
  });

  it('counts each address of a name as a server, and tries them in the resolver\'s order', async () => {
    const a = await server();
    const port = Number(a.address.split(':')[1]);
    // 127.0.0.2 is loopback too, but nothing listens there.
    const resolved: string[] = [];
    const c = client({
      server: `floatd.test:${port}`,
      retryIntervalMs: 0,
      resolveHost: async (host) => {
        resolved.push(host);
        return [
          { address: '127.0.0.2', family: 4 },
          { address: '127.0.0.1', family: 4 },
        ];
      },
    });
    const { connected } = record(c);
    const lease = await c.acquire();
    expect(resolved).toEqual(['floatd.test']);
    expect(connected).toEqual([`floatd.test:${port} (127.0.0.1)`]);
    expect((await a.floatd.store.allLeases()).map((l) => l.id)).toEqual([lease.id]);
  });

  // Runs only where localhost has both an IPv4 and an IPv6 address (not on every machine); the injected-resolver test above covers the same path everywhere.
  it.skipIf(!(localhost.includes('127.0.0.1') && localhost.includes('::1')))('reaches a server on one of the addresses localhost resolves to', async () => {
    const a = await server({ flags: { listeners: ['[::1]:0'] } });
    const port = Number(/:(\d+)$/.exec(a.address)![1]);
    const lease = await client({ server: `localhost:${port}`, retryIntervalMs: 0 }).acquire();
    expect((await a.floatd.store.allLeases()).map((l) => l.id)).toEqual([lease.id]);
  });

  it('fails over over HTTP too', async () => {
    const clock = new FakeClock(start);
    const a = await server({ clock, flags: { 'http.listen': ['127.0.0.1:0'] } });
    const web = (s: TestServer) => `http://127.0.0.1:${s.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port}`;
    const b = `127.0.0.1:${await unusedPort()}`;
    const c = client({ server: [web(a), `http://${b}`], clock, random: () => 0.5 });
    const { seen, connected } = record(c);
    const lease = await c.acquire();
    await stop(a);
    const node = await nextNode(a, clock, { 'http.listen': [b] });
    // Nothing drops over HTTP: the renewal at half-lease finds the first server gone and goes on to the next.
    await advanceUntil(clock, () => seen.includes('renewed'), 31_000, 1000);
    expect(seen).toEqual(['acquired', 'renewed']);
    expect(connected).toEqual([web(a), `http://${b}`]);
    expect(c.lease?.id).toBe(lease.id);
    expect(await logOf(node, lease.id)).toEqual(['granted', 'renewed']);
  });

  it('refuses a server of the list whose key is not the pinned one, and takes the lease from one whose key is', async () => {
    const [stranger, other, a] = [await server(), await server(), await server()];
    const c = client({ server: [stranger.address, a.address], serverKeyFingerprint: (await a.floatd.status()).serverKeyFingerprint!, retryIntervalMs: 0 });
    const { connected } = record(c);
    await c.acquire();
    expect(connected).toEqual([a.address]);
    expect(await stranger.floatd.store.allLeases()).toEqual([]);
    // Only strangers: refused for good, as with one server.
    const refused = client({ server: [stranger.address, other.address], serverKeyFingerprint: (await a.floatd.status()).serverKeyFingerprint!, retryIntervalMs: 0 });
    await expect(refused.acquire()).rejects.toMatchObject({ code: 'TOKEN_INVALID', message: expect.stringContaining('pinned') });
  });

  it('when no server of the list can be reached, says what went wrong with each', async () => {
    const [p1, p2] = [await unusedPort(), await unusedPort()];
    const failed = client({ server: `127.0.0.1:${p1},127.0.0.1:${p2}`, retryIntervalMs: 0 }).acquire();
    await expect(failed).rejects.toMatchObject({ code: 'SERVER_UNREACHABLE', message: expect.stringMatching(new RegExp(`^none of the 2 servers could be used: .*127\\.0\\.0\\.1:${p1}.*; .*127\\.0\\.0\\.1:${p2}`)) });
  });

  it('takes a list on one line or as an array, and says which entry is wrong', () => {
    expect(() => client({ server: '127.0.0.1:1,,127.0.0.1:2' })).toThrow(/server 2 of the list .* is empty/);
    expect(() => client({ server: ['127.0.0.1:1', 'ftp://x'] })).toThrow(/"ftp:\/\/" is not a floatd address/);
    expect(() => client({ server: ['tls://127.0.0.1:1', '127.0.0.1:2'], caFile: '/nonexistent' })).toThrow(/"127.0.0.1:2" is plain TCP/);
    expect(() => client({ server: '127.0.0.1:1', backoff: { initialMs: 0 } })).toThrow(/initialMs/);
  });
});
