import { describe, expect, it } from 'vitest';
import { RuleBook, type Identity } from '../../../src/domain/rules/limits.js';
import { parseRules } from '../../../src/domain/rules/parser.js';
import { RuleSimulator } from '../../../src/domain/rules/simulator.js';

function book(text: string, defaultPeriodMs = 60_000): RuleBook {
  const result = parseRules(text);
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return new RuleBook(result.ruleSet, defaultPeriodMs);
}

interface Expect {
  matched: string;
  blocked?: boolean;
  count?: number | null;
  frequency?: Array<[number, number]>;
}

function summary(b: RuleBook, who: Partial<Identity>): Expect {
  const l = b.limitsFor({ listener: 'tcp', user: 'alice', groups: [], product: null, ...who });
  const counts = l.counts.map((c) => c.limit);
  return {
    matched: l.matched,
    blocked: l.blocked,
    count: counts.length === 0 ? null : Math.min(...counts),
    frequency: l.frequencies.map((f) => [f.periodMs, f.limit] as [number, number]).sort((a, b) => a[0] - b[0]),
  };
}

describe('effective limits: levels and merging', () => {
  it.each<[string, string, Partial<Identity>, Expect]>([
    ['no rules', '', {}, { matched: 'none', count: null }],
    ['a user rule', 'CLT alice connection_limit=2', {}, { matched: 'user', count: 2 }],
    ['another user’s rule does not apply', 'CLT bob connection_limit=2', {}, { matched: 'none', count: null }],
    ['identities are case-sensitive', 'CLT Alice connection_limit=2', {}, { matched: 'none', count: null }],
    ['the default rule', 'CLT ALL connection_limit=3', {}, { matched: 'default', count: 3 }],
    ['a user rule shadows the default whole', 'CLT ALL connection_limit=1 connection_frequency_limit=5/1m\nCLT alice connection_limit=4', {}, { matched: 'user', count: 4 }],
    ['a negative user limit exempts from the default', 'CLT ALL connection_limit=1\nCLT alice connection_limit=-1', {}, { matched: 'user', count: null }],
    ['2147483647 exempts from the default like -1', 'CLT ALL connection_limit=1\nCLT alice connection_limit=2147483647', {}, { matched: 'user', count: null }],
    ['2147483647 does not loosen a limit in a bucket', 'CLT alice connection_limit=3\nCLT alice connection_limit=2147483647', {}, { matched: 'user', count: 3 }],
    ['smallest count in a bucket wins', 'CLT alice connection_limit=5\nCLT alice connection_limit=3\nCLT alice connection_limit=4', {}, { matched: 'user', count: 3 }],
    ['unlimited does not loosen a limit in a bucket', 'CLT alice connection_limit=-1\nCLT alice connection_limit=3', {}, { matched: 'user', count: 3 }],
    ['a limit of 0 is the smallest', 'CLT alice connection_limit=0\nCLT alice connection_limit=3', {}, { matched: 'user', count: 0 }],
    ['count and frequency from different lines combine', 'CLT alice connection_limit=2\nCLT alice connection_frequency_limit=5/1m', {}, { matched: 'user', count: 2, frequency: [[60_000, 5]] }],
    ['different periods all apply', 'CLT alice connection_frequency_limit=5/1m\nCLT alice connection_frequency_limit=100/1h', {}, { matched: 'user', frequency: [[60_000, 5], [3_600_000, 100]] }],
    ['1m and 60s are one period', 'CLT alice connection_frequency_limit=5/1m\nCLT alice connection_frequency_limit=3/60s', {}, { matched: 'user', frequency: [[60_000, 3]] }],
    ['no period means the default period', 'CLT alice connection_frequency_limit=5', {}, { matched: 'user', frequency: [[60_000, 5]] }],
    ['the server default period applies', 'CLT alice connection_frequency_limit=5', {}, { matched: 'user', frequency: [[60_000, 5]] }],
    ['CONFIG default period applies to earlier lines', 'CLT alice connection_frequency_limit=5\nCONFIG default_frequency_period=120000', {}, { matched: 'user', frequency: [[120_000, 5]] }],
    ['a negative frequency limit is no limit', 'CLT alice connection_frequency_limit=-1/1m', {}, { matched: 'user', frequency: [] }],
    ['a frequency limit of 2147483647 is no limit', 'CLT alice connection_frequency_limit=2147483647/1m', {}, { matched: 'user', frequency: [] }],
    ['2147483647 does not loosen a frequency limit of the same period', 'CLT alice connection_frequency_limit=2147483647/1m\nCLT alice connection_frequency_limit=4/60s', {}, { matched: 'user', frequency: [[60_000, 4]] }],
    ['a group rule', 'CLT eng connection_limit=5', { groups: ['eng'] }, { matched: 'group', count: 5 }],
    ['groups of other users do not apply', 'CLT eng connection_limit=5', { groups: ['ops'] }, { matched: 'none', count: null }],
    ['all the user’s groups merge, most restrictive', 'CLT eng connection_limit=5\nCLT ops connection_limit=2', { groups: ['eng', 'ops'] }, { matched: 'group', count: 2 }],
    ['a BLOCK in any group blocks', 'CLT eng connection_limit=5\nCLT ops BLOCK', { groups: ['eng', 'ops'] }, { matched: 'group', blocked: true }],
    ['the user rule shadows a blocking group', 'CLT ops BLOCK\nCLT alice connection_limit=1', { groups: ['ops'] }, { matched: 'user', count: 1 }],
    ['a group rule shadows the default', 'CLT ALL BLOCK\nCLT g1 connection_limit=5', { groups: ['g1'] }, { matched: 'group', count: 5 }],
    ['default BLOCK blocks non-members', 'CLT ALL BLOCK\nCLT g1 connection_limit=5', { groups: ['g2'] }, { matched: 'default', blocked: true }],
    ['a user BLOCK', 'CLT alice BLOCK', {}, { matched: 'user', blocked: true }],
    ['BLOCK beats limits in the same bucket', 'CLT alice connection_limit=9\nCLT alice BLOCK', {}, { matched: 'user', blocked: true }],
    ['a port rule applies on its listener', 'CLT alice port=tcp connection_limit=2', { listener: 'tcp' }, { matched: 'user', count: 2 }],
    ['a port rule does not apply elsewhere', 'CLT alice port=lan connection_limit=2', { listener: 'tcp' }, { matched: 'none', count: null }],
    ['port names are case-sensitive', 'CLT alice port=TCP connection_limit=2', { listener: 'tcp' }, { matched: 'none', count: null }],
    ['a non-applicable user rule does not shadow', 'CLT alice port=lan connection_limit=2\nCLT ALL connection_limit=7', { listener: 'tcp' }, { matched: 'default', count: 7 }],
    ['port and ALL rules merge', 'CLT alice port=tcp connection_limit=2\nCLT alice connection_limit=1', { listener: 'tcp' }, { matched: 'user', count: 1 }],
    ['a product rule applies to its product', 'CLT alice product=cad connection_limit=2', { product: 'cad' }, { matched: 'user', count: 2 }],
    ['a product rule does not apply to others', 'CLT alice product=cad connection_limit=2', { product: 'cam' }, { matched: 'none', count: null }],
    ['frequency off drops frequency-only rules', 'CONFIG default_frequency_period=0\nCLT alice connection_frequency_limit=5/1m\nCLT ALL connection_limit=3', {}, { matched: 'default', count: 3 }],
    ['frequency off keeps count limits', 'CONFIG default_frequency_period=-5\nCLT alice connection_limit=2 connection_frequency_limit=5/1m', {}, { matched: 'user', count: 2, frequency: [] }],
    ['frequency off by the server default', 'CLT alice connection_frequency_limit=5/1m', {}, { matched: 'user', frequency: [[60_000, 5]] }],
    ['a user named like a group matches as a user', 'CLT eng connection_limit=1', { user: 'eng' }, { matched: 'user', count: 1 }],
  ])('%s', (_name, text, who, expected) => {
    expect(summary(book(text), who)).toMatchObject(expected);
  });

  it('switches frequency off with a server default ≤ 0 when the file sets none', () => {
    const b = book('CLT alice connection_frequency_limit=5/1m', 0);
    expect(b.frequencyEnabled).toBe(false);
    expect(summary(b, {}).matched).toBe('none');
  });

  it('checks frequency limits longest period first', () => {
    const l = book('CLT alice connection_frequency_limit=5/1m\nCLT alice connection_frequency_limit=50/1h\nCLT alice connection_frequency_limit=9/10m').limitsFor({
      listener: 'tcp',
      user: 'alice',
      groups: [],
      product: null,
    });
    expect(l.frequencies.map((f) => f.periodMs)).toEqual([3_600_000, 600_000, 60_000]);
  });

  it('caches limits per (listener, user, groups, product)', () => {
    const b = book('CLT eng connection_limit=5\nCLT ALL connection_limit=1');
    const a = b.limitsFor({ listener: 'tcp', user: 'alice', groups: ['eng'], product: null });
    expect(b.limitsFor({ listener: 'tcp', user: 'alice', groups: ['eng'], product: null })).toBe(a);
    expect(b.limitsFor({ listener: 'tcp', user: 'alice', groups: [], product: null }).counts[0]!.limit).toBe(1);
  });
});

