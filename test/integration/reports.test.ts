import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLeaseStore } from '../../src/adapters/sqlite/sqlite-lease-store.js';
import { usageReport, usersReport } from '../../src/app/reports.js';
import { csvCell } from '../../src/cli/report.js';
import { CHILD_ENV, cli, MAIN, requireBuild } from '../support/cli.js';
import { client, FakeClock, tempDir } from '../support/helpers.js';
import { startServer, type TestServer } from '../support/server.js';

const MIN = 60_000;
/** Monday 2026-01-05 00:00 UTC. */
const T0 = Date.UTC(2026, 0, 5);
const at = (minutes: number) => T0 + minutes * MIN;

/**
 * Two seats of cad, hour buckets 00:00-03:00 UTC:
 *   00:00 alice/a1 granted         00:30 bob/b1 granted
 *   00:40 carol/c1 denied          00:42 carol/c1 denied
 *   00:45 bob/b1 releases          00:46 carol/c1 granted (answers 00:42, not 00:40: 6 min > 5)
 *   01:30 dave/d1 denied (never granted: a true denial)
 *   02:10 alice/a1 releases        02:30 carol/c2 granted (carol holds two)
 *   carol's leases are still open at 03:00.
 */
async function scenario(): Promise<{ server: TestServer; clock: FakeClock }> {
  const clock = new FakeClock(T0);
  const server = await startServer({ seats: 2, clock, flags: { leaseSeconds: 4 * 3600 } });
  const leases = server.floatd.leases;
  const to = (minutes: number) => clock.advance(at(minutes) - clock.now());
  const grant = async (user: string, instance: string) => {
    const o = await leases.acquire(client(user, instance), 'cad');
    if (!o.ok) throw new Error(`${user}/${instance} was denied: ${o.message}`);
    return { id: o.lease.id, proof: { secret: o.secret! } };
  };
  const deny = async (user: string, instance: string) => expect(await leases.acquire(client(user, instance), 'cad')).toMatchObject({ ok: false, code: 'NO_FREE_SEATS' });
  const alice = await grant('alice', 'a1');
  to(30);
  const bob = await grant('bob', 'b1');
  to(40);
  await deny('carol', 'c1');
  to(42);
  await deny('carol', 'c1');
  to(45);
  expect(await leases.release({ user: 'bob', instance: 'b1' }, bob.id, bob.proof)).toMatchObject({ ok: true, released: true });
  to(46);
  await grant('carol', 'c1');
  to(90);
  await deny('dave', 'd1');
  to(130);
  expect(await leases.release({ user: 'alice', instance: 'a1' }, alice.id, alice.proof)).toMatchObject({ ok: true, released: true });
  to(150);
  await grant('carol', 'c2');
  to(190);
  return { server, clock };
}

let server: TestServer | undefined;

afterEach(async () => {
  await server?.stop();
  server = undefined;
});

beforeAll(() => requireBuild());

