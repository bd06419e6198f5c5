import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildLog, type BuiltLog } from '../../scripts/lib/build-log.js';
import { LogRetention, logChainOptions, verifyLeaseLog } from '../../src/app/lease-log.js';
import { newEd25519KeyPair, readJwkFile, thumbprint } from '../../src/adapters/crypto/keys.js';
import { logVerifier } from '../../src/adapters/crypto/log-signer.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { entryHash, GENESIS } from '../../src/adapters/sqlite/log-chain.js';
import { migrate, loadMigrations } from '../../src/adapters/sqlite/migrate.js';
import { SqliteLeaseStore } from '../../src/adapters/sqlite/sqlite-lease-store.js';
import { loadConfig } from '../../src/config/config.js';
import { FakeClock } from '../support/fake-clock.js';
import { tempDir } from '../support/helpers.js';
import { cli, floatdAsync, killChildren, requireBuild } from '../support/cli.js';
import { leaseOf, startServer } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

const DAY = 86_400_000;
const V1 = ['id', 'ts', 'event', 'pool_id', 'product', 'lease_id', 'user', 'host', 'instance', 'remote', 'listener', 'seats_in_use', 'seats_total', 'code', 'reason', 'message', 'actor'];

let template: Promise<{ built: BuiltLog; dir: string }> | undefined;

/**
 * 3,500 entries over about two weeks, a checkpoint every 1,000 (the default) and one at the end.
 * The simulation is seeded, so every call would write the same log: it is written once per file,
 * and each test gets a copy of that data directory of its own to tamper with.
 */
async function smallLog(): Promise<BuiltLog> {
  template ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'floatd-log-template-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return { dir, built: await buildLog({ entries: 3500, dataDir: join(dir, 'data'), stepMs: 5 * 60_000 }) };
  })();
  const { built } = await template;
  const dataDir = join(tempDir(), 'data');
  cpSync(built.dataDir, dataDir, { recursive: true });
  return { ...built, dataDir, config: loadConfig({ env: {}, flags: { dataDir } }) };
}

/** `floatd log verify`, run in this process (a log this small is checked on one thread, as the built command would). */
function verifyCli(built: BuiltLog, ...args: string[]) {
  return cli(['log', 'verify', '--data-dir', built.dataDir, ...args]);
}

async function problemOf(built: BuiltLog) {
  const r = await verifyCli(built, '--json');
  expect(r.code).toBe(1);
  return (JSON.parse(r.out) as { ok: boolean; problem: { kind: string; id: number; ts: string; detail: string } }).problem;
}

/** The database file itself, as someone with write access to it would change it. */
function tamper(built: BuiltLog, fn: (db: Database.Database) => void): void {
  const db = new Database(join(built.dataDir, 'floatd.db'));
  fn(db);
  db.close();
}

function rowOf(db: Database.Database, id: number): Record<string, unknown> {
  return db.prepare('SELECT * FROM events WHERE id = ?').get(id) as Record<string, unknown>;
}

