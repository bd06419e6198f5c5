import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { SqliteLeaseStore } from '../../src/adapters/sqlite/sqlite-lease-store.js';
import { LeaseClient } from '../../src/client/index.js';
import type { Reply } from '../../src/client/tcp-transport.js';
import { advanceUntil, FakeClock } from '../support/fake-clock.js';
import { call } from '../support/http.js';
import { capturingLogger, errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';

const servers: TestServer[] = [];
const others: Database.Database[] = [];
const clients: LeaseClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const db of others.splice(0)) if (db.open) db.close();
  for (const s of servers.splice(0)) await s.stop();
});

async function server(clock?: FakeClock) {
  const { logger, lines } = capturingLogger();
  const s = await startServer({ seats: 20, logger, clock, flags: { leaseSeconds: 60, 'http.listen': ['127.0.0.1:0'] } });
  servers.push(s);
  const http = s.floatd.listenerStatus().find((l) => l.scheme === 'http')!;
  return { s, lines, web: `http://127.0.0.1:${http.port}` };
}

/** The server's own connection to its database, for a real SQLITE_FULL (max_page_count is per connection). */
function serverDb(s: TestServer): Database.Database {
  return (s.floatd.store as SqliteLeaseStore)['db'];
}

const storageErrors = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l['level'] === 50);
const recoveries = (lines: Array<Record<string, unknown>>) => lines.filter((l) => String(l['msg']).startsWith('storage available again'));