describe('floatd report', () => {
  it('gives the figures computed by hand for a recorded scenario', async () => {
    const s = await scenario();
    server = s.server;
    const store = server.floatd.store as unknown as SqliteLeaseStore;
    const query = { fromMs: at(0), toMs: at(180), trueDenialMs: 5 * MIN, utc: true, nowMs: s.clock.now() };
    const usage = usageReport(store, { ...query, by: 'hour' });
    const row = (start: number, fields: object) => expect.objectContaining({ start: at(start), end: at(start + 60), ...fields });
    expect(usage.buckets).toEqual([
      // 30 min × 1 + 15 × 2 + 1 × 1 + 14 × 2 = 89 seat-minutes in 60.
      row(0, { peak: 2, average: 1.48, poolSize: 2, utilisationPercent: 74.2, grants: 3, denials: 2, trueDenials: 1, uniqueUsers: 3, denialsBy: [{ code: 'NO_FREE_SEATS', reason: null, count: 2 }] }),
      row(60, { peak: 2, average: 2, poolSize: 2, utilisationPercent: 100, grants: 0, denials: 1, trueDenials: 1, uniqueUsers: 2 }),
      // 10 × 2 + 20 × 1 + 30 × 2 = 100 seat-minutes in 60.
      row(120, { peak: 2, average: 1.67, poolSize: 2, utilisationPercent: 83.3, grants: 1, denials: 0, trueDenials: 0, uniqueUsers: 2, denialsBy: [] }),
    ]);
    // 309 seat-minutes in 180.
    expect(usage.total).toMatchObject({ start: at(0), end: at(180), peak: 2, average: 1.72, poolSize: 2, utilisationPercent: 85.8, grants: 4, denials: 3, trueDenials: 2, uniqueUsers: 3 });

    const users = usersReport(store, query);
    expect(users.users).toEqual([
      { user: 'carol', usageHours: 2.73, peakConcurrent: 2, grants: 2, denials: 2, trueDenials: 1 }, // 134 + 30 min
      { user: 'alice', usageHours: 2.17, peakConcurrent: 1, grants: 1, denials: 0, trueDenials: 0 }, // 130 min
      { user: 'bob', usageHours: 0.25, peakConcurrent: 1, grants: 1, denials: 0, trueDenials: 0 },
      { user: 'dave', usageHours: 0, peakConcurrent: 0, grants: 0, denials: 1, trueDenials: 1 },
    ]);
    expect(usersReport(store, { ...query, top: 2 }).users.map((u) => u.user)).toEqual(['carol', 'alice']);

    // A range starting while leases are open counts them from its start; one ending while they are open, to its end.
    const middle = usageReport(store, { ...query, fromMs: at(60), toMs: at(150), by: 'day' });
    // 01:00-02:10 two seats (140), 02:10-02:30 one seat (20): 160 seat-minutes in 90.
    expect(middle.total).toMatchObject({ peak: 2, average: 1.78, grants: 0, denials: 1, trueDenials: 1, uniqueUsers: 2 });
    // One user's own figures.
    expect(usageReport(store, { ...query, by: 'hour', user: 'carol' }).total).toMatchObject({ peak: 2, average: 0.91, grants: 2, denials: 2, trueDenials: 1, uniqueUsers: 1 });
    // A longer window for true denials answers carol's first denial too.
    expect(usageReport(store, { ...query, by: 'hour', trueDenialMs: 10 * MIN }).total.trueDenials).toBe(1);

    // An entry standing for repeated requests (the log's count column) counts as that many.
    const db = new Database(server.config.dbFile);
    try {
      const hasCount = (db.pragma('table_info(events)') as Array<{ name: string }>).some((c) => c.name === 'count');
      if (!hasCount) db.exec('ALTER TABLE events ADD COLUMN count INTEGER');
      db.prepare("UPDATE events SET count = 3 WHERE event = 'denied' AND user = 'dave'").run();
    } finally {
      db.close();
    }
    const counted = usageReport(store, { ...query, by: 'hour' });
    expect(counted.buckets[1]).toMatchObject({ denials: 3, trueDenials: 3, denialsBy: [{ code: 'NO_FREE_SEATS', reason: null, count: 3 }] });
    expect(counted.total).toMatchObject({ denials: 5, trueDenials: 4 });
    expect(usersReport(store, query).users.find((u) => u.user === 'dave')).toMatchObject({ denials: 3, trueDenials: 3 });

    // The running server computes reports in a worker thread on its own connection: the same figures.
    const runner = join(MAIN, '..', 'app', 'report-runner.js');
    const script = `import { runReport } from ${JSON.stringify(runner)};
      const report = await runReport({ dbFile: ${JSON.stringify(server.config.dbFile)}, kind: 'usage', query: ${JSON.stringify({ ...query, by: 'hour' })} }, null);
      process.stdout.write(JSON.stringify(report));`;
    const file = join(tempDir('floatd-report-worker-'), 'run.mjs');
    writeFileSync(file, script);
    const worker = spawnSync(process.execPath, [file], { encoding: 'utf8', env: CHILD_ENV });
    expect(worker.stderr).toBe('');
    expect(JSON.parse(worker.stdout)).toEqual(JSON.parse(JSON.stringify(counted)));
  });

  it('prints the same numbers as a table, CSV and JSON', async () => {
    const s = await scenario();
    server = s.server;
    // The command runs in this process, in the time zone TZ=UTC gives a process of its own.
    const run = async (...args: string[]) => {
      const zone = process.env['TZ'];
      process.env['TZ'] = 'UTC';
      try {
        const r = await cli(['report', ...args, '--from', new Date(at(0)).toISOString(), '--to', new Date(at(180)).toISOString(), '--data-dir', s.server.config.dataDir]);
        expect(r.err).toBe('');
        expect(r.code).toBe(0);
        return r.out;
      } finally {
        if (zone === undefined) delete process.env['TZ'];
        else process.env['TZ'] = zone;
      }
    };
    const json = JSON.parse(await run('usage', '--by', 'hour', '--json')) as { buckets: Array<Record<string, unknown>>; total: Record<string, unknown> };
    const csv = (await run('usage', '--by', 'hour', '--csv')).split('\n').map((l) => l.split(','));
    const table = (await run('usage', '--by', 'hour', '--table')).split('\n');
    expect(csv[0]).toEqual(['start', 'end', 'peak', 'average', 'poolSize', 'utilisationPercent', 'grants', 'denials', 'trueDenials', 'uniqueUsers', 'denialsBy', 'ungrantableSeats']);
    expect(json.buckets.map((b) => [b['start'], b['peak'], b['average'], b['utilisationPercent'], b['grants'], b['denials'], b['trueDenials'], b['uniqueUsers']])).toEqual([
      ['2026-01-05T00:00:00.000Z', 2, 1.48, 74.2, 3, 2, 1, 3],
      ['2026-01-05T01:00:00.000Z', 2, 2, 100, 0, 1, 1, 2],
      ['2026-01-05T02:00:00.000Z', 2, 1.67, 83.3, 1, 0, 0, 2],
    ]);
    expect(csv.slice(1).map((c) => [c[0], c[2], c[3], c[5], c[6], c[7], c[8], c[9]])).toEqual([
      ['2026-01-05T00:00:00.000Z', '2', '1.48', '74.2', '3', '2', '1', '3'],
      ['2026-01-05T01:00:00.000Z', '2', '2.00', '100.0', '0', '1', '1', '2'],
      ['2026-01-05T02:00:00.000Z', '2', '1.67', '83.3', '1', '0', '0', '2'],
      ['total', '2', '1.72', '85.8', '4', '3', '2', '3'],
    ]);
    expect(csv[1]![10]).toBe('NO_FREE_SEATS:2');
    expect(json.total).toMatchObject({ peak: 2, average: 1.72, utilisationPercent: 85.8, grants: 4, denials: 3, trueDenials: 2, uniqueUsers: 3 });
    expect(table[1]).toMatch(/^START\s+PEAK\s+AVERAGE\s+SEATS\s+UTIL\s+GRANTS\s+DENIALS\s+TRUE\s+USERS\s+DENIALS BY CODE\/REASON$/);
    expect(table.slice(2).map((l) => l.trimEnd().split(/\s{2,}/))).toEqual([
      ['2026-01-05 00:00', '2', '1.48', '2', '74.2%', '3', '2', '1', '3', 'NO_FREE_SEATS:2'],
      ['2026-01-05 01:00', '2', '2.00', '2', '100.0%', '0', '1', '1', '2', 'NO_FREE_SEATS:1'],
      ['2026-01-05 02:00', '2', '1.67', '2', '83.3%', '1', '0', '0', '2', ''],
      ['TOTAL', '2', '1.72', '2', '85.8%', '4', '3', '2', '3', 'NO_FREE_SEATS:3'],
    ].map((r) => (r.at(-1) === '' ? r.slice(0, -1) : r)));

    const usersJson = JSON.parse(await run('users', '--json')) as { users: Array<{ user: string; usageHours: number }> };
    const usersCsv = (await run('users', '--csv')).split('\n').slice(1).map((l) => l.split(','));
    const usersTable = (await run('users')).split('\n').slice(2).map((l) => l.split(/\s{2,}/));
    const expected = [['carol', '2.73'], ['alice', '2.17'], ['bob', '0.25'], ['dave', '0.00']];
    expect(usersJson.users.map((u) => [u.user, u.usageHours.toFixed(2)])).toEqual(expected);
    expect(usersCsv.map((c) => [c[0], c[1]])).toEqual(expected);
    expect(usersTable.map((c) => [c[0], c[1]])).toEqual(expected);
  });

  it('refuses bad flags with a message naming them', async () => {
    const run = (...args: string[]) => cli(['report', ...args]);
    expect((await run('usage', '--by', 'fortnight')).err).toContain('--by must be one of hour, day, week, month; got "fortnight"');
    expect((await run('usage', '--json', '--csv')).err).toContain('choose one of --table, --csv and --json');
    expect((await run('usage', '--from', 'yesterday')).err).toContain('--from must be an ISO date/time');
    expect((await run('sales')).err).toContain('floatd report takes "usage" or "users", not "sales"');
    expect((await run('usage', '--from', '1h', '--to', '2h')).err).toContain('must come after its start');
    expect((await run('usage', '--from', '1h', '--to', '2h')).code).toBe(2);
  });

  it('escapes spreadsheet formulas in CSV cells', () => {
    expect(csvCell('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    expect(csvCell('+1')).toBe("'+1");
    expect(csvCell('@sum')).toBe("'@sum");
    expect(csvCell('-cmd')).toBe("'-cmd");
    expect(csvCell('\tx')).toBe("'\tx");
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell(1.5)).toBe('1.5');
  });
});
