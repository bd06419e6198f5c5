import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cli, requireBuild } from '../support/cli.js';
import { adminCertificateFlags, makeCerts } from '../support/certs.js';
import { tempDir } from '../support/helpers.js';
import { call } from '../support/http.js';
import { leaseOf, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

function web(s: TestServer, scheme: 'http' | 'https' = 'http'): string {
  return `${scheme}://127.0.0.1:${s.floatd.listenerStatus().find((l) => l.scheme === scheme)!.port}`;
}

/** What only an administrator may learn: the licensee, key ids, listeners, the server key, activation. */
function expectReduced(body: Record<string, unknown>, keyId: string): void {
  expect(body).toMatchObject({ ok: true, view: 'public', mode: 'licensed', products: [{ product: 'cad', seatsTotal: 5, seatsInUse: 1, seatsFree: 4 }], leasesHeld: 1, ready: true, reason: 'serving' });
  for (const field of ['keys', 'listeners', 'serverKeyFingerprint', 'rejectedKeys', 'evaluation', 'rules', 'downToleranceMs']) expect(body).not.toHaveProperty(field);
  const text = JSON.stringify(body);
  expect(text).not.toContain('Acme');
  expect(text).not.toContain(keyId);
}

describe('status: seats and health for anyone, the rest for administrators', () => {
  it('gives the reduced view over NDJSON and unauthenticated HTTP, everything to an admin token or admin certificate', async () => {
    const certs = makeCerts();
    server = await startServer({
      flags: adminCertificateFlags(certs),
    });
    const keyId = (await server.floatd.status()).keys[0]!.id;
    const t = await server.connect('mallory');
    leaseOf(await t.request('acquire', { product: 'cad' }));

    expectReduced((await t.request('status')) as unknown as Record<string, unknown>, keyId);
    expectReduced((await call(`${web(server)}/v1/status`, 'GET')).body, keyId);
    // A client certificate that is not an admin's is just a client.
    const other = await call(`${web(server, 'https')}/v1/status`, 'GET', undefined, { ca: certs.ca });
    expectReduced(other.body, keyId);

    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const full = await call(`${web(server)}/v1/status`, 'GET', undefined, { headers: { authorization: `Bearer ${token}` } });
    expect(full.body).toMatchObject({ ok: true, view: 'full', keys: [{ id: keyId, licensee: 'Acme' }], listeners: expect.arrayContaining([expect.objectContaining({ name: 'tcp' })]) });
    const mine = { ca: certs.ca, cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) };
    expect((await call(`${web(server, 'https')}/v1/status`, 'GET', undefined, mine)).body).toMatchObject({ view: 'full', keys: [{ licensee: 'Acme' }] });
    const wrong = await call(`${web(server)}/v1/status`, 'GET', undefined, { headers: { authorization: 'Bearer fdt_wrong' } });
    expect(wrong).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED' } } });
    t.close();
  });

  it('floatd status --server shows the reduced view and says so; with --token-file over the web endpoint, everything', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const keyId = (await server.floatd.status()).keys[0]!.id;
    const t = await server.connect('alice');
    leaseOf(await t.request('acquire', { product: 'cad' }));

    for (const target of [server.address, web(server)]) {
      const reduced = await cli(['status', '--server', target]);
      expect(reduced.code, reduced.err).toBe(0);
      expect(reduced.out).toMatch(/^cad\s+5\s+5\s+1\s+4$/m);
      expect(reduced.out).toContain('reduced view: key ids, licensee, listeners and activation need an admin credential');
      expect(reduced.out).not.toContain('Acme');
      expect(reduced.out).not.toContain(keyId);
    }

    const tokenFile = join(tempDir(), 'token');
    writeFileSync(tokenFile, readFileSync(server.config.adminTokenFile, 'utf8'), { mode: 0o600 });
    const full = await cli(['status', '--server', web(server), '--token-file', tokenFile]);
    expect(full.code, full.err).toBe(0);
    expect(full.out).toContain('Acme');
    expect(full.out).toContain(keyId);
    expect(full.out).toMatch(/listeners: tcp tcp:\/\/127\.0\.0\.1:\d+/);
    expect(full.out).not.toContain('reduced view');
    const json = JSON.parse((await cli(['status', '--json', '--server', web(server), '--token-file', tokenFile])).out) as { keys: Array<{ licensee: string }> };
    expect(json.keys[0]!.licensee).toBe('Acme');

    const misplaced = await cli(['status', '--server', server.address, '--token-file', tokenFile]);
    expect(misplaced).toMatchObject({ code: 2, err: expect.stringContaining('--server http(s)://HOST:PORT') });
    // On the server's own machine, from the data directory: everything.
    const local = await cli(['status', '--data-dir', server.config.dataDir]);
    expect(local.out).toContain('Acme');
    t.close();
  });
});
