import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LeaseClient } from '../../src/client/index.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { cli, floatd, killChildren, requireBuild, serve } from '../support/cli.js';
import { adminCertificateFlags, makeCerts } from '../support/certs.js';
import { tempDir, until } from '../support/helpers.js';
import { call } from '../support/http.js';
import { capturingLogger, errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
let server: TestServer | undefined;
const clients: LeaseClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  killChildren();
  await server?.stop();
  server = undefined;
});

function web(s: TestServer, scheme: 'http' | 'https' = 'http'): string {
  return `${scheme}://127.0.0.1:${s.floatd.listenerStatus().find((l) => l.scheme === scheme)!.port}`;
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

/** A dashboard sign-in form post. */
function rawPost(url: string, body: string): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('the admin API', () => {
  it('refuses routes without or with a wrong token, changes nothing, logs the attempt, and rate-limits repeated failures', async () => {
    const { logger, lines } = capturingLogger();
    server = await startServer({ logger, flags: { 'http.listen': ['127.0.0.1:0'] } });
    const base = web(server);
    const holder = await server.connect('alice');
    const lease = leaseOf(await holder.request('acquire', { product: 'cad' }));
    const none = await call(`${base}/v1/admin/leases/${lease.id}/revoke`, 'POST', { reason: 'x' });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="floatd admin"');
    expect(none.body).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
    const wrong = await call(`${base}/v1/admin/leases/${lease.id}/revoke`, 'POST', { reason: 'x' }, bearer('fdt_wrong'));
    expect(wrong.status).toBe(401);
    expect((await server.floatd.store.allLeases()).map((l) => l.id)).toEqual([lease.id]);
    expect(await server.floatd.store.queryEvents({ events: ['revoked'] })).toEqual([]);
    expect(lines.filter((l) => l['level'] === 40 && String(l['msg']).startsWith('admin API request from 127.0.0.1 refused'))).toHaveLength(1);
    for (let i = 0; i < 8; i++) await call(`${base}/v1/admin/leases`, 'GET', undefined, bearer('fdt_wrong'));
    const limited = await call(`${base}/v1/admin/leases`, 'GET', undefined, bearer('fdt_wrong'));
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    // The right token is checked first: someone else's wrong guesses never lock it out.
    const local = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, bearer(local))).status).toBe(200);
  });

  it('keeps accepting the right token, the admin certificate and the dashboard sign-in however many wrong tokens come from the same address; the guesser gets 429', async () => {
    const certs = makeCerts();
    const { logger, lines } = capturingLogger();
    server = await startServer({
      logger,
      flags: adminCertificateFlags(certs),
    });
    const base = web(server);
    const local = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const statuses: number[] = [];
    for (let i = 0; i < 15; i++) statuses.push((await call(`${base}/v1/admin/leases`, 'GET', undefined, bearer(`fdt_guess-${i}`))).status);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses.slice(10)).toEqual(Array(5).fill(429));
    // The same wrong token over and over is throttled as well.
    for (let i = 0; i < 10; i++) await call(`${base}/v1/admin/leases`, 'GET', undefined, { ...bearer('fdt_same'), localAddress: '127.0.0.3' });
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, { ...bearer('fdt_same'), localAddress: '127.0.0.4' })).status).toBe(429);

    expect(await call(`${base}/v1/admin/leases`, 'GET', undefined, bearer(local))).toMatchObject({ status: 200, body: { ok: true } });
    const mine = { ca: certs.ca, cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) };
    expect((await call(`${web(server, 'https')}/v1/admin/leases`, 'GET', undefined, mine)).status).toBe(200);
    const signIn = await rawPost(`${base}/login`, `token=${encodeURIComponent(local)}`);
    expect(signIn.status).toBe(303);

    // Over all addresses together a global cap holds: a few wrong tokens from each of many addresses, then 429 and one warning.
    const spread: number[] = [];
    for (let i = 0; i < 25; i++) spread.push((await call(`${base}/v1/admin/leases`, 'GET', undefined, { ...bearer(`fdt_spread-${i}`), localAddress: `127.0.1.${i + 1}` })).status);
    expect(spread).toContain(429);
    expect(lines.filter((l) => String(l['msg']).startsWith('failed admin authentications passed the global cap'))).toHaveLength(1);
    // ...and still the right token and certificate get in.
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, { ...bearer(local), localAddress: '127.0.1.1' })).status).toBe(200);
    expect((await call(`${web(server, 'https')}/v1/admin/leases`, 'GET', undefined, mine)).status).toBe(200);
  });

  it('authenticates before reading the body: without credentials a bad body is 401, not 400', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const base = web(server);
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    expect((await call(`${base}/v1/admin/leases/x/revoke`, 'POST', { nonsense: true })).status).toBe(401);
    expect((await call(`${base}/v1/admin/leases/x/revoke`, 'POST', '{not json')).status).toBe(401);
    expect((await call(`${base}/v1/admin/listeners/suspend`, 'POST', { listener: 42 }, bearer('fdt_wrong'))).status).toBe(401);
    expect((await call(`${base}/v1/admin/log?limit=nope`, 'GET')).status).toBe(401);
    expect((await call(`${base}/v1/admin/leases/x/revoke`, 'POST', { nonsense: true }, bearer(token))).status).toBe(400);
    expect((await call(`${base}/v1/admin/leases/x/revoke`, 'POST', '{not json', bearer(token))).status).toBe(400);
  });

  it('refuses a request that changes something from another origin or an opaque one (Origin: null), even with a valid token', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const base = web(server);
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    for (const origin of ['null', 'https://evil.example']) {
      const suspend = await call(`${base}/v1/admin/listeners/suspend`, 'POST', {}, { headers: { authorization: `Bearer ${token}`, origin } });
      expect(suspend).toMatchObject({ status: 403, body: { error: { code: 'FORBIDDEN' } } });
      const acquire = await call(`${base}/v1/leases`, 'POST', { client: { user: 'eve', instance: 'e-1' }, product: 'cad' }, { headers: { origin } });
      expect(acquire.status).toBe(403);
    }
    expect(server.floatd.suspendedListeners()).toEqual([]);
    expect(await server.floatd.store.allLeases()).toEqual([]);
    // Reading is not changing; the server's own origin and no Origin at all are fine.
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, { headers: { authorization: `Bearer ${token}`, origin: 'null' } })).status).toBe(200);
    expect((await call(`${base}/v1/admin/listeners/resume`, 'POST', {}, { headers: { authorization: `Bearer ${token}`, origin: base } })).status).toBe(200);
    expect((await call(`${base}/v1/admin/listeners/resume`, 'POST', {}, bearer(token))).status).toBe(200);
  });

  it('makes the local token at first start (mode 0600); revoke reaches a TCP holder at once and an HTTP holder at its next renewal, logged with the actor', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    expect(statSync(server.config.adminTokenFile).mode & 0o777).toBe(0o600);
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const base = web(server);
    const tcp = new LeaseClient({ server: server.address, user: 'alice', instance: 'a-1', product: 'cad', retryIntervalMs: 0 });
    const http = new LeaseClient({ server: base, user: 'bob', instance: 'b-1', product: 'cad', retryIntervalMs: 0 });
    clients.push(tcp, http);
    const events: string[] = [];
    tcp.on('revoked', (e) => events.push(`tcp revoked: ${e.reason}`));
    http.on('revoked', (e) => events.push(`http revoked: ${e.reason}`));
    const a = await tcp.acquire();
    const b = await http.acquire();
    const listed = await call(`${base}/v1/admin/leases?product=cad`, 'GET', undefined, bearer(token));
    expect((listed.body['leases'] as Array<{ user: string }>).map((l) => l.user).sort()).toEqual(['alice', 'bob']);
    const r = await call(`${base}/v1/admin/leases/${a.id.slice(0, 8)}/revoke`, 'POST', { reason: 'maintenance' }, bearer(token));
    expect(r).toMatchObject({ status: 200, body: { ok: true, lease: { id: a.id, user: 'alice' } } });
    await until(() => events.length === 1, 'the TCP holder to hear of it');
    expect(events).toEqual(['tcp revoked: by token:local: maintenance']);
    await call(`${base}/v1/admin/leases/${b.id}/revoke`, 'POST', { reason: 'moving the server' }, bearer(token));
    const renewal = await call(`${base}/v1/leases/${b.id}/renew`, 'POST', { client: { user: 'bob', instance: 'b-1' } });
    expect(renewal).toMatchObject({ status: 404, body: { error: { code: 'LEASE_NOT_FOUND', reason: 'by token:local: moving the server' } } });
    expect((await server.floatd.store.queryEvents({ events: ['revoked'] })).map((e) => [e.user, e.actor])).toEqual([['alice', 'token:local'], ['bob', 'token:local']]);
    const log = await call(`${base}/v1/admin/log?event=revoked`, 'GET', undefined, bearer(token));
    expect((log.body['events'] as unknown[]).length).toBe(2);
  });

  it('suspends a listener: a new TCP connection is refused, an open one keeps renewing but acquires nothing new, /readyz answers 503; resume restores', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const base = web(server);
    const open = await server.connect('alice');
    const lease = leaseOf(await open.request('acquire', { product: 'cad' }));
    const suspended = await call(`${base}/v1/admin/listeners/suspend`, 'POST', { listener: 'tcp' }, bearer(token));
    expect(suspended.body).toEqual({ ok: true, suspended: ['tcp'] });
    const refused = await new Promise<Record<string, unknown>[]>((resolve) => {
      const got: Record<string, unknown>[] = [];
      void TcpTransport.connect(server!.address, { onEvent: (m) => got.push(m), onClose: () => resolve(got) }).catch(() => resolve(got));
    });
    expect(refused[0]).toMatchObject({ ok: false, error: { code: 'SUSPENDED' } });
    expect(leaseOf(await open.request('renew', { lease: lease.id })).id).toBe(lease.id);
    // No new lease on a suspended listener, whichever door: the open connection's acquisition is refused like an HTTP one.
    expect(errorOf(await open.request('acquire', { product: 'cad' }))).toMatchObject({ code: 'SUSPENDED' });
    expect(await call(`${base}/readyz`, 'GET')).toMatchObject({ status: 503, body: { ok: false, reason: 'suspended: tcp' } });
    expect((await server.floatd.status()).listeners.find((l) => l.name === 'tcp')).toMatchObject({ suspended: true });
    expect((await call(`${base}/v1/admin/listeners/suspend`, 'POST', { listener: 'nope' }, bearer(token))).status).toBe(400);
    expect((await call(`${base}/v1/admin/listeners/resume`, 'POST', {}, bearer(token))).body).toEqual({ ok: true, suspended: [] });
    expect((await call(`${base}/readyz`, 'GET')).status).toBe(200);
    const again = await server.connect('bob');
    expect(errorOf(await again.request('renew', { lease: 'none' })).code).toBe('LEASE_NOT_FOUND');
    expect((await server.floatd.store.queryEvents({ events: ['listener-suspended', 'listener-resumed'] })).map((e) => [e.event, e.actor])).toEqual([
      ['listener-suspended', 'token:local'],
      ['listener-resumed', 'token:local'],
    ]);
  });

  it('accepts a client certificate whose subject is listed in admin.certificateSubjects', async () => {
    const certs = makeCerts();
    server = await startServer({
      flags: {
        'https.listen': ['127.0.0.1:0'],
        'tls.certFile': certs.serverCert,
        'tls.keyFile': certs.serverKey,
        'tls.clientCertificates': 'request',
        'tls.clientCaFile': certs.caFile,
        'admin.certificateSubjects': ['CN=alice'],
      },
    });
    const base = web(server, 'https');
    const mine = { ca: certs.ca, cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) };
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, mine)).body).toEqual({ ok: true, leases: [] });
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, { ca: certs.ca })).status).toBe(401);
  });
});