type Step = [number, 'acquire' | 'release', string, string?, string[]?, string?] | [number, 'expect', string, boolean | string];

/** Runs steps on simulated time: acquire lease (user, groups, listener), release lease, or expect the last decision on a lease. */
function run(rules: string, steps: Step[]): void {
  const sim = new RuleSimulator(book(rules));
  const decisions = new Map<string, string>();
  for (const step of steps) {
    const [t, op, lease] = step;
    if (op === 'acquire') {
      const [, , , user = 'alice', groups = [], listener = 'tcp'] = step;
      const d = sim.acquire({ tMs: t, lease, user, groups, listener, product: null });
      decisions.set(lease, d.allowed ? 'allowed' : d.reason);
    } else if (op === 'release') {
      sim.release(lease);
    } else {
      const want = step[3];
      expect(`${lease} at ${t}: ${decisions.get(lease)}`).toBe(`${lease} at ${t}: ${want === true ? 'allowed' : want}`);
    }
  }
}

describe('decisions over simulated time', () => {
  it.each<[string, string, Step[]]>([
    ['count: the third lease is denied', 'CLT alice connection_limit=2', [[0, 'acquire', 'a'], [1, 'acquire', 'b'], [2, 'acquire', 'c'], [2, 'expect', 'c', 'count']]],
    ['count: a release frees room', 'CLT alice connection_limit=2', [[0, 'acquire', 'a'], [1, 'acquire', 'b'], [2, 'release', 'a'], [3, 'acquire', 'c'], [3, 'expect', 'c', true]]],
    ['count 0 denies everything', 'CLT alice connection_limit=0', [[0, 'acquire', 'a'], [0, 'expect', 'a', 'count']]],
    ['re-acquiring a held lease is not new', 'CLT alice connection_limit=1', [[0, 'acquire', 'a'], [1, 'acquire', 'a'], [1, 'expect', 'a', true]]],
    ['frequency: the limit within the window', 'CLT alice connection_frequency_limit=2/1m', [[0, 'acquire', 'a'], [10, 'acquire', 'b'], [20, 'acquire', 'c'], [20, 'expect', 'c', 'frequency']]],
    ['frequency: an acquisition exactly one period ago has left the window', 'CLT alice connection_frequency_limit=1/1m', [[0, 'acquire', 'a'], [60_000, 'acquire', 'b'], [60_000, 'expect', 'b', true]]],
    ['frequency: one ms before the window edge is still inside', 'CLT alice connection_frequency_limit=1/1m', [[0, 'acquire', 'a'], [59_999, 'acquire', 'b'], [59_999, 'expect', 'b', 'frequency']]],
    ['frequency: releases give no allowance back', 'CLT alice connection_frequency_limit=1/1m', [[0, 'acquire', 'a'], [1, 'release', 'a'], [2, 'acquire', 'b'], [2, 'expect', 'b', 'frequency']]],
    ['frequency: denied attempts are not recorded', 'CLT alice connection_frequency_limit=1/1m', [[0, 'acquire', 'a'], [30_000, 'acquire', 'b'], [60_000, 'acquire', 'c'], [60_000, 'expect', 'c', true]]],
    ['frequency 0 denies every acquisition', 'CLT alice connection_frequency_limit=0/1h', [[0, 'acquire', 'a'], [0, 'expect', 'a', 'frequency']]],
    ['frequency: sliding, not fixed buckets', 'CLT alice connection_frequency_limit=2/1m', [[50_000, 'acquire', 'a'], [59_000, 'acquire', 'b'], [61_000, 'acquire', 'c'], [61_000, 'expect', 'c', 'frequency'], [110_001, 'acquire', 'd'], [110_001, 'expect', 'd', true]]],
    ['frequency is checked before count', 'CLT alice connection_limit=1 connection_frequency_limit=1/1m', [[0, 'acquire', 'a'], [1, 'acquire', 'b'], [1, 'expect', 'b', 'frequency']]],
    ['count applies once frequency allows', 'CLT alice connection_limit=1 connection_frequency_limit=5/1m', [[0, 'acquire', 'a'], [1, 'acquire', 'b'], [1, 'expect', 'b', 'count']]],
    ['blocked comes first', 'CLT alice BLOCK', [[0, 'acquire', 'a'], [0, 'expect', 'a', 'blocked']]],
    ['counters are per listener', 'CLT alice connection_limit=1', [[0, 'acquire', 'a', 'alice', [], 'tcp'], [1, 'acquire', 'b', 'alice', [], 'lan'], [1, 'expect', 'b', true], [2, 'acquire', 'c', 'alice', [], 'lan'], [2, 'expect', 'c', 'count']]],
    ['group limits count per member, not pooled', 'CLT eng connection_limit=1', [[0, 'acquire', 'a', 'alice', ['eng']], [1, 'acquire', 'b', 'bob', ['eng']], [1, 'expect', 'b', true]]],
    ['default limits count per user', 'CLT ALL connection_limit=1', [[0, 'acquire', 'a', 'alice'], [1, 'acquire', 'b', 'bob'], [1, 'expect', 'b', true], [2, 'acquire', 'c', 'bob'], [2, 'expect', 'c', 'count']]],
    ['exempt user is not limited', 'CLT ALL connection_limit=1\nCLT alice connection_limit=-1', [[0, 'acquire', 'a'], [1, 'acquire', 'b'], [2, 'acquire', 'c'], [2, 'expect', 'c', true]]],
    ['group members only', 'CLT ALL BLOCK\nCLT g1 connection_limit=2', [[0, 'acquire', 'a', 'alice', ['g1']], [0, 'expect', 'a', true], [1, 'acquire', 'b', 'bob', []], [1, 'expect', 'b', 'blocked']]],
    ['two periods both apply', 'CLT alice connection_frequency_limit=2/1s\nCLT alice connection_frequency_limit=3/1h', [[0, 'acquire', 'a'], [1000, 'acquire', 'b'], [2000, 'acquire', 'c'], [3000, 'acquire', 'd'], [3000, 'expect', 'd', 'frequency']]],
  ])('%s', (_name, rules, steps) => {
    run(rules, steps);
  });

  it('reports the longest violated period', () => {
    const sim = new RuleSimulator(book('CLT alice connection_frequency_limit=1/1m\nCLT alice connection_frequency_limit=1/2h'));
    sim.acquire({ tMs: 0, lease: 'a', user: 'alice', groups: [], listener: 'tcp', product: null });
    const d = sim.acquire({ tMs: 1, lease: 'b', user: 'alice', groups: [], listener: 'tcp', product: null });
    expect(d).toEqual({ allowed: false, reason: 'frequency', message: 'user alice breaks acquisition frequency limit 1 per 7200 s on listener tcp' });
  });

  it.each([
    ['count', 'CLT alice connection_limit=0', 'user alice breaks lease count limit 0 on listener tcp'],
    ['frequency', 'CLT alice connection_frequency_limit=0/120s', 'user alice breaks acquisition frequency limit 0 per 120 s on listener tcp'],
    ['blocked', 'CLT alice BLOCK', 'user alice is blocked on listener tcp'],
  ])('says the numbers for %s', (reason, rules, message) => {
    const d = new RuleSimulator(book(rules)).acquire({ tMs: 0, lease: 'a', user: 'alice', groups: [], listener: 'tcp', product: null });
    expect(d).toEqual({ allowed: false, reason, message });
  });

  it('counts a product rule over that product’s leases only', () => {
    const sim = new RuleSimulator(book('CLT alice product=cad connection_limit=1'));
    const at = (lease: string, product: string) => sim.acquire({ tMs: 0, lease, user: 'alice', groups: [], listener: 'tcp', product });
    expect(at('a', 'cam').allowed).toBe(true);
    expect(at('b', 'cad').allowed).toBe(true);
    expect(at('c', 'cad')).toMatchObject({ allowed: false, message: 'user alice breaks lease count limit 1 on listener tcp for product cad' });
  });
});
