import { afterEach, describe, expect, it } from 'vitest';
import { verifyLeaseToken } from '../../src/adapters/crypto/lease-tokens.js';
import { HTTP_STATUS } from '../../src/adapters/http/http-status.js';
import { WIRE_CODES } from '../../src/domain/errors.js';
import { makeCerts, type TestCerts } from '../support/certs.js';
import { call } from '../support/http.js';
import { errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

function urls(s: TestServer): { http: string; https: string } {
  const status = s.floatd.listenerStatus();
  const http = status.find((l) => l.scheme === 'http');
  const https = status.find((l) => l.scheme === 'https');
  return { http: http ? `http://127.0.0.1:${http.port}` : '', https: https ? `https://127.0.0.1:${https.port}` : '' };
}

async function web(seats = 5, extra: Record<string, unknown> = {}, certs?: TestCerts) {
  const tls = certs ? { 'https.listen': ['127.0.0.1:0'], 'tls.certFile': certs.serverCert, 'tls.keyFile': certs.serverKey } : {};
  server = await startServer({ seats, flags: { 'http.listen': ['127.0.0.1:0'], ...tls, ...extra } });
  return { s: server, ...urls(server) };
}

const alice = { user: 'alice', host: 'ws-1', instance: 'cad-1' };

describe('the web endpoint: lease API over HTTP', () => {
  it('acquires (201, then 200 when the same instance asks again), renews and releases, with tokens and log entries as over TCP', async () => {
    const { s, http } = await web();
    const first = await call(`${http}/v1/leases`, 'POST', { client: alice, product: 'cad' });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ ok: true, renewed: false, lease: { product: 'cad', leaseMs: 1_800_000, renewAfterMs: expect.any(Number) } });
    expect((first.body['lease'] as { renewAfterMs: number }).renewAfterMs).toBeGreaterThan(899_000);
    const lease = first.body['lease'] as { id: string; token: string };
    const leaseSecret = first.body['leaseSecret'] as string;
    expect(leaseSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const hello = await call(`${http}/v1/server`, 'GET');
    expect(hello.body).toMatchObject({ ok: true, server: 'floatd', protocol: 1 });
    const claims = await verifyLeaseToken(lease.token, hello.body['publicKey'] as never);
    expect(claims).toMatchObject({ leaseId: lease.id, user: 'alice', instance: 'cad-1', product: 'cad' });
    const again = await call(`${http}/v1/leases`, 'POST', { client: alice, product: 'cad', leaseSecret });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ renewed: true, lease: { id: lease.id } });
    const renewed = await call(`${http}/v1/leases/${lease.id}/renew`, 'POST', { client: alice, leaseSecret });
    expect(renewed).toMatchObject({ status: 200, body: { ok: true, lease: { id: lease.id } } });
    expect((await call(`${http}/v1/status`, 'GET')).body).toMatchObject({ ok: true, products: [{ product: 'cad', seatsInUse: 1 }] });
    expect((await call(`${http}/v1/leases/${lease.id}/release`, 'POST', { client: alice, leaseSecret })).body).toEqual({ ok: true, released: true });
    expect((await call(`${http}/v1/leases/${lease.id}/release`, 'POST', { client: alice })).body).toEqual({ ok: true, released: false });
    const log = (await s.floatd.store.queryEvents({ user: 'alice' })).map((e) => [e.event, e.listener]);
    expect(log).toEqual([['granted', 'http'], ['renewed', 'http'], ['renewed', 'http'], ['released', 'http']]);
  });

  it('answers with the same codes as TCP and the statuses of the spec, naming bad fields', async () => {
    const { s, http } = await web(1);
    const held = await call(`${http}/v1/leases`, 'POST', { client: alice, product: 'cad' });
    const full = await call(`${http}/v1/leases`, 'POST', { client: { user: 'bob', instance: 'b-1' }, product: 'cad' });
    expect(full.status).toBe(409);
    expect(full.body).toMatchObject({ ok: false, error: { code: 'NO_FREE_SEATS', retryAfterMs: expect.any(Number) } });
    expect(Number(full.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const tcp = await s.connect('carol');
    expect(errorOf(await tcp.request('acquire', { product: 'cad' })).code).toBe('NO_FREE_SEATS');
    const id = (held.body['lease'] as { id: string }).id;
    const cases: Array<[string, unknown, number, string]> = [
      [`/v1/leases`, { client: alice, product: 'paint' }, 404, 'UNKNOWN_PRODUCT'],
      [`/v1/leases/nope/renew`, { client: alice }, 404, 'LEASE_NOT_FOUND'],
      [`/v1/leases/${id}/renew`, { client: { user: 'bob', instance: 'b-1' } }, 403, 'LEASE_NOT_YOURS'],
      [`/v1/leases`, { client: { user: 'alice' } }, 400, 'BAD_REQUEST'],
      [`/v1/leases`, { client: { user: 7, instance: 'x' } }, 400, 'BAD_REQUEST'],
      [`/v1/leases`, 'not json', 400, 'BAD_REQUEST'],
      [`/v1/teleport`, {}, 404, 'UNKNOWN_OP'],
    ];
    for (const [path, body, status, code] of cases) {
      const r = await call(`${http}${path}`, 'POST', body);
      expect([path, r.status, (r.body['error'] as { code: string }).code]).toEqual([path, status, code]);
    }
    const missing = await call(`${http}/v1/leases`, 'POST', { client: { user: 'alice' } });
    expect(missing.body['error']).toMatchObject({ message: 'field "client.instance" is required', field: 'client.instance' });
    const typed = await call(`${http}/v1/leases`, 'POST', { client: { user: 7, instance: 'x' } });
    // The same message as the NDJSON door gives for the same mistake: one schema serves both.
    expect(typed.body['error']).toMatchObject({ message: 'field "client.user" must be a string of 1 to 256 characters, not a number', field: 'client.user' });
    const big = await call(`${http}/v1/leases`, 'POST', { client: alice, pad: 'x'.repeat(20_000) });
    expect(big).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST', message: 'the body is larger than 16384 bytes' } } });
  });

  it('moves a lease between HTTP and TCP: taken over HTTP, renewed over TCP, released over HTTP', async () => {
    const { s, http } = await web();
    const taken = await call(`${http}/v1/leases`, 'POST', { client: alice, product: 'cad' });
    const id = (taken.body['lease'] as { id: string }).id;
    const leaseSecret = taken.body['leaseSecret'];
    const tcp = await s.connect('alice', 'cad-1');
    expect(leaseOf(await tcp.request('renew', { lease: id, leaseSecret })).id).toBe(id);
    // Proven on this connection: it acts on the lease without the secret from now on.
    expect(leaseOf(await tcp.request('acquire', { product: 'cad' })).id).toBe(id);
    expect((await call(`${http}/v1/leases/${id}/release`, 'POST', { client: alice, leaseSecret })).body).toEqual({ ok: true, released: true });
    expect(errorOf(await tcp.request('renew', { lease: id })).code).toBe('LEASE_NOT_FOUND');
  });

  it('grants exactly 20 seats to 100 concurrent HTTPS acquires', async () => {
    const certs = makeCerts();
    const { s, https } = await web(20, {}, certs);
    const replies = await Promise.all(
      Array.from({ length: 100 }, (_, i) => call(`${https}/v1/leases`, 'POST', { client: { user: `u${i}`, instance: `i${i}` }, product: 'cad' }, { ca: certs.ca })),
    );
    expect(replies.filter((r) => r.status === 201)).toHaveLength(20);
    expect(replies.filter((r) => r.status === 409)).toHaveLength(80);
    expect(await s.floatd.store.allLeases()).toHaveLength(20);
  });

  it('serves health, readiness and an OpenAPI 3.1 document listing every route', async () => {
    const { s, http } = await web();
    expect(await call(`${http}/healthz`, 'GET')).toMatchObject({ status: 200, body: { ok: true } });
    expect(await call(`${http}/readyz`, 'GET')).toMatchObject({ status: 200, body: { ok: true, reason: 'serving' } });
    const doc = (await call(`${http}/openapi.json`, 'GET')).body as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toBe('3.1.0');
    const routes = s.floatd.webRoutes().map((r) => `${r.method} ${r.url.replace(/:(\w+)/g, '{$1}')}`).sort();
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
    expect(routes.length).toBeGreaterThanOrEqual(8);
    expect(documented).toEqual(routes);
  });

  it('maps every wire code to an HTTP status, docs/http-api.md lists each mapping and no other code', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'http-api.md'), 'utf8');
    for (const code of WIRE_CODES) {
      expect(HTTP_STATUS[code], code).toBeGreaterThanOrEqual(400);
      expect(doc, code).toMatch(new RegExp(`^\\| \`${code}\` \\| ${HTTP_STATUS[code]} \\|`, 'm'));
    }
    const listed = [...doc.matchAll(/^\| `([A-Z_]+)` \| \d+ \|/gm)].map((m) => m[1]!);
    expect(listed.filter((code) => !(WIRE_CODES as readonly string[]).includes(code))).toEqual([]);
  });
});
