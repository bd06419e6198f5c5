import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { cli, floatd, killChildren, requireBuild, serve } from '../support/cli.js';
import { tempDir, until } from '../support/helpers.js';
import { errorOf, leaseOf } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

function file(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function acquireAs(port: number, user: string, instance: string) {
  const t = await TcpTransport.connect(`127.0.0.1:${port}`);
  await t.request('hello', { v: 1, client: { user, instance } });
  const reply = await t.request('acquire', {});
  t.close();
  return reply;
}

describe('floatd rules commands', () => {
  it('check: exit 0 and the JSON contract for a valid file, exit 1 and every error for a broken one', async () => {
    const dir = tempDir();
    const good = file(
      dir,
      'good.clt',
      'CONFIG log_all=true\nCLT alice connection_limit=2 connection_frequency_limit=5\nCLT all port=tcp BLOCK connection_limit=3\nCLT bob connection_limit=-4 connection_frequency_limit=3/1h\nCLT carol connection_limit=2147483647 connection_frequency_limit=2147483647/Minute\n',
    );
    const ok = await cli(['rules', 'check', good, '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out)).toEqual({
      ok: true,
      rules: [
        { identity: 'alice', port: 'ALL', product: 'ALL', blocked: false, countLimit: 2, frequencyLimit: 5, frequencyPeriodMs: null },
        { identity: 'ALL', port: 'tcp', product: 'ALL', blocked: true, countLimit: null, frequencyLimit: null, frequencyPeriodMs: null },
        { identity: 'bob', port: 'ALL', product: 'ALL', blocked: false, countLimit: -1, frequencyLimit: 3, frequencyPeriodMs: 3_600_000 },
        { identity: 'carol', port: 'ALL', product: 'ALL', blocked: false, countLimit: -1, frequencyLimit: -1, frequencyPeriodMs: 60_000 },
      ],
      config: { logAll: true, defaultFrequencyPeriodMs: null },
    });
    expect(await cli(['rules', 'check', good])).toMatchObject({ code: 0, out: expect.stringContaining('valid, 4 rule(s)') });

    const bad = file(dir, 'bad.clt', 'CLT alice connection_limit=2\nCLT bob limit=1\n\nCLT carol \\ x\nCLT dave Connection=Limit=5\nCLT erin connection_limit==10\nCLT frank connection_frequency_limit=/1m\n');
    const refused = await cli(['rules', 'check', bad, '--json']);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.out)).toEqual({
      ok: false,
      errors: [
        { line: 2, kind: 'unknown-property', message: expect.any(String) },
        { line: 4, kind: 'premature-continuation', message: expect.any(String) },
        { line: 5, kind: 'unknown-property', message: expect.stringContaining('"Connection"') },
        { line: 6, kind: 'invalid-number', message: expect.stringContaining('"="') },
        { line: 7, kind: 'invalid-number', message: expect.stringContaining('no limit before "/"') },
      ],
    });
    expect(await cli(['rules', 'check', bad])).toMatchObject({ code: 1, err: expect.stringContaining(`${bad}:2: unknown-property`) });
    expect(await cli(['rules', 'check', join(dir, 'missing.clt')])).toMatchObject({ code: 1, err: expect.stringContaining('RULES_INVALID') });
    expect(await cli(['rules', 'frobnicate'])).toMatchObject({ code: 2 });
  });

  it('explain: the effective limits and the level that matched', async () => {
    const dir = tempDir();
    const rules = file(
      dir,
      'r.clt',
      'CLT ALL BLOCK\nCLT g1 connection_limit=5 connection_frequency_limit=100/1h\nCLT g2 connection_frequency_limit=10\nCLT boss connection_limit=-1\nCLT robot connection_limit=2147483647 connection_frequency_limit=2147483647/1h\n',
    );
    const explain = async (...args: string[]) => JSON.parse((await cli(['rules', 'explain', rules, '--json', ...args])).out) as unknown;
    expect(await explain('--user', 'alice', '--group', 'g1', '--group', 'g2')).toEqual({
      blocked: false,
      countLimit: 5,
      frequencyLimits: [
        { periodMs: 60_000, limit: 10 },
        { periodMs: 3_600_000, limit: 100 },
      ],
      frequencyEnabled: true,
      matched: 'group',
    });
    expect(await explain('--user', 'carol')).toEqual({ blocked: true, countLimit: null, frequencyLimits: [], frequencyEnabled: true, matched: 'default' });
    expect(await explain('--user', 'boss', '--listener', 'lan')).toEqual({ blocked: false, countLimit: null, frequencyLimits: [], frequencyEnabled: true, matched: 'user' });
    expect(await explain('--user', 'robot')).toEqual({ blocked: false, countLimit: null, frequencyLimits: [], frequencyEnabled: true, matched: 'user' });
    expect((await cli(['rules', 'explain', rules, '--user', 'alice', '--group', 'g1'])).out).toContain('at most 5');
    expect(await cli(['rules', 'explain', rules])).toMatchObject({ code: 2 });
  });

  it('simulate: one result per acquire, in the JSON contract', async () => {
    const dir = tempDir();
    const rules = file(dir, 'r.clt', 'CLT alice connection_limit=2\nCLT ALL connection_frequency_limit=1/1s\n');
    const events = file(
      dir,
      'events.jsonl',
      [
        { tMs: 0, op: 'acquire', lease: 'c1', user: 'alice', groups: ['g'], listener: 'tcp' },
        { tMs: 1, op: 'acquire', lease: 'c2', user: 'alice' },
        { tMs: 2, op: 'acquire', lease: 'c3', user: 'alice' },
        { tMs: 5, op: 'release', lease: 'c1' },
        { tMs: 6, op: 'acquire', lease: 'c3', user: 'alice' },
        { tMs: 7, op: 'acquire', lease: 'b1', user: 'bob' },
        { tMs: 8, op: 'acquire', lease: 'b2', user: 'bob' },
      ]
        .map((e) => JSON.stringify(e))
        .join('\n'),
    );
    const r = await cli(['rules', 'simulate', rules, '--events', events, '--json']);
    expect(r.code).toBe(0);
    expect(r.out.split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([
      { lease: 'c1', allowed: true },
      { lease: 'c2', allowed: true },
      { lease: 'c3', allowed: false, reason: 'count', message: 'user alice breaks lease count limit 2 on listener tcp' },
      { lease: 'c3', allowed: true },
      { lease: 'b1', allowed: true },
      { lease: 'b2', allowed: false, reason: 'frequency', message: 'user bob breaks acquisition frequency limit 1 per 1 s on listener tcp' },
    ]);
    expect((await cli(['rules', 'simulate', rules, '--events', events])).out).toContain('6 acquisition(s): 4 allowed, 2 denied');
    const broken = file(dir, 'broken.jsonl', '{"tMs":0,"op":"acquire","lease":"a","user":"x"}\n{"tMs":1,"op":"take","lease":"b"}\n');
    expect(await cli(['rules', 'simulate', rules, '--events', broken])).toMatchObject({ code: 1, err: expect.stringContaining(`INPUT_INVALID: ${broken}:2: "op"`) });
  });

  it('serve: SIGHUP with a broken file keeps the old rules; rules reload applies a good one; simulate --from-log replays the log', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    const rules = file(dir, 'rules.clt', 'CLT alice connection_limit=1\n');
    const server = await serve(['--data-dir', data, '--rules', rules]);
    leaseOf(await acquireAs(server.port, 'alice', 'a1'));
    expect(errorOf(await acquireAs(server.port, 'alice', 'a2'))).toMatchObject({ code: 'RULE_DENIED', reason: 'count' });

    writeFileSync(rules, 'CLT alice connection_limit=3 nonsense\n');
    server.child.kill('SIGHUP');
    await until(() => server.log().includes('rules reload refused'), 'the refused reload in the log');
    expect(server.log()).toMatch(/"level":50[^\n]*rules reload refused[^\n]*property-key-only/);
    expect(errorOf(await acquireAs(server.port, 'alice', 'a2'))).toMatchObject({ reason: 'count', message: expect.stringContaining('limit 1') });
    const refused = await cli(['rules', 'reload', '--data-dir', data]);
    expect(refused).toMatchObject({ code: 1, err: expect.stringContaining('property-key-only') });

    writeFileSync(rules, 'CLT alice connection_limit=2\n');
    expect(await cli(['rules', 'reload', '--data-dir', data])).toMatchObject({ code: 0, out: expect.stringContaining('rules reloaded: 1 CLT rule(s)') });
    leaseOf(await acquireAs(server.port, 'alice', 'a2'));

    // Who would a stricter file have denied?
    const strict = file(dir, 'strict.clt', 'CLT alice connection_limit=1\n');
    const replay = await cli(['rules', 'simulate', strict, '--from-log', '--data-dir', data, '--json']);
    expect(replay.code).toBe(0);
    const results = replay.out.split('\n').map((l) => JSON.parse(l) as { allowed: boolean; user: string; reason?: string; at: string });
    expect(results.map((r) => [r.user, r.allowed, r.reason])).toEqual([
      ['alice', true, undefined],
      ['alice', false, 'count'],
    ]);
    expect(Date.parse(results[1]!.at)).toBeGreaterThan(0);
    expect((await cli(['rules', 'simulate', strict, '--from-log', '--data-dir', data])).out).toMatch(/alice .*would be DENIED \(count\)/);
  });
});