describe('floatd log verify', () => {
  it('reports OK on an untouched log, with the checkpoints it checked', async () => {
    const built = await smallLog();
    const r = await verifyCli(built);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^OK: 3500 entries, #1 \(.*\) to #3500 \(.*\): every hash and link checks/);
    expect(r.out).toContain('4 signed checkpoint(s) verified');
    const json = JSON.parse((await verifyCli(built, '--json')).out) as Record<string, unknown>;
    expect(json).toMatchObject({ ok: true, entries: 3500, checkpoints: 4, unsigned: 0, problem: null, lastCheckpoint: { eventId: 3500, count: 3500 } });
  });

  it('catches and locates a changed entry', async () => {
    const built = await smallLog();
    let ts = 0;
    tamper(built, (db) => {
      ts = rowOf(db, 1234)['ts'] as number;
      db.prepare("UPDATE events SET user = 'someone-else' WHERE id = 1234").run();
    });
    const problem = await problemOf(built);
    expect(problem).toMatchObject({ kind: 'changed', id: 1234, ts: new Date(ts).toISOString() });
    const text = await verifyCli(built);
    expect(text.code).toBe(1);
    expect(text.err).toMatch(/^floatd log: LOG_TAMPERED: changed: entry #1234 \(/);
    expect(text.err).not.toMatch(/\n\s+at /);
  });

  it('catches a changed entry whose hash was recomputed, and the rewrite of everything after it up to a checkpoint', async () => {
    const built = await smallLog();
    tamper(built, (db) => {
      const row = rowOf(db, 1500);
      row['user'] = 'rewritten';
      db.prepare('UPDATE events SET user = ?, hash = ? WHERE id = 1500').run('rewritten', entryHash(V1.map((c) => row[c]), [], row['prev_hash'] as string));
    });
    expect(await problemOf(built)).toMatchObject({ kind: 'changed', id: 1500 });
    // Rewriting the chain after it too (as a forger would) runs into the signed checkpoint at #2000.
    tamper(built, (db) => {
      let prev = rowOf(db, 1500)['hash'] as string;
      for (let id = 1501; id <= 3500; id++) {
        const row = rowOf(db, id);
        const hash = entryHash(V1.map((c) => row[c]), [], prev);
        db.prepare('UPDATE events SET prev_hash = ?, hash = ? WHERE id = ?').run(prev, hash, id);
        prev = hash;
      }
    });
    expect(await problemOf(built)).toMatchObject({ kind: 'changed', id: 2000 });
  });

  it('catches and locates a removed entry', async () => {
    const built = await smallLog();
    let ts = 0;
    tamper(built, (db) => {
      ts = rowOf(db, 1501)['ts'] as number;
      db.prepare('DELETE FROM events WHERE id = 1500').run();
    });
    const problem = await problemOf(built);
    expect(problem).toMatchObject({ kind: 'removed', id: 1501, ts: new Date(ts).toISOString() });
    expect(problem.detail).toContain('between #1499');
  });

  it('catches and locates an inserted entry', async () => {
    const built = await smallLog();
    let ts = 0;
    tamper(built, (db) => {
      // Make room after #2100 and slip in an entry that links properly to #2100.
      db.prepare('UPDATE events SET id = id + 1000000 WHERE id > 2100').run();
      db.prepare('UPDATE events SET id = id - 999999 WHERE id > 1000000').run();
      const before = rowOf(db, 2100);
      ts = (before['ts'] as number) + 1;
      const forged: Record<string, unknown> = { ...before, id: 2101, ts, event: 'granted', user: 'ghost', lease_id: 'ffffffff-0000-4000-8000-000000000000' };
      const hash = entryHash(V1.map((c) => forged[c]), [], before['hash'] as string);
      db.prepare(`INSERT INTO events (${V1.join(', ')}, prev_hash, hash) VALUES (${V1.map(() => '?').join(', ')}, ?, ?)`).run(...V1.map((c) => forged[c]), before['hash'], hash);
    });
    expect(await problemOf(built)).toMatchObject({ kind: 'inserted', id: 2101, ts: new Date(ts).toISOString() });
  });

  it('catches an entry added without a hash, newest entries removed, and a checkpoint that was changed or signed by another key', async () => {
    const built = await smallLog();
    tamper(built, (db) => db.prepare("INSERT INTO events (id, ts, event, user) VALUES (3501, ?, 'granted', 'ghost')").run(built.toMs + 1));
    expect(await problemOf(built)).toMatchObject({ kind: 'inserted', id: 3501 });
    tamper(built, (db) => db.prepare('DELETE FROM events WHERE id > 3400').run());
    expect(await problemOf(built)).toMatchObject({ kind: 'removed', id: 3500 });

    const other = await smallLog();
    tamper(other, (db) => db.prepare('UPDATE log_checkpoints SET count = count + 1 WHERE event_id = 2000').run());
    expect(await problemOf(other)).toMatchObject({ kind: 'checkpoint', id: 2000 });

    const third = await smallLog();
    const stranger = await newEd25519KeyPair();
    const keyFile = join(tempDir(), 'stranger.jwk');
    writeFileSync(keyFile, JSON.stringify(stranger.publicJwk));
    const r = await verifyCli(third, '--public-key', keyFile);
    expect(r.code).toBe(1);
    expect(r.err).toContain('LOG_TAMPERED');
    expect(r.err).toMatch(/signed by key \S+, not by the server key/);
    // The server's own public key, given apart from the data directory, verifies.
    const publicFile = join(tempDir(), 'server-public.jwk');
    const { d: _d, ...pub } = readJwkFile(join(third.dataDir, 'server-key.jwk'), 'private');
    writeFileSync(publicFile, JSON.stringify(pub));
    expect((await verifyCli(third, '--public-key', publicFile)).code).toBe(0);
  });
});

describe('lease-log retention', () => {
  it('prunes in small slices between which lease work runs, exports first, and keeps verify passing', async () => {
    const built = await buildLog({ entries: 6000, dataDir: join(tempDir(), 'data'), stepMs: 5 * 60_000 });
    const days = Math.round((built.toMs - built.fromMs) / DAY);
    expect(days).toBeGreaterThanOrEqual(10);
    const exportDir = join(tempDir(), 'exports');
    const config = loadConfig({ env: {}, flags: { dataDir: built.dataDir, 'leaseLog.retentionDays': 5, 'leaseLog.exportDir': exportDir } });
    const store = new SqliteLeaseStore(config.dbFile);
    store.enableLogCheckpoints(await logChainOptions(config, readJwkFile(config.serverKeyFile, 'private')));
    const clock = new FakeClock(built.toMs + 60_000);
    const retention = new LogRetention(store, clock, silentLogger(), config.leaseLog, 200);
    const cutoff = clock.now() - 5 * DAY;
    const oldBefore = (await store.queryEvents({ untilMs: cutoff })).length;
    expect(oldBefore).toBeGreaterThan(1000);

    // While the run goes on, other work gets turns: it sees the log part-pruned and still verifiable,
    // and appends entries of its own in between.
    const key = readJwkFile(config.serverKeyFile, 'private');
    const verifier = logVerifier({ ...key, kid: await thumbprint(key) });
    const seen: number[] = [];
    let midway: ReturnType<SqliteLeaseStore['verifyLog']> | null = null;
    let turns = 0;
    const run = retention.run();
    await new Promise<void>((resolve, reject) => {
      const turn = async () => {
        turns++;
        const left = (await store.queryEvents({ untilMs: cutoff })).length;
        seen.push(left);
        if (left > 0 && left < oldBefore && midway === null) {
          midway = store.verifyLog(verifier);
          await store.appendEvent({ ts: clock.now(), event: 'server-started' });
        }
        if (left === 0 || turns > 1000) resolve();
        else setImmediate(() => void turn().catch(reject));
      };
      setImmediate(() => void turn().catch(reject));
    });
    const result = await run;
    expect(result.pruned).toBe(oldBefore);
    // Slices of at most 200 entries, each seen from outside.
    const distinct = [...new Set(seen)];
    expect(distinct.length).toBeGreaterThan(oldBefore / 200 - 2);
    expect(midway).toMatchObject({ ok: true });
    store.close();

    // The export holds exactly what went, mode 0600.
    const files = readdirSync(exportDir);
    expect(files).toHaveLength(1);
    const exported = readFileSync(join(exportDir, files[0]!), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: number; ts: string });
    expect(exported).toHaveLength(oldBefore);
    expect(exported[0]!.id).toBe(1);
    expect(exported.every((e) => Date.parse(e.ts) < cutoff)).toBe(true);
    expect(statSync(join(exportDir, files[0]!)).mode & 0o777).toBe(0o600);

    const report = await verifyLeaseLog(config);
    expect(report).toMatchObject({ ok: true, prunedBefore: oldBefore + 1, first: { id: oldBefore + 1 } });
    const text = await verifyCli(built);
    expect(text.code, text.err).toBe(0);
    expect(text.out).toContain(`entries before #${oldBefore + 1} were pruned by retention`);
    const pruned = (await cli(['log', '--data-dir', built.dataDir, '--event', 'log-pruned', '--json'])).out;
    expect(JSON.parse(pruned)).toMatchObject({ event: 'log-pruned', message: expect.stringContaining(`entries before #${oldBefore + 1}`) });

    // Removing more than retention did is not pruning.
    tamper(built, (db) => db.prepare('DELETE FROM events WHERE id < ?').run(oldBefore + 50));
    expect(await problemOf(built)).toMatchObject({ kind: 'removed', id: oldBefore + 50 });
  });

  it('exports each entry once when runs are cut short between export and prune, or part-way through pruning', async () => {
    const built = await buildLog({ entries: 3000, dataDir: join(tempDir(), 'data'), stepMs: 5 * 60_000 });
    const exportDir = join(tempDir(), 'exports');
    const config = loadConfig({ env: {}, flags: { dataDir: built.dataDir, 'leaseLog.retentionDays': 3, 'leaseLog.exportDir': exportDir } });
    const store = new SqliteLeaseStore(config.dbFile);
    store.enableLogCheckpoints(await logChainOptions(config, readJwkFile(config.serverKeyFile, 'private')));
    const clock = new FakeClock(built.toMs + 60_000);
    const exportedIds = () =>
      readdirSync(exportDir)
        .filter((f) => f.endsWith('.jsonl'))
        .flatMap((f) => readFileSync(join(exportDir, f), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { id: number }).id));
    // Killed after the export, before pruning (stopped as a stopping server stops it): the export is written, nothing pruned.
    const first = new LogRetention(store, clock, silentLogger(), config.leaseLog, 100);
    const cut = first.run();
    void first.stop();
    expect(await cut).toMatchObject({ pruned: 0 });
    const once = exportedIds();
    expect(once.length).toBeGreaterThan(500);
    // A temporary file a run killed while writing left behind is no export and blocks nothing.
    writeFileSync(join(exportDir, `${readdirSync(exportDir)[0]!}.partial`), '{"id":1}\n');
    // An hour later (a dozen more entries are old enough): cut again part-way through pruning.
    clock.advance(3_600_000);
    const second = new LogRetention(store, clock, silentLogger(), config.leaseLog, 100);
    const part = second.run();
    await new Promise<void>((resolve, reject) => {
      const look = async () => ((await store.queryEvents({ first: 1 }))[0]!.id > 300 ? resolve() : setImmediate(() => void look().catch(reject)));
      setImmediate(() => void look().catch(reject));
    });
    await second.stop();
    const partial = await part;
    expect(partial.pruned).toBeGreaterThan(0);
    expect(partial.pruned).toBeLessThan(once.length);
    // Another hour: the rest goes. Every entry pruned is in exactly one export file, none twice.
    clock.advance(3_600_000);
    await new LogRetention(store, clock, silentLogger(), config.leaseLog, 100).run();
    const firstKept = (await store.queryEvents({ first: 1 }))[0]!.id;
    store.close();
    const ids = exportedIds();
    expect(ids.length).toBeGreaterThan(once.length);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort((x, y) => x - y)).toEqual(Array.from({ length: firstKept - 1 }, (_, i) => i + 1));
    expect(readdirSync(exportDir).filter((f) => f.endsWith('.jsonl'))).toHaveLength(3);
  });

  it('prunes nothing when the export cannot be written', async () => {
    const built = await buildLog({ entries: 2000, dataDir: join(tempDir(), 'data'), stepMs: 10 * 60_000 });
    const blocker = join(tempDir(), 'not-a-dir');
    writeFileSync(blocker, 'a file where the export folder should be');
    const config = loadConfig({ env: {}, flags: { dataDir: built.dataDir, 'leaseLog.retentionDays': 3, 'leaseLog.exportDir': join(blocker, 'exports') } });
    const store = new SqliteLeaseStore(config.dbFile);
    const before = (await store.queryEvents({})).length;
    const retention = new LogRetention(store, new FakeClock(built.toMs), silentLogger(), config.leaseLog);
    await expect(retention.run()).rejects.toMatchObject({ code: 'EXPORT_FAILED', message: expect.stringContaining('leaseLog.exportDir') });
    expect(await store.queryEvents({})).toHaveLength(before);
    store.close();
  });
});

