import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cli, requireBuild } from '../support/cli.js';
import { FakeClock } from '../support/helpers.js';
import { call } from '../support/http.js';
import { errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

function web(s: TestServer): string {
  return `http://127.0.0.1:${s.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port}`;
}
const bearer = (s: TestServer) => ({ headers: { authorization: `Bearer ${readFileSync(s.config.adminTokenFile, 'utf8').trim()}` } });

describe('revoke with a block keeps the holder out for a while', () => {
  it('keeps the user out of the product (any instance) until the block ends, across a restart, and logs it', async () => {
    const clock = new FakeClock();
    server = await startServer({ clock, seats: 3, flags: { 'http.listen': ['127.0.0.1:0'] } });
    const holder = await server.connect('mallory', 'm-1');
    const lease = leaseOf(await holder.request('acquire', { product: 'cad' }));
    const revoked = await call(`${web(server)}/v1/admin/leases/${lease.id}/revoke`, 'POST', { reason: 'seat hog', blockSeconds: 1800 }, bearer(server));
    expect(revoked.status).toBe(200);
    const until = new Date(clock.now() + 1_800_000).toISOString();
    expect(revoked.body).toMatchObject({ ok: true, block: { scope: 'user', user: 'mallory', instance: null, product: 'cad', until } });

    // Within the second, on a new instance and a new connection: refused, saying until when.
    for (const instance of ['m-1', 'm-2']) {
      const again = errorOf(await (await server.connect('mallory', instance)).request('acquire', { product: 'cad' }));
      expect(again).toMatchObject({ code: 'RULE_DENIED', reason: 'revoked', blockedUntil: until });
      expect(again.message).toContain(until);
    }
    // Others are not affected.
    leaseOf(await (await server.connect('alice')).request('acquire', { product: 'cad' }));
    const log = await server.floatd.store.queryEvents({ user: 'mallory' });
    expect(log.map((e) => e.event)).toEqual(['granted', 'revoked', 'blocked', 'denied', 'denied']);
    expect(log[2]).toMatchObject({ product: 'cad', actor: 'token:local', reason: 'seat hog', message: expect.stringContaining(until) });

    // Durable: a restarted server still keeps mallory out.
    const { dataDir } = server.config;
    const vendor = server.vendor;
    await server.stop();
    server = await startServer({ clock, dataDir, vendor, flags: { 'http.listen': ['127.0.0.1:0'] } });
    expect(errorOf(await (await server.connect('mallory', 'm-3')).request('acquire', { product: 'cad' }))).toMatchObject({ code: 'RULE_DENIED', reason: 'revoked' });
    const listed = await call(`${web(server)}/v1/admin/blocks`, 'GET', undefined, bearer(server));
    expect(listed.body).toMatchObject({ ok: true, blocks: [{ user: 'mallory', product: 'cad', until, endsInMs: 1_800_000 }] });

    // Over when the half hour is.
    clock.advance(1_800_000);
    leaseOf(await (await server.connect('mallory', 'm-3')).request('acquire', { product: 'cad' }));
    expect((await call(`${web(server)}/v1/admin/blocks`, 'GET', undefined, bearer(server))).body).toEqual({ ok: true, blocks: [] });
  });

  it('with blockScope instance keeps only that instance out; refuses a bad block', async () => {
    const clock = new FakeClock();
    server = await startServer({ clock, seats: 3, flags: { 'http.listen': ['127.0.0.1:0'] } });
    const lease = leaseOf(await (await server.connect('bob', 'b-1')).request('acquire', { product: 'cad' }));
    const bad = await call(`${web(server)}/v1/admin/leases/${lease.id}/revoke`, 'POST', { reason: 'x', blockSeconds: 60, blockScope: 'host' }, bearer(server));
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ error: { code: 'BAD_REQUEST', field: 'blockScope' } });
    expect(await server.floatd.store.allLeases()).toHaveLength(1);
    const ok = await call(`${web(server)}/v1/admin/leases/${lease.id}/revoke`, 'POST', { reason: 'stuck instance', blockSeconds: 600, blockScope: 'instance' }, bearer(server));
    expect(ok.body).toMatchObject({ ok: true, block: { scope: 'instance', user: 'bob', instance: 'b-1' } });
    expect(errorOf(await (await server.connect('bob', 'b-1')).request('acquire', { product: 'cad' }))).toMatchObject({ code: 'RULE_DENIED', reason: 'revoked' });
    leaseOf(await (await server.connect('bob', 'b-2')).request('acquire', { product: 'cad' }));
  });

  it('floatd admin revoke --block, admin blocks and admin unblock', async () => {
    const clock = new FakeClock();
    server = await startServer({ clock, seats: 3, flags: { 'http.listen': ['127.0.0.1:0'] } });
    const base = web(server);
    const auth = ['--server', base, '--token-file', server.config.adminTokenFile];
    const lease = leaseOf(await (await server.connect('carol', 'c-1')).request('acquire', { product: 'cad' }));
    const usage = await cli(['admin', 'revoke', lease.id, '--reason', 'x', '--block', 'soon', ...auth]);
    expect(usage.code).toBe(2);
    expect(usage.err).toContain('--block must be a span such as 90s, 30m');
    expect(await server.floatd.store.allLeases()).toHaveLength(1);

    const revoked = await cli(['admin', 'revoke', lease.id.slice(0, 8), '--reason', 'audit', '--block', '2h', ...auth]);
    expect(revoked.code, revoked.err).toBe(0);
    expect(revoked.out).toMatch(/^revoked lease .* of carol@carol-host \(cad\)\nuser carol kept out of cad until .* \(block [0-9a-f]{8}; floatd admin unblock lifts it\)$/);
    const blocks = await cli(['admin', 'blocks', ...auth]);
    expect(blocks.code, blocks.err).toBe(0);
    const rows = blocks.out.split('\n');
    expect(rows[0]).toMatch(/^BLOCK\s+KEPT OUT\s+PRODUCT\s+UNTIL\s+ENDS IN\s+BY\s+REASON$/);
    expect(rows[1]).toMatch(/^[0-9a-f]{8}\s+user carol\s+cad\s+.*\s+token:local\s+audit$/);
    const id = rows[1]!.slice(0, 8);
    expect(errorOf(await (await server.connect('carol', 'c-2')).request('acquire', { product: 'cad' })).code).toBe('RULE_DENIED');

    const lifted = await cli(['admin', 'unblock', id, ...auth]);
    expect(lifted.code, lifted.err).toBe(0);
    expect(lifted.out).toMatch(/^block [0-9a-f-]{36} lifted: user carol may take seats of cad again$/);
    leaseOf(await (await server.connect('carol', 'c-2')).request('acquire', { product: 'cad' }));
    expect((await cli(['admin', 'unblock', id, ...auth])).code).not.toBe(0);
    expect((await server.floatd.store.queryEvents({ events: ['blocked', 'unblocked'] })).map((e) => [e.event, e.user, e.actor])).toEqual([
      ['blocked', 'carol', 'token:local'],
      ['unblocked', 'carol', 'token:local'],
    ]);
    expect((await cli(['admin', 'blocks', ...auth])).out).toBe('no blocks in force');
  });
});
