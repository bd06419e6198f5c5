import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../support/helpers.js';
import { call } from '../support/http.js';
import { capturingLogger, startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

const held: Socket[] = [];
afterEach(() => {
  for (const s of held.splice(0)) s.destroy();
});

/** One peer's connection, kept open: hello as `user`, then acquire at once; resolves with the reply lines (or what it got before the server closed). */
function grab(address: string, user: string): Promise<Array<Record<string, unknown>>> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const s = connect({ host, port: Number(port) });
    held.push(s);
    let buf = '';
    const replies = () => buf.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      if (replies().length >= 2) resolve(replies());
    });
    s.on('error', () => {});
    s.on('close', () => resolve(replies()));
    s.write(`{"op":"hello","id":1,"client":{"user":"${user}","instance":"${user}-1"}}\n{"op":"acquire","id":2,"product":"cad"}\n`);
  });
}

function metric(text: string, line: string): number {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? NaN : Number(found.slice(line.length + 1));
}

describe('abuse limits (maxConnectionsPerAddress, acquireRateLimit)', () => {
  it('one peer opening 48 connections with 48 user names no longer takes every seat', async () => {
    const clock = new FakeClock(Date.now());
    const { logger, lines } = capturingLogger();
    server = await startServer({
      seats: 48,
      clock,
      logger,
      flags: { maxConnectionsPerAddress: 8, 'acquireRateLimit.perSecond': 2, 'acquireRateLimit.burst': 4, 'http.listen': ['127.0.0.1:0'] },
    });
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 48 }, (_, i) => grab(server!.address, `user${i}`)));
    expect(performance.now() - t0).toBeLessThan(5000);
    const codeOf = (r: Record<string, unknown> | undefined) => (r === undefined ? 'none' : r['ok'] === true ? 'ok' : (r['error'] as { code: string }).code);
    // Past 8 connections from the address: turned away with one line.
    const refused = results.filter((r) => codeOf(r[0]) === 'TOO_MANY_CONNECTIONS');
    expect(refused).toHaveLength(40);
    expect((refused[0]![0]!['error'] as { message: string }).message).toMatch(/127\.0\.0\.1 holds its maximum of 8 connections \(maxConnectionsPerAddress\)/);
    // Of the 8 admitted, the burst of 4 gets seats; the rest are told when to retry.
    const acquires = results.filter((r) => codeOf(r[0]) === 'ok').map((r) => r[1]);
    expect(acquires.map(codeOf).sort()).toEqual(['TOO_MANY_REQUESTS', 'TOO_MANY_REQUESTS', 'TOO_MANY_REQUESTS', 'TOO_MANY_REQUESTS', 'ok', 'ok', 'ok', 'ok']);
    const limited = acquires.find((r) => codeOf(r) === 'TOO_MANY_REQUESTS')!['error'] as Record<string, unknown>;
    expect(limited).toMatchObject({ reason: 'acquire-rate', retryAfterMs: 500 });
    expect(limited['message']).toMatch(/too many acquisitions from 127\.0\.0\.1: at most 2 a second, 4 at once \(acquireRateLimit\)/);
    expect(await server.floatd.store.allLeases()).toHaveLength(4);
    // A refusal by the rate limit writes nothing: the lease log holds the grants only.
    expect(await server.floatd.store.queryEvents({ events: ['denied'] })).toHaveLength(0);

    // The web endpoint shares the limit: the same address, the same bucket.
    const http = `http://127.0.0.1:${server.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port}`;
    const denied = await call(`${http}/v1/leases`, 'POST', { client: { user: 'web', instance: 'w-1' }, product: 'cad' });
    expect(denied.status).toBe(429);
    expect(denied.headers['retry-after']).toBe('1');
    expect(denied.body).toMatchObject({ ok: false, error: { code: 'TOO_MANY_REQUESTS', reason: 'acquire-rate' } });
    // Tokens come back with time: two a second.
    clock.advance(1000);
    expect((await call(`${http}/v1/leases`, 'POST', { client: { user: 'web', instance: 'w-1' }, product: 'cad' })).status).toBe(201);

    // Logged as warnings, once a minute per address and limit, with how many were held back.
    const warnings = lines.filter((l) => l['level'] === 40 && typeof l['limit'] === 'string');
    expect(warnings.map((w) => w['limit']).sort()).toEqual(['acquire-rate', 'connections']);
    expect(warnings.find((w) => w['limit'] === 'connections')!['msg']).toMatch(/connection from 127\.0\.0\.1 refused: it holds its maximum of 8 connections \(maxConnectionsPerAddress\)/);
    const text = (await server.floatd.metrics.text()).body;
    expect(metric(text, 'floatd_limit_hits_total{limit="max_connections_per_address"}')).toBe(40);
    expect(metric(text, 'floatd_limit_hits_total{limit="acquire_rate"}')).toBe(5);
    // The backpressure figures are there too, at rest.
    expect(metric(text, 'floatd_unsent_reply_bytes')).toBe(0);
    expect(metric(text, 'floatd_connections_paused')).toBe(0);
    expect(metric(text, 'floatd_connections_paused_total')).toBe(0);
    expect(metric(text, 'floatd_slow_readers_dropped_total')).toBe(0);
  });

  it('are off by default: the same peer then takes every seat', async () => {
    server = await startServer({ seats: 48 });
    const results = await Promise.all(Array.from({ length: 48 }, (_, i) => grab(server!.address, `user${i}`)));
    expect(results.filter((r) => r[1]?.['ok'] === true)).toHaveLength(48);
  });
});