describe('entries recorded before the chain', () => {
  it('are chained once at the first start after the upgrade, and verify', async () => {
    const dir = tempDir();
    const built = await buildLog({ entries: 10, dataDir: join(dir, 'data') });
    // A database as floatd left it before migration 004, with entries of its own (including awkward text).
    const file = join(dir, 'old.db');
    const old = new Database(file);
    migrate(old, loadMigrations().filter((m) => m.version < 4));
    const insert = old.prepare('INSERT INTO events (ts, event, user, host, message) VALUES (?, ?, ?, ?, ?)');
    for (let i = 0; i < 50; i++) insert.run(1_700_000_000_000 + i * 1000, 'granted', `user${i}\n\u001b`, 'h"\\', i % 2 ? null : 'é 東京 😀');
    old.close();
    const store = new SqliteLeaseStore(file);
    const chained = new Database(file, { readonly: true });
    const first = chained.prepare('SELECT prev_hash, hash FROM events ORDER BY id LIMIT 1').get() as { prev_hash: string; hash: string };
    expect(first.prev_hash).toBe(GENESIS);
    expect(chained.prepare('SELECT COUNT(*) AS n FROM events WHERE hash IS NULL').get()).toEqual({ n: 0 });
    chained.close();
    await store.appendEvent({ ts: 1_800_000_000_000, event: 'server-started' });
    const config = loadConfig({ env: {}, flags: { dataDir: built.dataDir } });
    const verifier = logVerifier({ ...readJwkFile(config.serverKeyFile, 'private'), kid: 'k' });
    expect(store.verifyLog(verifier)).toMatchObject({ ok: true, entries: 51, first: { id: 1 }, checkpoints: 0, unsigned: 51 });

    // Another process appending to the same log (floatd license add beside a running server), a rolled-back
    // transaction, and text SQLite cannot keep as given (a lone surrogate): the chain stays whole.
    const other = new SqliteLeaseStore(file);
    for (let i = 0; i < 5; i++) {
      await store.appendEvent({ ts: 1_800_000_000_000 + i, event: 'granted', user: `a${i}` });
      await other.appendEvent({ ts: 1_800_000_000_000 + i, event: 'key-added', message: `b${i}` });
    }
    expect(() => store.transact((tx) => {
      tx.appendEvent({ ts: 1_800_000_000_100, event: 'denied', user: 'rolled-back' });
      throw new Error('abandoned');
    })).toThrow('abandoned');
    await store.appendEvent({ ts: 1_800_000_000_200, event: 'denied', user: 'lone\ud800surrogate' });
    other.close();
    // Repeated identical denials: one chained entry whose count is raised in place, which verify accepts.
    const window = { sinceMs: 1_800_000_000_000, perAddress: 10, overflowMessage: 'too many' };
    const denial = { ts: 1_800_000_000_300, event: 'denied' as const, user: 'eve', remote: '10.0.0.9', listener: 'tcp', code: 'NO_FREE_SEATS' };
    for (let i = 0; i < 3; i++) store.transact((tx) => tx.recordDenial(denial, window));
    expect((await store.queryEvents({ user: 'eve' })).map((e) => e.count)).toEqual([3]);
    expect(store.verifyLog(verifier)).toMatchObject({ ok: true, entries: 63 });
    expect(await store.queryEvents({ user: 'lone\ufffdsurrogate' })).toHaveLength(1);
    store.close();
  });
});

