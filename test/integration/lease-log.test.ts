import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildLog } from '../../scripts/lib/build-log.js';
import { csvCell } from '../../src/app/lease-log.js';
import { printable } from '../../src/cli/log-format.js';
import { FakeClock } from '../support/fake-clock.js';
import { tempDir } from '../support/helpers.js';
import { CHILD_ENV, cli, exited, killChildren, MAIN, requireBuild, spawnFloatd } from '../support/cli.js';
import { leaseOf, errorOf, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

const HOUR = 3_600_000;

/**
 * A lease log recorded by the real server on a fake clock: the clock starts
 * three hours before the real now (so relative filters such as `--since 2h`
 * mean something), alice and bob take the two seats, carol is turned away,
 * alice renews and releases, bob's lease runs out, an operator suspends a listener.
 */
async function recordedLog(): Promise<{ s: TestServer; clock: FakeClock; start: number; leases: Record<string, string> }> {
  const start = Math.floor((Date.now() - 3 * HOUR) / 1000) * 1000;
  const clock = new FakeClock(start);
  const s = await startServer({ clock, seats: 2, flags: { leaseSeconds: 3600 } });
  const alice = await s.connect('alice', 'alice-1');
  const bob = await s.connect('bob', 'bob-7');
  const carol = await s.connect('carol', 'carol-1');
  const a = leaseOf(await alice.request('acquire', { product: 'cad' }));
  clock.advance(60_000);
  const b = leaseOf(await bob.request('acquire', { product: 'cad' }));
  clock.advance(60_000);
  expect(errorOf(await carol.request('acquire', { product: 'cad' })).code).toBe('NO_FREE_SEATS');
  clock.advance(HOUR / 2);
  leaseOf(await alice.request('renew', { lease: a.id }));
  // Just past the one-hour mark, so `--since 2h` shows this release and not what came before.
  clock.advance(HOUR / 2);
  await alice.request('release', { lease: a.id });
  // Bob's lease runs out meanwhile.
  clock.advance(HOUR);
  await s.settle();
  await s.floatd.store.appendEvent({ ts: clock.now(), event: 'listener-suspended', listener: 'tcp', actor: 'token:ops', message: 'listener tcp suspended by token:ops' });
  return { s, clock, start, leases: { alice: a.id, bob: b.id } };
}

async function log(s: TestServer, ...args: string[]) {
  const sub = args[0] === 'export' || args[0] === 'verify' ? [args[0]] : [];
  return cli(['log', ...sub, '--data-dir', s.config.dataDir, ...args.slice(sub.length)]);
}

describe('floatd log', () => {
  it('filters a recorded log by time, user, host, instance, product, event, lease, listener and actor', async () => {
    const { s, start, leases } = await recordedLog();
    const events = async (...args: string[]) => (await log(s, '--json', ...args)).out.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    const kinds = async (...args: string[]) => (await events(...args)).map((e) => e['event']);
    expect(await kinds('--user', 'alice')).toEqual(['granted', 'renewed', 'released']);
    expect(await kinds('--host', 'bob-host')).toEqual(['granted', 'expired']);
    expect(await kinds('--instance', 'carol-1')).toEqual(['denied']);
    expect(await kinds('--product', 'cad', '--event', 'denied,granted')).toEqual(['granted', 'granted', 'denied']);
    expect(await kinds('--lease', leases['bob']!.slice(0, 8))).toEqual(['granted', 'expired']);
    expect(await kinds('--lease', leases['alice']!)).toEqual(['granted', 'renewed', 'released']);
    expect(await kinds('--listener', 'tcp', '--event', 'granted')).toEqual(['granted', 'granted']);
    expect(await kinds('--actor', 'token:ops')).toEqual(['listener-suspended']);
    // Time: ISO instants and spans ago (the clock started three hours ago).
    expect(await kinds('--since', new Date(start + 90_000).toISOString(), '--user', 'carol')).toEqual(['denied']);
    expect(await kinds('--until', new Date(start + 90_000).toISOString(), '--product', 'cad')).toEqual(['granted', 'granted']);
    expect(await kinds('--since', '2h', '--user', 'alice')).toEqual(['released']);
    expect(await kinds('--since', '4h', '--until', '2h', '--user', 'alice')).toEqual(['granted', 'renewed']);
    expect(await kinds('--limit', '1')).toEqual(['listener-suspended']);
    const carol = (await events('--user', 'carol'))[0]!;
    expect(carol).toMatchObject({ event: 'denied', code: 'NO_FREE_SEATS', user: 'carol', host: 'carol-host', instance: 'carol-1', product: 'cad', listener: 'tcp' });
    expect(carol['ts']).toBe(new Date(start + 120_000).toISOString());
    await s.stop();
  });

  it('prints a header and aligned columns in local time, CSV with a header row', async () => {
    const { s, start } = await recordedLog();
    const text = (await log(s, '--event', 'granted,denied,released')).out.split('\n');
    expect(text[0]).toMatch(/^TIME\s+EVENT\s+PRODUCT\s+WHO\s+SEATS\s+LEASE\s+REMOTE\s+CODE\s+BY\s+MESSAGE$/);
    expect(text).toHaveLength(5);
    for (const header of ['EVENT', 'PRODUCT', 'WHO', 'SEATS']) {
      const at = text[0]!.indexOf(header);
      for (const row of text.slice(1)) expect(row[at - 1], `column ${header} of "${row}"`).toBe(' ');
      for (const row of text.slice(1)) expect(row[at], `column ${header} of "${row}"`).not.toBe(' ');
    }
    const d = new Date(start);
    const pad = (n: number) => String(n).padStart(2, '0');
    expect(text[1]).toContain(`${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`);
    expect(text[1]).toMatch(/granted\s+cad\s+alice@alice-host\/alice-1\s+1\/2/);
    expect(text[3]).toMatch(/denied\s+cad\s+carol@carol-host\/carol-1\s+2\/2\s+\S*\s*127\.0\.0\.1\s+NO_FREE_SEATS/);
    expect((await log(s, '--utc', '--limit', '1')).out.split('\n')[1]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+listener-suspended/);
    const csv = (await log(s, '--csv', '--user', 'carol')).out.split('\n');
    expect(csv[0]).toBe('id,ts,event,product,poolId,leaseId,user,host,instance,remote,listener,seatsInUse,seatsTotal,code,reason,message,actor,count');
    expect(csv[1]).toMatch(/,denied,cad,[^,]*,,carol,carol-host,carol-1,127\.0\.0\.1,tcp,2,2,NO_FREE_SEATS,,/);
    await s.stop();
  });

  it('names the option a bad filter value was given to', async () => {
    const { s } = await recordedLog();
    for (const [args, option] of [
      [['--since', 'yesterday'], '--since'],
      [['--until', '5 hours'], '--until'],
      [['--event', 'granted,stolen'], '--event'],
      [['--limit', '0'], '--limit'],
      [['--user', ''], '--user'],
      [['--since', '1h', '--until', '2h'], '--since'],
      [['--json', '--csv'], '--json'],
    ] as const) {
      const r = await log(s, ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toContain(option);
      expect(r.err).toMatch(/^floatd log: USAGE: /);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
    await s.stop();
  });

  it('never lets a client-chosen name reach the terminal raw, and escapes spreadsheet formulas in CSV', async () => {
    const { s, clock } = await recordedLog();
    const forged = 'mallory\n2026-03-02 09:00:00  granted             cad      root@vault/1';
    const entries = [
      { user: forged, host: 'h\u001b]0;pwned\u0007', instance: 'i\r1', product: '=HYPERLINK("http://x","y")' },
      { user: '@SUM(A1:A9)', host: '+cmd', instance: '-2+3', product: '\tcad', message: 'back\\nslash \u202eevil' },
    ];
    for (const e of entries) await s.floatd.store.appendEvent({ ts: clock.now(), event: 'denied', code: 'NO_FREE_SEATS', ...e });
    const text = await log(s, '--event', 'denied', '--since', '70m');
    const lines = text.out.split('\n');
    expect(lines).toHaveLength(3);
    expect(text.out).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\u202e]/);
    expect(lines[1]).toContain('mallory\\n2026-03-02 09:00:00  granted');
    expect(lines[1]).toContain('h\\u001b]0;pwned\\u0007');
    expect(lines[2]).toContain('back\\\\nslash \\u202eevil');
    const csv = (await log(s, '--csv', '--event', 'denied', '--since', '70m')).out;
    expect(csv).toContain('"\'=HYPERLINK(""http://x"",""y"")"');
    expect(csv).toContain(",'@SUM(A1:A9),'+cmd,'-2+3,");
    expect(csv).toContain(",'\tcad,");
    expect(csv).not.toMatch(/[\u0000-\u0008\u001b]/);
    // JSON keeps the values exactly, escaped as JSON escapes them.
    const json = (await log(s, '--json', '--event', 'denied', '--since', '70m')).out.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(json.map((e) => e['user'])).toEqual([forged, '@SUM(A1:A9)']);
    await s.stop();
  });

  it('--follow prints entries as they are recorded and ends quietly with status 0 on Ctrl-C', async () => {
    const { s, clock } = await recordedLog();
    const child = spawnFloatd(['log', '--follow', '--json', '--data-dir', s.config.dataDir]);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const waitFor = async (what: () => boolean) => {
      for (let i = 0; i < 200 && !what(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(what()).toBe(true);
    };
    await waitFor(() => out.includes('listener-suspended'));
    const dave = await s.connect('dave', 'dave-1');
    clock.advance(1000);
    const lease = leaseOf(await dave.request('acquire', { product: 'cad' }));
    await waitFor(() => out.includes(lease.id));
    const last = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(last).toMatchObject({ event: 'granted', user: 'dave', leaseId: lease.id });
    child.kill('SIGINT');
    expect(await exited(child)).toEqual({ code: 0, signal: null });
    expect(err).toBe('');
    await s.stop();
  });
});

describe('floatd log in a pipeline', () => {
  it('ends quietly with status 0 when the reader goes away (floatd log | head)', async () => {
    // About 700 KB of table, ten times what a pipe holds: floatd is still writing when head goes away.
    const built = await buildLog({ entries: 5_000, dataDir: join(tempDir(), 'data') });
    // A shell pipeline, as people type it: the exit status of floatd itself is reported.
    const r = await new Promise<{ out: string; err: string; code: number | null }>((resolve) => {
      const sh = spawn('bash', ['--norc', '--noprofile', '-c', `"${process.execPath}" "${MAIN}" log --data-dir "${built.dataDir}" | head -n 3; echo "status=\${PIPESTATUS[0]}"`], { env: CHILD_ENV });
      let out = '';
      let err = '';
      sh.stdout.on('data', (d: Buffer) => (out += d.toString()));
      sh.stderr.on('data', (d: Buffer) => (err += d.toString()));
      sh.on('close', (code) => resolve({ out, err, code }));
    });
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^TIME\s+EVENT/);
    expect(lines[3]).toBe('status=0');
    expect(r.err).toBe('');
  });
});

describe('formatting helpers', () => {
  it('prefixes what a spreadsheet would run and quotes what CSV needs quoted', () => {
    expect(['=1+2', '+1', '-1', '@x', '\tx', '\rx'].map(csvCell)).toEqual(["'=1+2", "'+1", "'-1", "'@x", "'\tx", "\"'\rx\""]);
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell(-3)).toBe('-3');
    expect(csvCell(null)).toBe('');
    expect(csvCell('a\u001b[31mb\u0000')).toBe('a\\u001b[31mb\\u0000');
  });

  it('shows control characters, bidi overrides and backslashes escaped', () => {
    expect(printable('a\nb\rc\td')).toBe('a\\nb\\rc\\td');
    expect(printable('\u001b[2J\u0000\u007f\u0085\u2028\u202e')).toBe('\\u001b[2J\\u0000\\u007f\\u0085\\u2028\\u202e');
    expect(printable('C:\\new')).toBe('C:\\\\new');
    expect(printable('Zoë 東京')).toBe('Zoë 東京');
  });
});

describe('floatd log export', () => {
  it('writes JSON lines or CSV by extension, mode 0600, and never overwrites a file', async () => {
    const { s, start } = await recordedLog();
    const dir = tempDir();
    const until = new Date(start + 90_000).toISOString();
    const jsonl = join(dir, 'early.jsonl');
    const r = await log(s, 'export', '--until', until, jsonl);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^\d+ entries exported to /);
    const lines = readFileSync(jsonl, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((e) => e['event'] === 'granted').map((e) => e['user'])).toEqual(['alice', 'bob']);
    expect(lines.every((e) => Date.parse(String(e['ts'])) < Date.parse(until))).toBe(true);
    expect(statSync(jsonl).mode & 0o777).toBe(0o600);
    const csv = join(dir, 'denials.csv');
    const one = await log(s, 'export', '--until', '0m', '--event', 'denied', csv);
    expect(one.code).toBe(0);
    expect(one.out).toMatch(/^1 entry exported to /);
    const rows = readFileSync(csv, 'utf8').trim().split('\n');
    expect(rows[0]).toMatch(/^id,ts,event,/);
    expect(rows.slice(1).map((l) => l.split(',')[2])).toEqual(['denied']);
    expect(statSync(csv).mode & 0o777).toBe(0o600);
    const again = await log(s, 'export', '--until', until, jsonl);
    expect(again.code).toBe(1);
    expect(again.err).toContain('EXPORT_FAILED');
    expect(again.err).toContain('exists');
    expect((await log(s, 'export', '--until', until, join(dir, 'x.xlsx'))).err).toContain('.jsonl');
    expect((await log(s, 'export', join(dir, 'y.csv'))).err).toContain('--until');
    await s.stop();
  });
});
