import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { call } from '../support/http.js';
import { errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

function secretOf(reply: { ok: boolean }): string {
  const secret = (reply as { leaseSecret?: unknown }).leaseSecret;
  if (typeof secret !== 'string') throw new Error(`expected a leaseSecret, got ${JSON.stringify(reply)}`);
  return secret;
}

describe('a lease is bound to the secret its grant handed out', () => {
  it('refuses renew, release and re-acquire from another connection without the secret, and leaves the lease alone', async () => {
    server = await startServer({ seats: 2 });
    const holder = await server.connect('alice', 'alice-1');
    const granted = await holder.request('acquire', { product: 'cad' });
    const lease = leaseOf(granted);
    const secret = secretOf(granted);
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // Someone who read the token's claims says hello as the holder.
    const thief = await server.connect('alice', 'alice-1');
    for (const [op, fields] of [
      ['renew', { lease: lease.id }],
      ['release', { lease: lease.id }],
      ['acquire', { product: 'cad' }],
      ['renew', { lease: lease.id, leaseSecret: 'A'.repeat(43) }],
      ['release', { lease: lease.id, leaseSecret: 'A'.repeat(43) }],
      ['acquire', { product: 'cad', leaseSecret: 'A'.repeat(43) }],
    ] as const) {
      expect(errorOf(await thief.request(op, fields)).code, `${op} ${JSON.stringify(fields)}`).toBe('LEASE_SECRET_MISMATCH');
    }
    const held = await server.floatd.store.allLeases();
    expect(held).toHaveLength(1);
    expect(held[0]!.id).toBe(lease.id);
    // The attempt is in the lease log; the secret is nowhere in it.
    expect((await server.floatd.store.queryEvents({ events: ['denied'] })).map((e) => e.code)).toContain('LEASE_SECRET_MISMATCH');
    expect(JSON.stringify(await server.floatd.store.queryEvents({}))).not.toContain(secret);

    // The connection that was granted the lease needs no secret.
    leaseOf(await holder.request('renew', { lease: lease.id }));
    // Another connection with the secret is the holder (a reconnect): renew, re-acquire, release.
    const reconnected = await server.connect('alice', 'alice-1');
    leaseOf(await reconnected.request('renew', { lease: lease.id, leaseSecret: secret }));
    const again = await reconnected.request('acquire', { product: 'cad', leaseSecret: secret });
    expect(leaseOf(again).id).toBe(lease.id);
    expect((again as { renewed?: boolean }).renewed).toBe(true);
    expect((again as { leaseSecret?: string }).leaseSecret).toBeUndefined();
    const third = await server.connect('alice', 'alice-1');
    expect(await third.request('release', { lease: lease.id, leaseSecret: secret })).toMatchObject({ ok: true, released: true });
  });

  it('keeps only the secret\'s hash in the database, never the secret, and signs no secret into the token', async () => {
    server = await startServer();
    const t = await server.connect('bob');
    const reply = await t.request('acquire', { product: 'cad' });
    const secret = secretOf(reply);
    const db = new Database(server.config.dbFile, { readonly: true });
    try {
      const row = db.prepare('SELECT * FROM leases').get() as Record<string, unknown>;
      expect(typeof row['secret_hash']).toBe('string');
      expect(Object.values(row)).not.toContain(secret);
    } finally {
      db.close();
    }
    const payload = Buffer.from(leaseOf(reply).token.split('.')[1]!, 'base64url').toString();
    expect(payload).not.toContain(secret);
  });

  it('over HTTP, renew and release need the secret (403 LEASE_SECRET_MISMATCH without it)', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const port = server.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port;
    const http = `http://127.0.0.1:${port}`;
    const alice = { user: 'alice', instance: 'a-1' };
    const first = await call(`${http}/v1/leases`, 'POST', { client: alice, product: 'cad' });
    expect(first.status).toBe(201);
    const secret = secretOf(first.body as { ok: boolean });
    const id = (first.body as { lease: { id: string } }).lease.id;
    const noSecret = await call(`${http}/v1/leases/${id}/renew`, 'POST', { client: alice });
    expect(noSecret.status).toBe(403);
    expect(noSecret.body).toMatchObject({ ok: false, error: { code: 'LEASE_SECRET_MISMATCH' } });
    expect((await call(`${http}/v1/leases/${id}/release`, 'POST', { client: alice, leaseSecret: 'wrong' })).status).toBe(403);
    expect((await call(`${http}/v1/leases`, 'POST', { client: alice, product: 'cad' })).status).toBe(403);
    expect((await call(`${http}/v1/leases/${id}/renew`, 'POST', { client: alice, leaseSecret: secret })).status).toBe(200);
    expect((await call(`${http}/v1/leases`, 'POST', { client: alice, product: 'cad', leaseSecret: secret })).status).toBe(200);
    expect((await call(`${http}/v1/leases/${id}/release`, 'POST', { client: alice, leaseSecret: secret })).body).toEqual({ ok: true, released: true });
  });

  it('leaves a lease granted before leases had secrets renewable by identity', async () => {
    server = await startServer();
    const t = await server.connect('carol');
    const lease = leaseOf(await t.request('acquire', { product: 'cad' }));
    await server.stop();
    const { dataDir, dbFile } = server.config;
    const vendor = server.vendor;
    server = undefined;
    const db = new Database(dbFile);
    db.prepare('UPDATE leases SET secret_hash = NULL').run();
    db.close();
    server = await startServer({ dataDir, vendor });
    const other = await server.connect('carol');
    expect(leaseOf(await other.request('renew', { lease: lease.id })).id).toBe(lease.id);
  });
});