describe('floatd log verify on a long log', () => {
  it('checks ranges in parallel, and still locates a change in any of them', async () => {
    const built = await buildLog({ entries: 120_000, dataDir: join(tempDir(), 'data') });
    // In the last range, and right at a seam between ranges (the machine has 2 to 4 of them), the second
    // change made beside the first. Each log in a data directory of its own, so the three runs go at once.
    const copy = () => {
      const dataDir = join(tempDir(), 'data');
      cpSync(built.dataDir, dataDir, { recursive: true });
      return { ...built, dataDir };
    };
    const changed = [110_001, 60_001].map((_, i, ids) => {
      const log = copy();
      for (const id of ids.slice(0, i + 1)) tamper(log, (db) => db.prepare("UPDATE events SET message = 'edited' WHERE id = ?").run(id));
      return log;
    });
    const verify = (log: BuiltLog) => floatdAsync(['log', 'verify', '--data-dir', log.dataDir, '--json']);
    const [ok, ...problems] = await Promise.all([verify(built), ...changed.map(verify)]);
    expect(ok!.code, ok!.err).toBe(0);
    expect(JSON.parse(ok!.out)).toMatchObject({ ok: true, entries: 120_000, checkpoints: 120, unsigned: 0, first: { id: 1 }, last: { id: 120_000 } });
    for (const [i, id] of [110_001, 60_001].entries()) {
      expect(problems[i]!.code).toBe(1);
      expect(JSON.parse(problems[i]!.out)).toMatchObject({ ok: false, problem: { kind: 'changed', id } });
    }
  }, 120_000);
});

