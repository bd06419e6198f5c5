import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readJwkFile, thumbprint } from '../../src/adapters/crypto/keys.js';
import { logVerifier } from '../../src/adapters/crypto/log-signer.js';
import { entryHash } from '../../src/adapters/sqlite/log-chain.js';
import { SqliteLeaseStore } from '../../src/adapters/sqlite/sqlite-lease-store.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { FakeClock } from '../support/fake-clock.js';
import { tempDir } from '../support/helpers.js';
import { call } from '../support/http.js';
import { cli, exited, floatd, killChildren, requireBuild, serve } from '../support/cli.js';
import { capturingLogger, leaseOf, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

const V1 = ['id', 'ts', 'event', 'pool_id', 'product', 'lease_id', 'user', 'host', 'instance', 'remote', 'listener', 'seats_in_use', 'seats_total', 'code', 'reason', 'message', 'actor'];

interface Verified {
  code: number | null;
  json: { ok: boolean; code: string | null; problem: { kind: string; id: number | null; detail: string } | null; uncleanStops: Array<{ startedId: number; lastId: number; restarted: { id: number } | null }>; lastCheckpoint: { eventId: number; headHash: string } | null; running: boolean };
}

async function verifyJson(dataDir: string, ...args: string[]): Promise<Verified> {
  const r = await cli(['log', 'verify', '--data-dir', dataDir, '--json', ...args]);
  return { code: r.code, json: JSON.parse(r.out) as Verified['json'] };
}

/** The database file itself, as someone with write access to it (and not the server key) would change it. */
function tamper(dataDir: string, fn: (db: Database.Database) => void): void {
  const db = new Database(join(dataDir, 'floatd.db'));
  fn(db);
  db.close();
}

/** Changes one entry and recomputes every hash from there on with the chain's own encoding, as a forger would. */
function rewriteFrom(db: Database.Database, id: number, change: Record<string, unknown>): void {
  const row = (n: number) => db.prepare('SELECT * FROM events WHERE id = ?').get(n) as Record<string, unknown>;
  const sets = Object.keys(change).map((c) => `${c} = ?`).join(', ');
  db.prepare(`UPDATE events SET ${sets} WHERE id = ?`).run(...Object.values(change), id);
  let prev = row(id)['prev_hash'] as string;
  const last = (db.prepare('SELECT MAX(id) AS n FROM events').get() as { n: number }).n;
  for (let n = id; n <= last; n++) {
    const r = row(n);
    const hash = entryHash(V1.map((c) => r[c]), [], prev);
    db.prepare('UPDATE events SET prev_hash = ?, hash = ? WHERE id = ?').run(prev, hash, n);
    prev = hash;
  }
}

/** `n` grants and releases through the real server: 2n entries. */
async function traffic(s: TestServer, clock: FakeClock, n: number, stepMs = 1000): Promise<void> {
  const c = await s.connect('alice');
  for (let i = 0; i < n; i++) {
    const lease = leaseOf(await c.request('acquire', { product: 'evaluation' }));
    clock.advance(stepMs);
    expect((await c.request('release', { lease: lease.id })).ok).toBe(true);
  }
  c.close();
}

function checkpointAt(dataDir: string, eventId: number): string | undefined {
  const db = new Database(join(dataDir, 'floatd.db'), { readonly: true });
  try {
    return (db.prepare('SELECT head_hash FROM log_checkpoints WHERE event_id = ?').get(eventId) as { head_hash: string } | undefined)?.head_hash;
  } finally {
    db.close();
  }
}

function idsOf(dataDir: string, event: string): number[] {
  const db = new Database(join(dataDir, 'floatd.db'), { readonly: true });
  try {
    return db.prepare('SELECT id FROM events WHERE event = ? ORDER BY id').pluck().all(event) as number[];
  } finally {
    db.close();
  }
}

describe('checkpoints the server must have signed', () => {
  it('status and the dashboard\'s health panel (GET /v1/admin/server) give the newest checkpoint as the anchor', async () => {
    const clock = new FakeClock(Date.UTC(2026, 5, 1, 9, 0));
    const s = await startServer({ clock, evaluation: true, flags: { 'http.listen': ['127.0.0.1:0'] } });
    const dataDir = s.config.dataDir;
    const web = s.floatd.listenerStatus().find((l) => l.scheme === 'http')!;
    const token = readFileSync(s.config.adminTokenFile, 'utf8').trim();
    const health = async () => (await call(`http://127.0.0.1:${web.port}/v1/admin/server`, 'GET', undefined, { headers: { authorization: `Bearer ${token}` } })).body['logAnchor'];
    const started = idsOf(dataDir, 'server-started')[0]!;
    expect(await health()).toEqual({ entry: started, hash: checkpointAt(dataDir, started), signedAt: new Date(clock.now()).toISOString() });
    expect((await s.floatd.status()).logAnchor).toMatchObject({ entry: started, hash: checkpointAt(dataDir, started) });
    // New entries, then the timer's checkpoint ten minutes on: the anchor moves with it.
    await traffic(s, clock, 2);
    clock.advance(10 * 60_000 + 1000);
    const newest = (await verifyJson(dataDir)).json.lastCheckpoint!;
    expect(newest.eventId).toBeGreaterThan(started);
    expect(await health()).toMatchObject({ entry: newest.eventId, hash: newest.headHash });
    const text = await cli(['status', '--data-dir', dataDir]);
    expect(text.out).toContain(`lease-log anchor: ${newest.headHash} (checkpoint of #${newest.eventId}`);
    await s.stop();
  });

  it('signs its start and stop entries, and gives their hashes in the start and stop log lines', async () => {
    const clock = new FakeClock(Date.UTC(2026, 5, 1, 9, 0));
    const { logger, lines } = capturingLogger();
    const s = await startServer({ clock, evaluation: true, logger });
    await traffic(s, clock, 3);
    const dataDir = s.config.dataDir;
    await s.stop();
    const [started] = idsOf(dataDir, 'server-started');
    const [stopped] = idsOf(dataDir, 'server-stopped');
    const startLine = lines.find((l) => l['msg'] === 'started')!;
    const stopLine = lines.find((l) => l['msg'] === 'stopped')!;
    expect(startLine).toMatchObject({ level: 30, logAnchorEntry: started, logAnchor: checkpointAt(dataDir, started!) });
    expect(stopLine).toMatchObject({ level: 30, logAnchorEntry: stopped, logAnchor: checkpointAt(dataDir, stopped!) });
    expect(startLine['logAnchor']).toMatch(/^[0-9a-f]{64}$/);
    const v = await verifyJson(dataDir);
    expect(v.code).toBe(0);
    expect(v.json).toMatchObject({ ok: true, code: null, uncleanStops: [], lastCheckpoint: { eventId: stopped, headHash: stopLine['logAnchor'] } });
  });

  it('catches the rewrite from the issue: checkpoints deleted, entry #42 edited, every hash after it recomputed', async () => {
    const clock = new FakeClock(Date.UTC(2026, 5, 1, 9, 0));
    const s = await startServer({ clock, evaluation: true });
    await traffic(s, clock, 30);
    const dataDir = s.config.dataDir;
    const config = s.config;
    await s.stop();
    expect((await verifyJson(dataDir)).code).toBe(0);

    // Only the checkpoints after #42 removed, #42 rewritten: the stop's checkpoint is missing.
    tamper(dataDir, (db) => {
      db.prepare('DELETE FROM log_checkpoints WHERE event_id >= 42').run();
      rewriteFrom(db, 42, { user: 'mallory' });
    });
    const key = readJwkFile(config.serverKeyFile, 'private');
    const store = new SqliteLeaseStore(config.dbFile);
    // The chain itself is consistent again: this is what passed before.
    expect(store.verifyLog(logVerifier({ ...key, kid: await thumbprint(key) }))).toMatchObject({ ok: true });
    store.close();
    const partial = await verifyJson(dataDir);
    expect(partial.code).toBe(1);
    expect(partial.json).toMatchObject({ ok: false, code: 'LOG_UNANCHORED', problem: { kind: 'unanchored', id: idsOf(dataDir, 'server-stopped')[0] } });

    // Every checkpoint removed, as in the report.
    tamper(dataDir, (db) => db.prepare('DELETE FROM log_checkpoints').run());
    const r = await cli(['log', 'verify', '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^floatd log: LOG_UNANCHORED: unanchored: the log holds \d+ entries and no signed checkpoint/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('fails a run whose start checkpoint is missing', async () => {
    const clock = new FakeClock(Date.UTC(2026, 5, 1, 9, 0));
    const dataDir = join(tempDir(), 'data');
    for (let run = 0; run < 2; run++) {
      const s = await startServer({ clock, evaluation: true, dataDir });
      await traffic(s, clock, 3);
      await s.stop();
      clock.advance(3_600_000);
    }
    expect((await verifyJson(dataDir)).code).toBe(0);
    const second = idsOf(dataDir, 'server-started')[1]!;
    tamper(dataDir, (db) => db.prepare('DELETE FROM log_checkpoints WHERE event_id = ?').run(second));
    const v = await verifyJson(dataDir);
    expect(v.code).toBe(1);
    expect(v.json).toMatchObject({ code: 'LOG_UNANCHORED', problem: { kind: 'unanchored', id: second } });
    expect(v.json.problem!.detail).toContain(`started at #${second}`);
  });

  it('fails an unsigned tail longer than one interval, in entries or in entry time, even while the server runs', async () => {
    const clock = new FakeClock(Date.UTC(2026, 5, 1, 9, 0));
    const s = await startServer({ clock, evaluation: true, flags: { 'leaseLog.checkpointEntries': 20 } });
    const dataDir = s.config.dataDir;
    const started = idsOf(dataDir, 'server-started')[0]!;
    await traffic(s, clock, 25);
    // A live server's tail of less than one interval is fine.
    const live = await verifyJson(dataDir);
    expect(live.code).toBe(0);
    expect(live.json).toMatchObject({ ok: true, running: true });
    // The checkpoints after the start removed: 50 entries unsigned, more than the 20 the server recorded it signs after.
    tamper(dataDir, (db) => db.prepare('DELETE FROM log_checkpoints WHERE event_id > ?').run(started));
    const long = await verifyJson(dataDir);
    expect(long.code).toBe(1);
    expect(long.json).toMatchObject({ code: 'LOG_UNANCHORED', problem: { kind: 'unanchored', id: started + 1 } });
    expect(long.json.problem!.detail).toMatch(/^\d+ entries after the last signed checkpoint \(#\d+\).*more than one checkpoint interval \(20 entries or 10 min\)/);
    await s.stop();

    // In entry time: few entries, but 15 minutes of them past the last checkpoint.
    const t = await startServer({ clock, evaluation: true, dataDir });
    await traffic(t, clock, 1);
    clock.advance(15 * 60_000);
    await traffic(t, clock, 1);
    const second = idsOf(dataDir, 'server-started')[1]!;
    tamper(dataDir, (db) => db.prepare('DELETE FROM log_checkpoints WHERE event_id > ?').run(second));
    const slow = await verifyJson(dataDir);
    expect(slow.code).toBe(1);
    expect(slow.json.problem!.detail).toMatch(/recorded over 1[56](\.\d)? min: more than one checkpoint interval/);
    await t.stop();
  });

  it('--anchor passes with a checkpoint hash the log holds, and fails with one it does not (a made-up one, or a tail cut off with its checkpoints)', async () => {
    const clock = new FakeClock(Date.UTC(2026, 5, 1, 9, 0));
    const dataDir = join(tempDir(), 'data');
    const s = await startServer({ clock, evaluation: true, dataDir });
    await traffic(s, clock, 2);
    await s.stop();
    // The anchor as status shows it, text and JSON alike.
    const status = await cli(['status', '--data-dir', dataDir, '--json']);
    const anchor = (JSON.parse(status.out) as { logAnchor: { entry: number; hash: string } }).logAnchor;
    expect(anchor.entry).toBe(idsOf(dataDir, 'server-stopped')[0]);
    expect((await cli(['status', '--data-dir', dataDir])).out).toContain(`lease-log anchor: ${anchor.hash} (checkpoint of #${anchor.entry}`);

    const ok = await cli(['log', 'verify', '--data-dir', dataDir, '--anchor', anchor.hash.toUpperCase()]);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toContain(`anchor ${anchor.hash} found: the checkpoint of #${anchor.entry}`);
    const madeUp = 'ab'.repeat(32);
    const bad = await cli(['log', 'verify', '--data-dir', dataDir, '--anchor', madeUp]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain(`LOG_UNANCHORED: anchor-not-found: no signed checkpoint in the log has the hash ${madeUp}`);
    expect((await cli(['log', 'verify', '--data-dir', dataDir, '--anchor', 'abc'])).code).toBe(2);

    // A second run, then the whole of it cut off with its checkpoints: the log alone still verifies
    // (it ends like a server that crashed), but the anchor the second stop gave does not.
    const t = await startServer({ clock, evaluation: true, dataDir });
    await traffic(t, clock, 2);
    await t.stop();
    const later = (JSON.parse((await cli(['status', '--data-dir', dataDir, '--json'])).out) as { logAnchor: { hash: string } }).logAnchor.hash;
    const second = idsOf(dataDir, 'server-started')[1]!;
    tamper(dataDir, (db) => {
      db.prepare('DELETE FROM events WHERE id > ?').run(second);
      db.prepare('DELETE FROM log_checkpoints WHERE event_id > ?').run(second);
    });
    const cut = await verifyJson(dataDir);
    expect(cut.code).toBe(0);
    expect(cut.json.uncleanStops).toEqual([expect.objectContaining({ startedId: second, restarted: null })]);
    const caught = await verifyJson(dataDir, '--anchor', later);
    expect(caught.code).toBe(1);
    expect(caught.json).toMatchObject({ code: 'LOG_UNANCHORED', problem: { kind: 'anchor-not-found' } });
    expect((await verifyJson(dataDir, '--anchor', anchor.hash)).code).toBe(0);
  });
});

/** Resolves once the spawned server's log has its start line (signal handlers are in place by then). */
async function startedLine(server: { log: () => string }): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const line = server.log().split('\n').find((l) => l.includes('"msg":"started"'));
    if (line !== undefined) return line;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no start line: ${server.log()}`);
}

describe('a server killed with kill -9', () => {
  it('is reported as an unclean stop, not as tampering; its next start signs the entries it left unsigned', async () => {
    const dataDir = join(tempDir(), 'data');
    const first = await serve(['--data-dir', dataDir]);
    expect(await startedLine(first)).toMatch(/"logAnchor":"[0-9a-f]{64}","logAnchorEntry":\d+,"msg":"started"/);
    const c = await TcpTransport.connect(`127.0.0.1:${first.port}`);
    expect((await c.request('hello', { v: 1, client: { user: 'alice', host: 'h', instance: 'i' } })).ok).toBe(true);
    for (let i = 0; i < 3; i++) expect((await c.request('acquire', { product: 'evaluation' })).ok).toBe(true);
    c.close();
    first.child.kill('SIGKILL');
    await exited(first.child);

    const crashed = await verifyJson(dataDir);
    expect(crashed.code).toBe(0);
    expect(crashed.json).toMatchObject({ ok: true, running: false, uncleanStops: [{ startedId: idsOf(dataDir, 'server-started')[0], restarted: null }] });
    const text = await cli(['log', 'verify', '--data-dir', dataDir]);
    expect(text.out).toMatch(/ended without a clean stop \(a crash, kill -9 or power loss\), after entry #\d+; no start has signed its last entries yet/);

    const again = await serve(['--data-dir', dataDir]);
    await startedLine(again);
    again.child.kill('SIGTERM');
    expect((await exited(again.child)).code).toBe(0);
    const stopLine = again.log().split('\n').find((l) => l.includes('"msg":"stopped"'))!;
    const restarted = await verifyJson(dataDir);
    expect(restarted.code).toBe(0);
    expect(restarted.json.uncleanStops).toEqual([expect.objectContaining({ restarted: expect.objectContaining({ id: idsOf(dataDir, 'server-started')[1] }) })]);
    expect(JSON.parse(stopLine)).toMatchObject({ logAnchor: restarted.json.lastCheckpoint!.headHash });
  }, 60_000);
});