describe('storage faults are a state, not a flood', () => {
  it('a full disk: UNAVAILABLE with retryAfterMs on both doors, /readyz 503, one error line, recovery with a count, nothing acknowledged lost', async () => {
    const { s, lines, web } = await server();
    const held: Array<{ user: string; id: string; leaseSecret: unknown }> = [];
    for (let i = 0; i < 5; i++) {
      const c = await s.connect(`u${i}`);
      const r = await c.request('acquire', { product: 'cad' });
      held.push({ user: `u${i}`, id: leaseOf(r).id, leaseSecret: (r as Record<string, unknown>)['leaseSecret'] });
    }
    const db = serverDb(s);
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages}`);

    // Every renewal appends to the lease log: once its last page is full, the disk is "full".
    const alice = await s.connect('u0');
    let unavailable = 0;
    let first: ReturnType<typeof errorOf> | undefined;
    for (let i = 0; i < 500 && first === undefined; i++) {
      const r = await alice.request('renew', { lease: held[0]!.id, leaseSecret: held[0]!.leaseSecret });
      if (!r.ok) {
        first = errorOf(r);
        unavailable++;
      }
    }
    expect(first, JSON.stringify(lines.filter((l) => (l["level"] as number) >= 50))).toMatchObject({ code: "UNAVAILABLE", reason: "disk-full" });
    expect(first!.retryAfterMs).toBeGreaterThan(0);
    expect(first!.message).not.toContain(s.config.dataDir);

    // A burst of requests is answered at once, every one UNAVAILABLE, none INTERNAL.
    const burst: Reply[] = await Promise.all(Array.from({ length: 200 }, (_, i) => alice.request('acquire', { product: 'cad', id: i })));
    expect(new Set(burst.map((r) => (r.ok ? 'ok' : r.error.code)))).toEqual(new Set(['UNAVAILABLE']));
    unavailable += burst.length;
    const viaHttp = await call(`${web}/v1/leases/${held[1]!.id}/renew`, 'POST', { client: { user: 'u1', host: 'u1-host', instance: 'u1-1' }, leaseSecret: held[1]!.leaseSecret });
    expect(viaHttp.status).toBe(503);
    expect(viaHttp.body).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE', reason: 'disk-full' } });
    expect(Number(viaHttp.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    unavailable++;
    const ready = await call(`${web}/readyz`, 'GET');
    expect(ready).toMatchObject({ status: 503, body: { ok: false, reason: 'storage unavailable: disk-full' } });
    const metrics = (await fetch(`${web}/metrics`).then((r) => r.text())).split('\n');
    expect(metrics).toContain('floatd_storage_fault 1');
    expect(metrics).toContain(`floatd_storage_unavailable_total{reason="disk-full"} ${unavailable}`);
    // The liveness check stays green: restarting would not free the disk.
    expect((await call(`${web}/healthz`, 'GET')).status).toBe(200);
    expect(storageErrors(lines)).toHaveLength(1);
    expect(storageErrors(lines)[0]).toMatchObject({ reason: 'disk-full', sqliteCode: 'SQLITE_FULL' });

    // Space comes back: the probe notices within a second or two, without any request.
    db.pragma('max_page_count = 1073741823');
    const deadline = Date.now() + 5000;
    while (recoveries(lines).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(recoveries(lines)).toHaveLength(1);
    expect(recoveries(lines)[0]).toMatchObject({ level: 40, reason: 'disk-full', failed: unavailable });
    expect(recoveries(lines)[0]!['seconds']).toBeGreaterThan(0);
    expect((await call(`${web}/readyz`, 'GET')).status).toBe(200);
    expect((await fetch(`${web}/metrics`).then((r) => r.text())).split('\n')).toContain('floatd_storage_fault 0');
    expect(storageErrors(lines)).toHaveLength(1);
    expect(lines.filter((l) => l['msg'] === 'request failed')).toEqual([]);

    // Nothing acknowledged was lost, and the server serves again.
    expect((await s.floatd.store.allLeases()).map((l) => l.id).sort()).toEqual(held.map((h) => h.id).sort());
    expect((await alice.request('renew', { lease: held[0]!.id, leaseSecret: held[0]!.leaseSecret })).ok).toBe(true);
    expect(leaseOf(await (await s.connect('late')).request('acquire', { product: 'cad' })).id).toBeTruthy();
  });

  it('a database locked by another process: every request is answered within the bounded wait, never seconds, and the lock ending ends the fault', async () => {
    const { s, lines, web } = await server();
    const c = await s.connect('alice');
    const lease = leaseOf(await c.request('acquire', { product: 'cad' }));
    const other = new Database(s.config.dbFile);
    others.push(other);
    other.exec('BEGIN EXCLUSIVE');

    const started = Date.now();
    const slowest: number[] = [];
    let unavailable = 0;
    while (Date.now() - started < 2500) {
      const t0 = Date.now();
      const r = await c.request('renew', { lease: lease.id });
      slowest.push(Date.now() - t0);
      expect(errorOf(r)).toMatchObject({ code: 'UNAVAILABLE', reason: 'locked' });
      unavailable++;
      // A ping is never held up behind the lock for long.
      const p0 = Date.now();
      expect((await c.request('ping')).ok).toBe(true);
      slowest.push(Date.now() - p0);
    }
    // One real attempt a second waits out busy_timeout (200 ms); the rest are answered at once (before: up to 10 s).
    expect(Math.max(...slowest)).toBeLessThan(1500);
    expect(unavailable).toBeGreaterThan(5);
    expect((await call(`${web}/readyz`, 'GET')).status).toBe(503);
    expect(storageErrors(lines)).toHaveLength(1);
    expect(storageErrors(lines)[0]).toMatchObject({ reason: 'locked', sqliteCode: 'SQLITE_BUSY' });

    other.exec('COMMIT');
    const deadline = Date.now() + 5000;
    while (recoveries(lines).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(recoveries(lines)).toHaveLength(1);
    expect(recoveries(lines)[0]).toMatchObject({ reason: 'locked', failed: unavailable });
    expect((await c.request('renew', { lease: lease.id })).ok).toBe(true);
    expect((await call(`${web}/readyz`, 'GET')).status).toBe(200);
  });

  it('an SDK acquire during a storage fault waits as long as the server asks, not its own retry interval', async () => {
    const { s } = await server();
    const other = new Database(s.config.dbFile);
    others.push(other);
    other.exec('BEGIN EXCLUSIVE');
    const c = new LeaseClient({ server: s.address, user: 'bob', instance: 'i-2', retryIntervalMs: 30_000 });
    clients.push(c);
    const denied = new Promise<{ code: string; retryInMs: number | null }>((resolve) => c.once('denied', resolve));
    void c.acquire().catch(() => {});
    const d = await denied;
    expect(d.code).toBe('UNAVAILABLE');
    expect(d.retryInMs).toBeGreaterThan(0);
    expect(d.retryInMs).toBeLessThan(30_000);
    other.exec('COMMIT');
  });

  it('the client SDK keeps its lease through a storage fault and renews once it is over', async () => {
    const clock = new FakeClock(Date.parse('2026-11-21T08:00:00Z'));
    const { s } = await server(clock);
    const c = new LeaseClient({ server: s.address, user: 'alice', instance: 'i-1', clock });
    clients.push(c);
    const seen: string[] = [];
    for (const e of ['acquired', 'renewed', 'lost', 'regained', 'revoked'] as const) c.on(e, () => seen.push(e));
    const lease = await c.acquire();
    const other = new Database(s.config.dbFile);
    others.push(other);
    other.exec('BEGIN EXCLUSIVE');
    // The renewal at 30 s meets the lock; it retries with back-off, the lease has 60 s.
    await advanceUntil(clock, () => false, 40_000, 1000);
    expect(s.floatd.storage.fault()).toBe('locked');
    expect(seen).toEqual(['acquired']);
    expect(c.lease?.id).toBe(lease.id);
    other.exec('COMMIT');
    await advanceUntil(clock, () => seen.includes('renewed'), 15_000, 500);
    expect(seen).toEqual(['acquired', 'renewed']);
    expect(c.lease?.id).toBe(lease.id);
    expect(s.floatd.storage.fault()).toBeNull();
  });
});
