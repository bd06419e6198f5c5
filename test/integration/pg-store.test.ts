import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LeaseService } from '../../src/app/lease-service.js';
import { PoolRegistry } from '../../src/app/pool-registry.js';
import { PgLeaseStore } from '../../src/adapters/postgres/pg-lease-store.js';
import { writerEncoding } from '../../src/adapters/postgres/pg-chain.js';
import { verifyClusterLog } from '../../src/adapters/postgres/pg-log-verify.js';
import { chainHash, GENESIS } from '../../src/adapters/sqlite/log-chain.js';
import type { Lease } from '../../src/domain/lease.js';
import { FakeClock, client, licenseKey, tempDir } from '../support/helpers.js';
import { cli } from '../support/cli.js';
import { IN_CI, POSTGRES_BIN, startPostgres, type PgServer } from '../support/postgres.js';

function lease(overrides: Partial<Lease> = {}): Lease {
  return {
    id: 'l1', poolId: 'key-1', product: 'cad', user: 'alice', host: 'ws1', instance: 'i1', remote: '127.0.0.1', listener: 'tcp',
    grantedAt: 1000, renewedAt: 1000, expiresAt: 5000, leaseMs: 4000, ...overrides,
  };
}

const HAVE_POSTGRES = POSTGRES_BIN !== null;