describe('floatd admin', () => {
  it('tls reload on a server without TLS answers TLS_NOT_CONFIGURED (HTTP 409), exits non-zero and writes nothing to the lease log', async () => {
    const data = join(tempDir(), 'data');
    const s = await serve(['--data-dir', data]);
    const r = await cli(['admin', 'tls', 'reload', '--data-dir', data]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('TLS_NOT_CONFIGURED');
    expect(r.err).toContain('no TLS certificate');
    const port = Number(/"scheme":"http","address":"[^"]+","port":(\d+)/.exec(s.log())![1]);
    const token = readFileSync(join(data, 'admin-token'), 'utf8').trim();
    const api = await call(`http://127.0.0.1:${port}/v1/admin/tls/reload`, 'POST', undefined, bearer(token));
    expect(api.status).toBe(409);
    expect(api.body).toMatchObject({ ok: false, error: { code: 'TLS_NOT_CONFIGURED' } });
    const events = await cli(['log', '--data-dir', data, '--json', '--event', 'tls-reloaded']);
    expect(events).toMatchObject({ code: 0, out: '' });
  });

  it('lists leases, revokes one, manages tokens, and floatd rules reload goes through the API', async () => {
    const data = join(tempDir(), 'data');
    const s = await serve(['--data-dir', data]);
    const t = await TcpTransport.connect(`127.0.0.1:${s.port}`);
    await t.request('hello', { v: 1, client: { user: 'alice', host: 'ws-12', instance: 'cad-1' }, product: 'cad' });
    const lease = leaseOf(await t.request('acquire'));
    const listed = await cli(['admin', 'leases', '--data-dir', data]);
    expect(listed.code, listed.err).toBe(0);
    const rows = listed.out.split('\n');
    expect(rows[0]).toMatch(/^LEASE\s+USER@HOST\s+INSTANCE\s+PRODUCT\s+SINCE\s+EXPIRES IN\s+REMOTE\s+LISTENER$/);
    expect(rows[1]).toMatch(new RegExp(`^${lease.id.slice(0, 8)}\\s+alice@ws-12\\s+cad-1\\s+cad\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\s+30 min\\s+127\\.0\\.0\\.1\\s+tcp$`));
    const json = JSON.parse((await cli(['admin', 'leases', '--json', '--user', 'alice', '--data-dir', data])).out) as Array<{ id: string }>;
    expect(json.map((l) => l.id)).toEqual([lease.id]);

    const created = await cli(['admin', 'token', 'create', 'ops', '--data-dir', data]);
    expect(created.code, created.err).toBe(0);
    expect(created.out).toMatch(/^fdt_[\w-]{40,}$/);
    const tokenFile = join(tempDir(), 'ops-token');
    writeFileSync(tokenFile, created.out, { mode: 0o600 });
    expect((await cli(['admin', 'token', 'list', '--data-dir', data])).out).toMatch(/local[\s\S]*ops/);
    const revoked = await cli(['admin', 'revoke', lease.id.slice(0, 8), '--reason', 'license audit', '--data-dir', data, '--token-file', tokenFile]);
    expect(revoked).toMatchObject({ code: 0, out: `revoked lease ${lease.id} of alice@ws-12 (cad)` });
    expect((await cli(['admin', 'revoke', lease.id, '--data-dir', data])).code).toBe(2);
    expect((await cli(['admin', 'token', 'revoke', 'ops', '--data-dir', data])).code).toBe(0);
    const refused = await cli(['admin', 'leases', '--data-dir', data, '--token-file', tokenFile]);
    expect(refused).toMatchObject({ code: 1, err: expect.stringContaining('UNAUTHORIZED') });

    const reload = await cli(['rules', 'reload', '--data-dir', data]);
    expect(reload).toMatchObject({ code: 0, out: 'rules reloaded: no CLT rules' });
    const log = await cli(['admin', 'log', '--event', 'revoked', '--json', '--data-dir', data]);
    expect(JSON.parse(log.out.split('\n')[0]!)).toMatchObject({ event: 'revoked', actor: 'token:ops', reason: 'by token:ops: license audit' });
    t.close();
  });
});
