import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cli, killChildren, requireBuild } from '../support/cli.js';
import { call } from '../support/http.js';
import { leaseOf, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);

/** The database's size in pages, as a reader sees it (the WAL's newest pages included). */
function pagesOf(file: string): number {
  const db = new Database(file, { readonly: true });
  try {
    return db.pragma('page_count', { simple: true }) as number;
  } finally {
    db.close();
  }
}
let server: TestServer | undefined;
afterEach(async () => {
  killChildren();
  await server?.stop();
  server = undefined;
});

describe('repeated denials are counted, not appended', () => {
  it('a client repeating a denied acquire 10,000 times makes a handful of entries whose counts add up, shown by floatd log and the admin API', async () => {
    // The acquisition rate limit (on by default) would refuse most of them before they are denials: off here.
    server = await startServer({ seats: 1, flags: { 'http.listen': ['127.0.0.1:0'], 'acquireRateLimit.perSecond': 0 } });
    const s = server;
    leaseOf(await (await s.connect('holder')).request('acquire', { product: 'cad' }));
    const c = await s.connect('alice');
    const pagesBefore = pagesOf(s.config.dbFile);
    const eventsBefore = (await s.floatd.store.queryEvents({})).length;
    let denied = 0;
    for (let round = 0; round < 20; round++) {
      const replies = await Promise.all(Array.from({ length: 500 }, () => c.request('acquire', { product: 'cad' })));
      denied += replies.filter((r) => !r.ok && r.error.code === 'NO_FREE_SEATS').length;
    }
    expect(denied).toBe(10_000);
    const entries = await s.floatd.store.queryEvents({ events: ['denied'] });
    // One entry a minute: the run may straddle a minute boundary.
    expect(entries.length).toBeLessThanOrEqual(2);
    expect(entries.reduce((n, e) => n + e.count, 0)).toBe(10_000);
    expect(entries[0]).toMatchObject({ user: 'alice', code: 'NO_FREE_SEATS', product: 'cad' });
    expect((await s.floatd.store.queryEvents({})).length - eventsBefore).toBe(entries.length);
    // Without counting, 10,000 entries of ~250 bytes each would be megabytes of log: the database
    // (its pages, wherever they are now: the WAL is rewritten by every commit and checkpointed) stays put.
    expect(pagesOf(s.config.dbFile) - pagesBefore).toBeLessThan(50);

    const log = await cli(['log', '--data-dir', s.config.dataDir, '--event', 'denied', '--json']);
    expect(log.code).toBe(0);
    const json = log.out.split('\n').map((l) => JSON.parse(l) as { count: number; user: string });
    expect(json.reduce((n, e) => n + e.count, 0)).toBe(10_000);
    const text = await cli(['log', '--data-dir', s.config.dataDir, '--event', 'denied']);
    expect(text.out).toMatch(/denied x\d{3,5}/);

    const http = s.floatd.listenerStatus().find((l) => l.scheme === 'http')!;
    const token = readFileSync(s.config.adminTokenFile, 'utf8').trim();
    const viaAdmin = await call(`http://127.0.0.1:${http.port}/v1/admin/log?event=denied`, 'GET', undefined, { headers: { authorization: `Bearer ${token}` } });
    expect(viaAdmin.status).toBe(200);
    const events = (viaAdmin.body as { events: Array<{ count: number }> }).events;
    expect(events.reduce((n, e) => n + e.count, 0)).toBe(10_000);
  });

  it('a peer rotating user names cannot add more than a bounded number of entries a minute', async () => {
    server = await startServer({ seats: 1 });
    const s = server;
    leaseOf(await (await s.connect('holder')).request('acquire', { product: 'cad' }));
    let denied = 0;
    for (let round = 0; round < 6; round++) {
      const conns = await Promise.all(Array.from({ length: 50 }, (_, i) => s.connect(`u${round}-${i}`)));
      const replies = await Promise.all(conns.map((t) => t.request('acquire', { product: 'cad' })));
      denied += replies.filter((r) => !r.ok).length;
      for (const t of conns) t.close();
    }
    expect(denied).toBe(300);
    const entries = await s.floatd.store.queryEvents({ events: ['denied'] });
    // 100 entries a minute per address, plus one catch-all; two minutes at most.
    expect(entries.length).toBeLessThanOrEqual(2 * 101);
    expect(entries.reduce((n, e) => n + e.count, 0)).toBe(300);
    const catchAll = entries.filter((e) => e.user === null);
    expect(catchAll.length).toBeGreaterThanOrEqual(1);
    expect(catchAll[0]).toMatchObject({ remote: '127.0.0.1', code: null });
  });
});