// Skipped only outside CI on a machine without PostgreSQL's binaries; under CI=true it runs and fails
// (.ci/run installs postgresql), so a missing database never passes silently.
describe.skipIf(!HAVE_POSTGRES && !IN_CI)('PostgreSQL store', () => {
  let server: PgServer;
  const open: PgLeaseStore[] = [];

  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);

  afterAll(() => server?.destroy());

  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.end()));
  });

  async function node(url: string, nodeId: string, clock?: FakeClock): Promise<PgLeaseStore> {
    const store = await PgLeaseStore.open({ url, nodeId, poolSize: 8, ...(clock === undefined ? {} : { leaseClock: () => clock.now() }) });
    open.push(store);
    return store;
  }

  async function setup(seats = 2, nodes = 1) {
    const url = await server.createDatabase();
    const clock = new FakeClock();
    const stores = [];
    for (let i = 0; i < nodes; i++) stores.push(await node(url, `node-${i + 1}`, clock));
    const pools = new PoolRegistry();
    pools.set([licenseKey({ seats })], null, clock.now());
    const ended: string[] = [];
    const services = stores.map((s) => new LeaseService(s, clock, pools, { leaseMs: 60_000, logLevel: 'detailed' }, { leaseEnded: (l, kind) => ended.push(`${kind}:${l.user}`) }));
    return { url, clock, pools, stores, store: stores[0]!, services, service: services[0]!, ended };
  }

  it('needs PostgreSQL, which is not installed (apt-get install postgresql)', () => {
    expect(HAVE_POSTGRES, 'no /usr/lib/postgresql/*/bin/initdb: the PostgreSQL store cannot be tested').toBe(true);
  });

  describe('LeaseService on one node', () => {
    it('grants up to the seat count, then denies with NO_FREE_SEATS and a retry hint', async () => {
      const { service, store, clock } = await setup(2);
      expect((await service.acquire(client('a'), 'cad')).ok).toBe(true);
      clock.advance(1000);
      expect((await service.acquire(client('b'), 'cad')).ok).toBe(true);
      const third = await service.acquire(client('c'), 'cad');
      expect(third).toMatchObject({ ok: false, code: 'NO_FREE_SEATS' });
      if (!third.ok) expect(third.details.retryAfterMs).toBe(10_000);
      const log = await store.queryEvents({});
      expect(log.map((e) => e.event)).toEqual(['granted', 'granted', 'denied']);
      expect(log.map((e) => e.seatsInUse)).toEqual([1, 2, 2]);
      expect(log[2]).toMatchObject({ user: 'c', code: 'NO_FREE_SEATS' });
    });

    it('is idempotent per user, instance and product, renews, releases once and sweeps what expired', async () => {
      const { service, store, clock, ended } = await setup(2);
      const first = await service.acquire(client('a'), 'cad');
      if (!first.ok) throw new Error('no lease');
      clock.advance(5000);
      const again = await service.acquire(client('a'), 'cad', { secret: first.secret! });
      expect(again.ok && again.lease.id).toBe(first.lease.id);
      expect(again.ok && again.lease.expiresAt).toBe(clock.now() + 60_000);
      expect(await service.acquire(client('a'), 'cad')).toMatchObject({ ok: false, code: 'LEASE_SECRET_MISMATCH' });
      const renewed = await service.renew(client('a'), first.lease.id, { secret: first.secret! });
      expect(renewed.ok && renewed.lease.expiresAt).toBe(clock.now() + 60_000);
      expect(await service.renew(client('b'), first.lease.id)).toMatchObject({ ok: false, code: 'LEASE_NOT_YOURS' });
      expect(await service.renew(client('a'), 'nope')).toMatchObject({ ok: false, code: 'LEASE_NOT_FOUND' });
      expect(await service.release(client('a'), first.lease.id, { secret: first.secret! })).toEqual({ ok: true, released: true });
      expect(await service.release(client('a'), first.lease.id)).toEqual({ ok: true, released: false });
      await service.acquire(client('b'), 'cad');
      clock.advance(60_000);
      expect(await service.sweep()).toBe(1);
      expect(ended).toEqual(['released:a', 'expired:b']);
      expect(await store.allLeases()).toEqual([]);
      expect((await store.queryEvents({})).map((e) => e.event)).toEqual(['granted', 'renewed', 'denied', 'renewed', 'released', 'granted', 'expired']);
    });

    it('keeps nothing of a unit that fails, tells nothing it published, and undoes what it changed in memory', async () => {
      const { store } = await setup(2);
      const told: string[] = [];
      await expect(
        store.unit(async (u) => {
          await u.seatsInUse('key-1', 0, 5);
          await u.apply({ writes: [{ op: 'insert', lease: lease() }], log: [{ ts: 1, event: 'granted', leaseId: 'l1' }] });
          u.publish(() => told.push('published'));
          u.onRollback(() => told.push('undone'));
          expect(await u.findLease('l1')).toEqual({ ...lease(), node: 'node-1' });
          throw new Error('a bug half-way');
        }),
      ).rejects.toThrow('a bug half-way');
      expect(told).toEqual(['undone']);
      expect(await store.allLeases()).toEqual([]);
      expect(await store.queryEvents({})).toEqual([]);
      // The writer's chain did not move: the next entry chains from the start.
      await store.appendEvent({ ts: 2, event: 'server-started' });
      const rows = await rawEvents(store);
      expect(rows.map((r) => [r.seq, r.prev_hash])).toEqual([[1, GENESIS]]);
    });

    it('keeps meta values, license keys, admin tokens, and activations per node', async () => {
      const { store, url } = await setup(2);
      expect(await store.initMeta('k', 'first')).toBe('first');
      expect(await store.initMeta('k', 'second')).toBe('first');
      await store.setMeta('k', 'third');
      expect(await store.getMeta('k')).toBe('third');
      await store.addLicense({ id: 'x', token: 'a.b.c', addedAt: 5 }, { ts: 5, event: 'key-added' });
      expect(await store.listLicenses()).toEqual([{ id: 'x', token: 'a.b.c', addedAt: 5 }]);
      expect(await store.removeLicense('x', { ts: 6, event: 'key-removed' })).toBe(true);
      expect(await store.removeLicense('x', { ts: 6, event: 'key-removed' })).toBe(false);
      expect(await store.putAdminToken('ops', 'h1', false, { ts: 7, event: 'admin-token-created' })).toBe(true);
      expect(await store.putAdminToken('ops', 'h2', false, { ts: 7, event: 'admin-token-created' })).toBe(false);
      expect(await store.adminTokenByHash('h1')).toBe('ops');
      await store.addActivationRequest('n1', 'key-1', 'activation', 8);
      const activation = { keyId: 'key-1', activationId: 'a1', token: 't', source: 'offline' as const, url: null, activatedAt: 9, validatedAt: 9 };
      expect(await store.putActivation(activation, 'n1', { ts: 9, event: 'activated' })).toBe(true);
      expect(await store.putActivation(activation, 'n1', { ts: 9, event: 'activated' })).toBe(false);
      expect(await store.listActivations()).toEqual([activation]);
      expect((await store.findActivationRequest('n1'))?.consumedAt).toBe(9);
      // Another node's activation is its own: this node's list does not have it, the cluster's does.
      const other = await node(url, 'node-2');
      expect(await other.listActivations()).toEqual([]);
      expect(await other.getActivation('key-1')).toBeUndefined();
      expect(await other.findActivationRequest('n1')).toBeUndefined();
      expect((await other.clusterActivations()).map((x) => [x.node, x.keyId])).toEqual([['node-1', 'key-1']]);
      expect((await store.queryEvents({})).map((e) => e.event)).toEqual(['key-added', 'key-removed', 'admin-token-created', 'activated']);
      expect((await store.queryEvents({ limit: 2 })).map((e) => e.event)).toEqual(['admin-token-created', 'activated']);
      expect((await store.queryEvents({ events: ['key-added', 'activated'], first: 1 })).map((e) => e.event)).toEqual(['key-added']);
    });

    it('folds identical denials into one counted entry', async () => {
      const { service, store } = await setup(1);
      await service.acquire(client('a'), 'cad');
      for (let i = 0; i < 3; i++) await service.acquire(client('b'), 'cad');
      const denied = await store.queryEvents({ events: ['denied'] });
      expect(denied).toHaveLength(1);
      expect(denied[0]).toMatchObject({ user: 'b', count: 3 });
    });
  });

  describe('a schema', () => {
    it('is migrated once when nodes start together, and refused when newer than this floatd', async () => {
      const url = await server.createDatabase();
      await Promise.all([node(url, 'a'), node(url, 'b'), node(url, 'c')]);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      expect((await c.query('SELECT version FROM floatd_schema ORDER BY version')).rows).toEqual([{ version: 1 }, { version: 2 }]);
      await c.query('INSERT INTO floatd_schema (version) VALUES (99)');
      await c.end();
      await expect(PgLeaseStore.open({ url, nodeId: 'd' })).rejects.toMatchObject({ code: 'STORE_SCHEMA_NEWER', message: expect.stringMatching(/version 99\) is newer than this floatd understands \(2\)/) });
    });
  });

  describe('several nodes on one database', () => {
    it('grant exactly the seats there are to 200 clients racing for 50 seats on three nodes', async () => {
      const { services, stores } = await setup(50, 3);
      let highest = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const [r] = (await stores[0]!['pool'].query("SELECT count(*)::int AS n FROM leases WHERE pool_id = 'key-1'")).rows as Array<{ n: number }>;
          highest = Math.max(highest, r!.n);
        }
      })();
      const outcomes = await Promise.all(Array.from({ length: 200 }, (_, i) => services[i % 3]!.acquire(client(`u${i}`), 'cad', undefined, `u${i}`)));
      sampling = false;
      await sampler;
      expect(outcomes.filter((o) => o.ok)).toHaveLength(50);
      expect(outcomes.filter((o) => !o.ok).map((o) => !o.ok && o.code)).toEqual(Array(150).fill('NO_FREE_SEATS'));
      expect(highest).toBeLessThanOrEqual(50);
      expect(await stores[1]!.allLeases()).toHaveLength(50);
      const grants = await stores[2]!.queryEvents({ events: ['granted'] });
      expect(grants.map((e) => e.seatsInUse).sort((a, b) => a! - b!)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    });

    it('give one lease to one holder acquiring on two nodes at once', async () => {
      const { services, stores } = await setup(5, 2);
      const got = await Promise.all([services[0]!.acquire(client('a'), 'cad'), services[1]!.acquire(client('a'), 'cad')]);
      expect(got.filter((o) => o.ok)).toHaveLength(1);
      expect(got.find((o) => !o.ok)).toMatchObject({ code: 'LEASE_SECRET_MISMATCH' });
      expect(await stores[0]!.allLeases()).toHaveLength(1);
    });

    it('record every expiry once when every node sweeps at the same time', async () => {
      const { services, stores, clock } = await setup(40, 3);
      await Promise.all(Array.from({ length: 30 }, (_, i) => services[i % 3]!.acquire(client(`u${i}`), 'cad')));
      clock.advance(61_000);
      const swept = await Promise.all(services.map((s) => s.sweep()));
      expect(swept.reduce((a, b) => a + b, 0)).toBe(30);
      expect(await stores[0]!.queryEvents({ events: ['expired'] })).toHaveLength(30);
    });

    it('refuse in the database a lease past the pool\'s seats, even one written without counting', async () => {
      const { store } = await setup(1);
      const now = Date.now();
      await store.unit(async (u) => {
        await u.seatsInUse('key-1', now, 1);
        await u.apply({ writes: [{ op: 'insert', lease: lease({ expiresAt: now + 600_000 }) }], log: [] });
      });
      // A node with a bug: it writes a second running lease without looking at the seats.
      await expect(
        store.unit((u) => u.apply({ writes: [{ op: 'insert', lease: lease({ id: 'l2', instance: 'i2', expiresAt: now + 600_000 }) }], log: [] })),
      ).rejects.toMatchObject({ code: '23514', constraint: 'leases_within_seats' });
      expect(await store.allLeases()).toHaveLength(1);
    });

    it('tell a node of keys another node added (at its next poll), and of its client\'s lease another node revoked (at once)', async () => {
      const { stores, services } = await setup(2, 2);
      const [a, b] = stores as [PgLeaseStore, PgLeaseStore];
      let changed = 0;
      b.changes.subscribe(() => changed++);
      const ends: string[] = [];
      b.changes.onLeaseEnded((e) => ends.push(`${e.kind}:${e.lease.id}`));
      await a.addLicense({ id: 'x', token: 'a.b.c', addedAt: 5 }, { ts: 5, event: 'key-added' });
      await until(() => (b.changes.poll(), changed === 1));
      const got = await services[1]!.acquire(client('a'), 'cad');
      if (!got.ok) throw new Error('no lease');
      expect(await services[0]!.revoke(got.lease.id, 'maintenance', 'token:ops')).toMatchObject({ ok: true });
      await until(() => ends.length === 1);
      expect(ends).toEqual([`revoked:${got.lease.id}`]);
    });

    it('run a cluster-wide job on one node at a time', async () => {
      const { stores } = await setup(1, 3);
      let running = 0;
      let most = 0;
      const job = async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((r) => setTimeout(r, 50));
        running--;
      };
      const ran = await Promise.all(stores.map((s) => s.cluster.runOnce('retention', job)));
      expect(ran.filter(Boolean)).toHaveLength(1);
      expect(most).toBe(1);
      expect(await stores[1]!.cluster.runOnce('retention', job)).toBe(true);
    });

    it('see the database\'s replication: a primary without a synchronous standby', async () => {
      const { store } = await setup(1);
      expect(await store.replication()).toMatchObject({ role: 'primary', synchronous: false, standbys: [] });
    });

    it('keep a node row per node, with heartbeats on the database clock', async () => {
      const { stores } = await setup(1, 2);
      const t = await stores[0]!.cluster.heartbeat({ listeners: ['tcp 127.0.0.1:1'], version: '1.0.0', startedAt: 5 });
      await stores[1]!.cluster.heartbeat({ listeners: [], version: '1.0.0', startedAt: 6 });
      expect(Math.abs(t - Date.now())).toBeLessThan(5000);
      const nodes = await stores[1]!.cluster.nodes();
      expect(nodes.map((n) => [n.id, n.listeners, n.startedAt])).toEqual([['node-1', ['tcp 127.0.0.1:1'], 5], ['node-2', [], 6]]);
    });

    it('extend one hash chain per writer, each verifiable, with ids in each writer\'s order', async () => {
      const { services, stores } = await setup(50, 2);
      await Promise.all(Array.from({ length: 40 }, (_, i) => services[i % 2]!.acquire(client(`u${i}`), 'cad')));
      const rows = await rawEvents(stores[0]!);
      expect(rows).toHaveLength(40);
      const writers = new Map<string, typeof rows>();
      for (const r of rows) writers.set(r.writer, [...(writers.get(r.writer) ?? []), r]);
      expect(writers.size).toBeGreaterThanOrEqual(2);
      for (const [writer, entries] of writers) {
        let prev = GENESIS;
        entries.forEach((r, i) => {
          expect(r.seq).toBe(i + 1);
          expect(r.prev_hash).toBe(prev);
          const e = { ts: r.ts, event: r.event, poolId: r.pool_id, product: r.product, leaseId: r.lease_id, user: r.user, host: r.host, instance: r.instance, remote: r.remote, listener: r.listener, seatsInUse: r.seats_in_use, seatsTotal: r.seats_total, code: r.code, reason: r.reason, message: r.message, actor: r.actor } as const;
          expect(chainHash(prev, writerEncoding(writer, r.seq, e as never))).toBe(r.hash);
          prev = r.hash;
        });
      }
    });
  });

  describe('the lease log of a cluster', () => {
    it('verifies every writer\'s chain and the merged order, and names a changed, a removed and an inserted entry', async () => {
      const { services, stores } = await setup(50, 2);
      // One after another: each node reuses its idle connection, so each writer has several entries.
      for (let i = 0; i < 30; i++) await services[i % 2]!.acquire(client(`u${i}`), 'cad');
      const db = stores[0]!['pool'];
      const clean = await verifyClusterLog(db);
      expect(clean).toMatchObject({ ok: true, entries: 30, problems: [] });
      expect(clean.writers.length).toBeGreaterThanOrEqual(2);
      expect(clean.writers.reduce((n, w) => n + w.entries, 0)).toBe(30);
      const rows = (await db.query<{ id: number; writer: string; seq: number }>('SELECT id, writer, seq FROM events ORDER BY id')).rows;
      // The second entry of a writer that wrote at least three (how entries spread over connections varies).
      const victim = rows.find((r) => r.seq === 2 && rows.some((o) => o.writer === r.writer && o.seq === 3))!;
      await db.query(`UPDATE events SET "user" = 'mallory' WHERE id = $1`, [victim.id]);
      expect((await verifyClusterLog(db)).problems).toEqual([expect.objectContaining({ kind: 'changed', id: victim.id, writer: victim.writer })]);
      await db.query('DELETE FROM events WHERE id = $1', [victim.id]);
      expect((await verifyClusterLog(db)).problems).toEqual([expect.objectContaining({ kind: 'removed', writer: victim.writer, detail: expect.stringContaining(`#2 to #2 are missing`) })]);
      const third = rows.find((r) => r.writer === victim.writer && r.seq === 3)!;
      await db.query(
        // The database refuses a second entry with a writer's number; one slipped in under a number of its own is found.
        `INSERT INTO events (ts, event, writer, seq, prev_hash, hash) SELECT ts, event, writer, 0, prev_hash, hash FROM events WHERE id = $1`,
        [third.id],
      );
      const problems = (await verifyClusterLog(db)).problems;
      expect(problems.map((p) => p.kind)).toEqual(['removed', 'changed', 'inserted']);
    });
  });

  describe('the operator\'s checks', () => {
    it('floatd ha verify fails on a pool that ran more leases than its seats, and floatd log verify names a changed entry', async () => {
      const { store, url } = await setup(1);
      const db = store['pool'];
      const now = Date.now();
      await store.unit(async (u) => {
        await u.seatsInUse('key-1', now, 1);
        await u.apply({ writes: [{ op: 'insert', lease: lease({ expiresAt: now + 600_000 }) }], log: [{ ts: now, event: 'granted', leaseId: 'l1', user: 'alice' }] });
      });
      const env = { FLOATD_STORE_KIND: 'postgres', FLOATD_STORE_URL: url, FLOATD_DATA_DIR: tempDir() };
      expect(await cli(['ha', 'verify', '--duration', '50ms', '--interval', '10ms'], { env })).toMatchObject({ code: 0, out: expect.stringContaining('key-1: at most 1 of 1 seat(s) running') });
      // What the trigger exists to stop, done behind its back.
      await db.query('ALTER TABLE leases DISABLE TRIGGER leases_within_seats');
      await db.query(`INSERT INTO leases SELECT 'l2', pool_id, product, "user", host, 'i2', remote, listener, granted_at, renewed_at, expires_at, lease_ms, secret_hash, node FROM leases WHERE id = 'l1'`);
      expect(await cli(['ha', 'verify', '--duration', '50ms', '--interval', '10ms'], { env })).toMatchObject({ code: 1, err: expect.stringContaining('OVER-GRANT: pool key-1 ran 2 leases for 1 seats') });
      expect(await cli(['log', 'verify'], { env })).toMatchObject({ code: 0 });
      await db.query(`UPDATE events SET "user" = 'mallory'`);
      expect(await cli(['log', 'verify'], { env })).toMatchObject({ code: 1, err: expect.stringMatching(/LOG_TAMPERED|changed: entry \d+ .* differs from what was recorded/) });
      expect(await cli(['ha', 'verify'], { env: { FLOATD_DATA_DIR: tempDir() } })).toMatchObject({ code: 2, err: expect.stringContaining('floatd ha verify checks a cluster') });
    });
  });

  describe('lease time', () => {
    it('is the database\'s clock when no clock is given', async () => {
      const url = await server.createDatabase();
      const store = await node(url, 'n');
      const seen = await store.unit(async (u) => u.now!());
      expect(Math.abs(seen - Date.now())).toBeLessThan(5000);
      expect(Math.abs((await store.databaseTime()) - seen)).toBeLessThan(5000);
    });
  });

  describe('a database that goes away', () => {
    it('answers UNAVAILABLE with a retry hint, never a decision, and serves again when it is back', async () => {
      const own = await startPostgres();
      try {
        const url = await own.createDatabase();
        const clock = new FakeClock();
        const store = await node(url, 'n', clock);
        const pools = new PoolRegistry();
        pools.set([licenseKey({ seats: 2 })], null, clock.now());
        const service = new LeaseService(store, clock, pools, { leaseMs: 60_000, logLevel: 'detailed' });
        expect((await service.acquire(client('a'), 'cad')).ok).toBe(true);
        own.stop();
        await expect(service.acquire(client('b'), 'cad')).rejects.toMatchObject({ code: 'UNAVAILABLE', details: { retryAfterMs: 1000, reason: 'database-unreachable' } });
        own.start();
        expect((await service.acquire(client('b'), 'cad')).ok).toBe(true);
        expect(await store.allLeases()).toHaveLength(2);
      } finally {
        own.destroy();
      }
    }, 60_000);
  });
});

interface RawEvent {
  id: number; ts: number; event: string; pool_id: string | null; product: string | null; lease_id: string | null; user: string | null; host: string | null;
  instance: string | null; remote: string | null; listener: string | null; seats_in_use: number | null; seats_total: number | null; code: string | null;
  reason: string | null; message: string | null; actor: string | null; writer: string; seq: number; prev_hash: string; hash: string;
}

async function rawEvents(store: PgLeaseStore): Promise<RawEvent[]> {
  return (await store['pool'].query('SELECT * FROM events ORDER BY id')).rows as RawEvent[];
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