describe('the running server', () => {
  it('prunes in the background, checkpoints on its timer and when it stops, and the log verifies throughout', async () => {
    const now = Date.UTC(2026, 5, 1, 12, 0);
    // About a week of history, up to a day or so before the server starts.
    const built = await buildLog({ entries: 4000, dataDir: join(tempDir(), 'data'), startMs: now - 8 * DAY, stepMs: 60_000 });
    expect(built.toMs).toBeLessThan(now - DAY);
    const clock = new FakeClock(now);
    const s = await startServer({ clock, dataDir: built.dataDir, evaluation: true, flags: { 'leaseLog.retentionDays': 3, 'leaseLog.checkpointMinutes': 5 } });
    const store = s.floatd.store as SqliteLeaseStore;
    const cutoff = now - 3 * DAY;
    const old = (await store.queryEvents({ untilMs: cutoff })).length;
    expect(old).toBeGreaterThan(1000);
    // The first maintenance tick starts a pruning run; it goes on in the background.
    clock.advance(1000);
    for (let i = 0; i < 200 && (await store.queryEvents({ untilMs: cutoff, limit: 1 })).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    await s.floatd.retention.idle();
    expect(await store.queryEvents({ untilMs: cutoff })).toEqual([]);
    expect(await store.queryEvents({ events: ['log-pruned'] })).toHaveLength(1);
    expect(await verifyLeaseLog(s.config)).toMatchObject({ ok: true, prunedBefore: old + 1 });

    // A grant, then five quiet minutes: the timer signs a checkpoint of it.
    const alice = await s.connect('alice');
    const lease = leaseOf(await alice.request('acquire'));
    const head = (await store.queryEvents({ limit: 1 }))[0]!;
    expect(head).toMatchObject({ event: 'granted', leaseId: lease.id });
    expect(store.latestCheckpoint()?.eventId).toBeLessThan(head.id);
    clock.advance(5 * 60_000 + 1000);
    await s.settle();
    expect(store.latestCheckpoint()?.eventId).toBe(head.id);

    const config = s.config;
    await s.stop();
    const report = await verifyLeaseLog(config);
    expect(report).toMatchObject({ ok: true, unsigned: 0 });
    expect(report.lastCheckpoint!.eventId).toBe(report.last!.id);
  }, 60_000);
});

describe('a server on the real clocks', () => {
  it('writes a log that verifies: entry times are whole milliseconds, as the chain encodes them', async () => {
    const s = await startServer({ evaluation: true });
    const c = await s.connect('alice');
    for (let i = 0; i < 20; i++) {
      const lease = leaseOf(await c.request('acquire', { product: 'evaluation' }));
      expect((await c.request('release', { lease: lease.id })).ok).toBe(true);
    }
    await s.stop();
    const times = new Database(s.config.dbFile, { readonly: true }).prepare('SELECT ts FROM events').pluck().all() as number[];
    expect(times.every((t) => Number.isInteger(t))).toBe(true);
    const r = await cli(['log', 'verify', '--data-dir', s.config.dataDir]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });
});
