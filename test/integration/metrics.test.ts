import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../support/fake-clock.js';
import { call } from '../support/http.js';
import { errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

/** Parses the Prometheus text exposition format: one sample per `name{labels} value` line; checks every line's form. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(line);
    if (m === null) throw new Error(`not a Prometheus sample line: ${line}`);
    samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return samples;
}

function scrape(base: string): Promise<{ contentType: string; text: string }> {
  return new Promise((resolve, reject) => {
    request(`${base}/metrics`, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ contentType: String(res.headers['content-type']), text }));
    })
      .on('error', reject)
      .end();
  });
}

describe('GET /metrics', () => {
  it('counts exactly the committed grants, renewals, releases, expiries and denials, and shows pools, connections and timings', async () => {
    const clock = new FakeClock(Date.now());
    server = await startServer({ seats: 2, clock, flags: { 'http.listen': ['127.0.0.1:0'], leaseSeconds: 60 } });
    const http = `http://127.0.0.1:${server.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port}`;
    const keyId = (await server.floatd.status()).keys[0]!.id;
    const a = await server.connect('a');
    const b = await server.connect('b');
    const c = await server.connect('c');
    const la = leaseOf(await a.request('acquire', { product: 'cad' }));
    leaseOf(await b.request('acquire', { product: 'cad' }));
    expect(errorOf(await c.request('acquire', { product: 'cad' })).code).toBe('NO_FREE_SEATS');
    expect(errorOf(await c.request('acquire', { product: 'paint' })).code).toBe('UNKNOWN_PRODUCT');
    leaseOf(await a.request('renew', { lease: la.id }));
    leaseOf(await a.request('acquire', { product: 'cad' }));
    await a.request('release', { lease: la.id });
    clock.advance(61_000);
    leaseOf(await c.request('acquire', { product: 'cad' }));
    const over = await call(`${http}/v1/leases`, 'POST', { client: { user: 'd', instance: 'd-1' }, product: 'cad' });
    expect(over.status).toBe(201);

    const { contentType, text } = await scrape(http);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const m = parsePrometheus(text);
    expect(m.get('floatd_build_info{version="0.1.0"}')).toBe(1);
    expect(m.get('floatd_lease_grants_total{product="cad"}')).toBe(4);
    expect(m.get('floatd_lease_renewals_total{product="cad"}')).toBe(2);
    expect(m.get('floatd_lease_releases_total{cause="released"}')).toBe(1);
    expect(m.get('floatd_lease_releases_total{cause="expired"}')).toBe(1);
    expect(m.get('floatd_lease_releases_total{cause="revoked"}')).toBeUndefined();
    expect(m.get('floatd_lease_denials_total{code="NO_FREE_SEATS",reason=""}')).toBe(1);
    expect(m.get('floatd_lease_denials_total{code="UNKNOWN_PRODUCT",reason=""}')).toBe(1);
    expect(m.get(`floatd_pool_seats{pool="${keyId}",product="cad"}`)).toBe(2);
    expect(m.get(`floatd_pool_seats_in_use{pool="${keyId}",product="cad"}`)).toBe(2);
    expect(m.get('floatd_tcp_connections')).toBe(3);
    expect(m.get('floatd_earliest_lease_expiry_seconds')).toBe(60);
    expect(m.get('floatd_request_duration_seconds_count{op="acquire",transport="tcp"}')).toBe(6);
    expect(m.get('floatd_request_duration_seconds_count{op="POST /v1/leases",transport="http"}')).toBe(1);
    expect(m.get('floatd_db_commit_batch_size_count')).toBeGreaterThanOrEqual(8);
    expect(m.get('floatd_sweep_lag_seconds')).toBe(0);
    expect([...m.keys()].some((k) => k.startsWith('floatd_process_cpu'))).toBe(true);
    // No user, host, instance or lease id in any label.
    expect(text).not.toMatch(/"(a|b|c|d)"|"[ad]-1"/);
    expect(text).not.toContain(la.id);
  });
});

describe('metrics.auth: admin', () => {
  it('asks for admin credentials before answering /metrics', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'], 'metrics.auth': 'admin' } });
    const http = `http://127.0.0.1:${server.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port}`;
    expect((await call(`${http}/metrics`, 'GET')).status).toBe(401);
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const allowed = await call(`${http}/metrics`, 'GET', undefined, { headers: { authorization: `Bearer ${token}` } }).catch((err: Error) => err);
    // The body is Prometheus text, not JSON: the helper says so, with the status.
    expect(String(allowed)).toMatch(/not JSON \(status 200\): # HELP/);
  });
});
