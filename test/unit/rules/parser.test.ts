import { describe, expect, it } from 'vitest';
import { parseRules, type CltRule, type RuleErrorKind } from '../../../src/domain/rules/parser.js';
import { parsePeriod } from '../../../src/domain/rules/periods.js';

function errorsOf(text: string): Array<[RuleErrorKind, number]> {
  const result = parseRules(text);
  if (result.ok) throw new Error(`expected errors in ${JSON.stringify(text)}`);
  return result.errors.map((e) => [e.kind, e.line]);
}

function rulesOf(text: string): CltRule[] {
  const result = parseRules(text);
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return [...result.ruleSet.rules];
}

function one(text: string): Omit<CltRule, 'line'> {
  const rules = rulesOf(text);
  expect(rules).toHaveLength(1);
  const { line: _line, ...rest } = rules[0]!;
  return rest;
}

describe('CLT statement errors, each with its line', () => {
  it.each<[string, string, RuleErrorKind, number]>([
    ['a lone command', 'CLT', 'not-enough-tokens', 1],
    ['a lone word on line 2', '# x\nfoo', 'not-enough-tokens', 2],
    ['a lone number', '7', 'not-enough-tokens', 1],
    ['a lone quoted word', '"CLT"', 'not-enough-tokens', 1],
    ['a number before CLT', '7 CLT user connection_limit=10', 'number-not-allowed', 1],
    ['a number before CONFIG', '12 CONFIG log_all=true', 'number-not-allowed', 1],
    ['a quoted number first', '"7" CLT user connection_limit=1', 'number-not-allowed', 1],
    ['an unknown command', 'LIMIT alice connection_limit=1', 'unrecognised-command', 1],
    ['punctuation as command', ', CLT a', 'unrecognised-command', 1],
    ['= as command', '= CLT', 'unrecognised-command', 1],
    ['a number-led word as command', '7x CLT a', 'unrecognised-command', 1],
    ['key at end of line', 'CLT user foo', 'property-key-only', 1],
    ['limit key at end', 'CLT user connection_limit', 'property-key-only', 1],
    ['no identity, so = is a key', 'CLT connection_limit=10', 'property-no-equals', 1],
    ['two keys in a row', 'CLT user foo bar', 'property-no-equals', 1],
    ['key then value without =', 'CLT user connection_limit 10', 'property-no-equals', 1],
    ['= last', 'CLT user connection_limit=', 'property-no-value', 1],
    ['= last after a good pair', 'CLT user port=tcp connection_limit =', 'property-no-value', 1],
    ['within a pair, its shape is checked before its key', 'CLT user nonsense', 'property-key-only', 1],
    ['within a pair, = is checked before the key', 'CLT user nonsense x', 'property-no-equals', 1],
    ['within a pair, the value is checked before the key', 'CLT user nonsense =', 'property-no-value', 1],
    ['unknown property', 'CLT user limit=10', 'unknown-property', 1],
    ['mixed separators are unknown', 'CLT user connection-frequency_limit=1', 'unknown-property', 1],
    ['half a spelling is unknown', 'CLT user connection_frequencylimit=1', 'unknown-property', 1],
    ['ports is not port', 'CLT user ports=tcp', 'unknown-property', 1],
    ['a quoted key is looked up too', 'CLT user "limit"=1', 'unknown-property', 1],
    ['the same property twice', 'CLT user connection_limit=1 connection_limit=2', 'duplicate-property', 1],
    ['two spellings of one property', 'CLT user connection_limit=1 connectionlimit=2', 'duplicate-property', 1],
    ['explicit port=ALL after port', 'CLT user port=tcp PORT=ALL', 'duplicate-property', 1],
    ['product and pool are one property', 'CLT user product=cad pool=cad connection_limit=1', 'duplicate-property', 1],
    ['frequency twice in two spellings', 'CLT u connection-frequency-limit=1 CONNECTION_FREQUENCY_LIMIT=2', 'duplicate-property', 1],
    ['a word as a limit', 'CLT user connection_limit=ten', 'invalid-number', 1],
    ['a decimal limit', 'CLT user connection_limit=1.5', 'invalid-number', 1],
    ['a limit above 32 bits', 'CLT user connection_limit=2147483648', 'invalid-number', 1],
    ['a limit below 32 bits', 'CLT user connection_limit=-2147483649', 'invalid-number', 1],
    ['a frequency limit that is no number', 'CLT user connection_frequency_limit=x/1m', 'invalid-number', 1],
    ['hex is not a number', 'CLT user connection_limit=0x10', 'invalid-number', 1],
    ['a default period with a unit', 'CONFIG default_frequency_period=1m', 'invalid-number', 1],
    ['a limited BLOCK line is still checked', 'CLT user BLOCK connection_limit=x', 'invalid-number', 1],
    ['nothing after /', 'CLT user connection_frequency_limit=10/', 'invalid-period', 1],
    ['nothing before / is no number', 'CLT user connection_frequency_limit=/1m', 'invalid-number', 1],
    ['nothing before / with a unit word', 'CLT user connection_frequency_limit=/minute', 'invalid-number', 1],
    ['nothing around /', 'CLT user connection_frequency_limit=/', 'invalid-number', 1],
    ['the limit is checked before a bad period', 'CLT user connection_frequency_limit=/P1W', 'invalid-number', 1],
    ['a sign alone before /', 'CLT user connection_frequency_limit=-/1m', 'invalid-number', 1],
    ['a bare number period', 'CLT user connection_frequency_limit=10/1', 'invalid-period', 1],
    ['days are no letter', 'CLT user connection_frequency_limit=10/d', 'invalid-period', 1],
    ['milliseconds are no unit', 'CLT user connection_frequency_limit=10/500ms', 'invalid-period', 1],
    ['plural unit word', 'CLT user connection_frequency_limit=10/seconds', 'invalid-period', 1],
    ['ISO weeks', 'CLT user connection_frequency_limit=10/P1W', 'invalid-period', 1],
    ['ISO years', 'CLT user connection_frequency_limit=10/P1Y', 'invalid-period', 1],
    ['ISO months', 'CLT user connection_frequency_limit=10/P1M', 'invalid-period', 1],
    ['seconds before minutes', 'CLT user connection_frequency_limit=10/1s1m', 'invalid-period', 1],
    ['a second /', 'CLT user connection_frequency_limit=10/1m/2', 'invalid-period', 1],
    ['an object property name as period', 'CLT user connection_frequency_limit=10/constructor', 'invalid-period', 1],
    ['a fraction on minutes', 'CLT user connection_frequency_limit=10/1.5m', 'invalid-period', 1],
    ['a zero period', 'CLT user connection_frequency_limit=10/0s', 'invalid-period', 1],
    ['a zero ISO period', 'CLT user connection_frequency_limit=10/PT0S', 'invalid-period', 1],
    ['P alone', 'CLT user connection_frequency_limit=10/P', 'invalid-period', 1],
    ['T with nothing after it', 'CLT user connection_frequency_limit=10/P1DT', 'invalid-period', 1],
    ['a negative number-led period', 'CLT user connection_frequency_limit=10/-1m', 'negative-period', 1],
    ['a negative ISO period', 'CLT user connection_frequency_limit=10/-PT5M', 'negative-period', 1],
    ['a negative ISO part', 'CLT user connection_frequency_limit=10/PT-5M', 'negative-period', 1],
    ['negative days', 'CLT user connection_frequency_limit=10/P-1D', 'negative-period', 1],
    // Pairs are taken left to right: the first error in the statement is the one reported.
    ['Connection=Limit=5: the first key is Connection', 'CLT a Connection=Limit=5', 'unknown-property', 1],
    ['connection_limit==10: the value is =', 'CLT a connection_limit==10', 'invalid-number', 1],
    ['a bad value before a key without value', 'CLT a connection_limit=abc foo', 'invalid-number', 1],
    ['a bad period before a pair without =', 'CLT a connection_frequency_limit=5/P1W x y', 'invalid-period', 1],
    ['an unknown key before a key without value', 'CLT a limit=1 foo', 'unknown-property', 1],
    ['a repeat before a key without value', 'CLT a connection_limit=1 connection_limit=2 foo', 'duplicate-property', 1],
    ['a bad value before a repeat', 'CLT a connection_limit=x connection_limit=2', 'invalid-number', 1],
    ['a good pair, then a shape error', 'CLT a connection_limit=1 foo bar', 'property-no-equals', 1],
    ['a bad value on a BLOCK line before a key without value', 'CLT a BLOCK connection_limit=x foo', 'invalid-number', 1],
    ['CONFIG: the value is =', 'CONFIG default_frequency_period==10', 'invalid-number', 1],
    ['CONFIG: a bad value before a key without value', 'CONFIG default_frequency_period=x log_all', 'invalid-number', 1],
    ['continued statement reports its last line', 'CLT user \\\n  connection_limit=x', 'invalid-number', 2],
    ['an error on line 5 of 5 without final newline', '\n\n\n\nCLT user limit=1', 'unknown-property', 5],
    ['an error after CRLF lines', 'CLT a connection_limit=1\r\nCLT b connection_limit=1\r\nCLT c x\r\n', 'property-key-only', 3],
    ['ACL pairs have the same shape rules', 'ACL ALLOW alice ACCESS VIRTUALHOST name', 'property-key-only', 1],
    ['ACL knows no BLOCK', 'ACL ALLOW alice ACCESS VIRTUALHOST BLOCK', 'property-key-only', 1],
    ['CONFIG knows no BLOCK', 'CONFIG BLOCK', 'property-key-only', 1],
    ['CONFIG pair without =', 'CONFIG log_all true', 'property-no-equals', 1],
  ])('%s', (_name, text, kind, line) => {
    expect(errorsOf(text)).toEqual([[kind, line]]);
  });

  it('lists every error of the file, in line order', () => {
    const text = ['CLT a b', 'CLT good connection_limit=1', 'CLT x connection_limit=1x', '7 CLT y', 'CLT "z', 'FOO a', 'CLT q connection_frequency_limit=1/P1W'].join('\n');
    expect(errorsOf(text)).toEqual([
      ['property-key-only', 1],
      ['invalid-number', 3],
      ['number-not-allowed', 4],
      ['unterminated-quote', 5],
      ['unrecognised-command', 6],
      ['invalid-period', 7],
    ]);
  });

  it.each([
    ['an unknown key', 'CLT alice limit=2', /unknown property "limit".*connection_limit/],
    ['a missing frequency limit', 'CLT alice connection_frequency_limit=/1m', /connection_frequency_limit "\/1m" has no limit before "\/"/],
  ])('gives messages a person understands: %s', (_name, text, message) => {
    const result = parseRules(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors[0]!.message).toMatch(message);
  });
});

describe('CLT statements that parse', () => {
  const base = { identity: 'alice', port: 'ALL', product: 'ALL', blocked: false, countLimit: null, frequencyLimit: null, frequencyPeriodMs: null };
  it.each<[string, string, Partial<CltRule>]>([
    ['connection_limit', 'CLT alice connection_limit=2', { countLimit: 2 }],
    ['connection-limit', 'CLT alice connection-limit=2', { countLimit: 2 }],
    ['connectionlimit', 'CLT alice connectionlimit=2', { countLimit: 2 }],
    ['CONNECTION_LIMIT', 'CLT alice CONNECTION_LIMIT=2', { countLimit: 2 }],
    ['Connection-Limit', 'CLT alice Connection-Limit=2', { countLimit: 2 }],
    ['connection_frequency_limit', 'CLT alice connection_frequency_limit=5', { frequencyLimit: 5 }],
    ['connection-frequency-limit', 'CLT alice connection-frequency-limit=5', { frequencyLimit: 5 }],
    ['connectionfrequencylimit', 'CLT alice connectionfrequencylimit=5', { frequencyLimit: 5 }],
    ['ConnectionFrequencyLimit', 'CLT alice ConnectionFrequencyLimit=5/1m', { frequencyLimit: 5, frequencyPeriodMs: 60_000 }],
    ['a unit word in capitals', 'CLT alice connection_frequency_limit=5/MINUTE', { frequencyLimit: 5, frequencyPeriodMs: 60_000 }],
    ['a capitalised unit word', 'CLT alice connection_frequency_limit=5/Hour', { frequencyLimit: 5, frequencyPeriodMs: 3_600_000 }],
    ['command in lower case', 'clt alice connection_limit=2', { countLimit: 2 }],
    ['command in mixed case', 'Clt alice connection_limit=2', { countLimit: 2 }],
    ['port', 'CLT alice port=tcp connection_limit=2', { port: 'tcp', countLimit: 2 }],
    ['PORT in capitals', 'CLT alice PORT=lan connection_limit=2', { port: 'lan', countLimit: 2 }],
    ['port names keep their case', 'CLT alice port=LAN connection_limit=2', { port: 'LAN', countLimit: 2 }],
    ['port is trimmed', 'CLT alice port=" tcp " connection_limit=2', { port: 'tcp', countLimit: 2 }],
    ['port=all is ALL', 'CLT alice port=all connection_limit=2', { countLimit: 2 }],
    ['product', 'CLT alice product=cad connection_limit=2', { product: 'cad', countLimit: 2 }],
    ['pool means product', 'CLT alice POOL=cad connection_limit=2', { product: 'cad', countLimit: 2 }],
    ['identities keep their case', 'CLT Alice connection_limit=2', { identity: 'Alice', countLimit: 2 }],
    ['quoted identity', 'CLT "alice" connection_limit=2', { countLimit: 2 }],
    ['ALL in any case is the default', 'CLT aLL connection_limit=2', { identity: 'ALL', countLimit: 2 }],
    ['a plus sign', 'CLT alice connection_limit=+3', { countLimit: 3 }],
    ['zero is a limit', 'CLT alice connection_limit=0', { countLimit: 0 }],
    ['-0 is zero', 'CLT alice connection_limit=-0', { countLimit: 0 }],
    ['negative is unlimited (-1)', 'CLT alice connection_limit=-5', { countLimit: -1 }],
    ['one below the 32-bit edge is a limit', 'CLT alice connection_limit=2147483646', { countLimit: 2147483646 }],
    ['the 32-bit edge is unlimited (-1)', 'CLT alice connection_limit=2147483647', { countLimit: -1 }],
    ['the 32-bit edge with a sign is unlimited', 'CLT alice connection_limit=+2147483647', { countLimit: -1 }],
    ['the 32-bit edge with a leading zero is unlimited', 'CLT alice connection_limit=02147483647', { countLimit: -1 }],
    ['a frequency at the 32-bit edge is unlimited', 'CLT alice connection_frequency_limit=2147483647', { frequencyLimit: -1 }],
    ['a frequency at the 32-bit edge with a period', 'CLT alice connection_frequency_limit=2147483647/1h', { frequencyLimit: -1, frequencyPeriodMs: 3_600_000 }],
    ['a frequency one below the edge is a limit', 'CLT alice connection_frequency_limit=2147483646/1h', { frequencyLimit: 2147483646, frequencyPeriodMs: 3_600_000 }],
    ['the lowest 32-bit value', 'CLT alice connection_limit=-2147483648', { countLimit: -1 }],
    ['a negative frequency is unlimited', 'CLT alice connection_frequency_limit=-3/1h', { frequencyLimit: -1, frequencyPeriodMs: 3_600_000 }],
    ['both limits', 'CLT alice connection_limit=2 connection_frequency_limit=5/1m', { countLimit: 2, frequencyLimit: 5, frequencyPeriodMs: 60_000 }],
    ['BLOCK', 'CLT alice BLOCK', { blocked: true }],
    ['block in lower case, at the end', 'CLT alice port=tcp block', { blocked: true, port: 'tcp' }],
    ['BLOCK twice', 'CLT alice BLOCK BLOCK', { blocked: true }],
    ['BLOCK drops the limits', 'CLT alice BLOCK connection_limit=3 connection_frequency_limit=2/1m', { blocked: true }],
    ['a quoted BLOCK is BLOCK', 'CLT alice "BLOCK"', { blocked: true }],
    ['spaces around =', 'CLT alice connection_limit = 2', { countLimit: 2 }],
    ['a # comment ends the value', 'CLT alice connection_limit=2#3', { countLimit: 2 }],
    ['BLOCK as identity is a user named BLOCK', 'CLT BLOCK connection_limit=1', { identity: 'BLOCK', countLimit: 1 }],
  ])('%s', (_name, text, expected) => {
    expect(one(text)).toEqual({ ...base, ...expected });
  });

  it.each([
    ['no BLOCK and no limit', 'CLT alice port=tcp'],
    ['identity only', 'CLT alice'],
    ['product only', 'CLT alice product=cad'],
  ])('drops a rule with %s', (_name, text) => {
    expect(rulesOf(text)).toEqual([]);
  });

  it.each([
    ['a blank file', ''],
    ['comments only', '# one\n  # two\n'],
    ['ACL with fewer than four words', 'ACL ALLOW alice ACCESS'],
    ['numbered ACL', '12 ACL ALLOW alice ACCESS VIRTUALHOST name=x'],
    ['ACL with unknown keys', 'ACL DENY ALL ACCESS VIRTUALHOST anything=goes'],
    ['a number before a bare ACL', '7 ACL'],
    ['unknown CONFIG keys', 'CONFIG whatever=1 other=2'],
  ])('accepts %s and uses nothing of it', (_name, text) => {
    const result = parseRules(text);
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.ruleSet.rules).toEqual([]);
  });

  it('keeps rules in file order with their lines', () => {
    expect(rulesOf('CLT b connection_limit=1\n\nCLT a connection_limit=2').map((r) => [r.identity, r.line])).toEqual([
      ['b', 1],
      ['a', 3],
    ]);
  });
});

describe('CONFIG', () => {
  it.each<[string, string, { logAll: boolean; defaultFrequencyPeriodMs: number | null }]>([
    ['nothing set', 'CLT a connection_limit=1', { logAll: false, defaultFrequencyPeriodMs: null }],
    ['log_all=true', 'CONFIG log_all=true', { logAll: true, defaultFrequencyPeriodMs: null }],
    ['logall=TRUE', 'CONFIG logall=TRUE', { logAll: true, defaultFrequencyPeriodMs: null }],
    ['log-all with a hyphen', 'CONFIG Log-All=true', { logAll: true, defaultFrequencyPeriodMs: null }],
    ['log_all=yes is false', 'CONFIG log_all=yes', { logAll: false, defaultFrequencyPeriodMs: null }],
    ['default_frequency_period', 'CONFIG default_frequency_period=120000', { logAll: false, defaultFrequencyPeriodMs: 120_000 }],
    ['defaultfrequencyperiod', 'CONFIG defaultfrequencyperiod=5000', { logAll: false, defaultFrequencyPeriodMs: 5000 }],
    ['default-frequency-period', 'CONFIG default-frequency-period=0', { logAll: false, defaultFrequencyPeriodMs: 0 }],
    ['a negative default period', 'CONFIG default_frequency_period=-1', { logAll: false, defaultFrequencyPeriodMs: -1 }],
    ['a default period at the 32-bit edge is a period, not unlimited', 'CONFIG default_frequency_period=2147483647', { logAll: false, defaultFrequencyPeriodMs: 2147483647 }],
    ['the last value wins', 'CONFIG log_all=true default_frequency_period=1\nCONFIG log_all=false default_frequency_period=2', { logAll: false, defaultFrequencyPeriodMs: 2 }],
  ])('%s', (_name, text, expected) => {
    const result = parseRules(text);
    expect(result.ok && result.ruleSet.config).toEqual(expected);
  });
});

describe('frequency periods', () => {
  it.each<[string, number]>([
    ['second', 1000],
    ['minute', 60_000],
    ['hour', 3_600_000],
    ['Second', 1000],
    ['SECOND', 1000],
    ['MINUTE', 60_000],
    ['Minute', 60_000],
    ['mInUtE', 60_000],
    ['HOUR', 3_600_000],
    ['Hour', 3_600_000],
    ['s', 1000],
    ['S', 1000],
    ['m', 60_000],
    ['M', 60_000],
    ['h', 3_600_000],
    ['H', 3_600_000],
    ['1m', 60_000],
    ['15M', 900_000],
    ['90s', 90_000],
    ['60s', 60_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['1,5s', 1500],
    ['1H30M15.25S', 5_415_250],
    ['2h', 7_200_000],
    ['P1D', 86_400_000],
    ['PT5M7.5S', 307_500],
    ['P1DT1M', 86_460_000],
    ['pt5m', 300_000],
    ['PT1H', 3_600_000],
    ['PT0.001S', 1],
    ['+PT1M', 60_000],
  ])('%s is %i ms', (text, ms) => {
    expect(parsePeriod(text)).toEqual({ ok: true, ms });
  });

  it.each([
    'Seconds', 'MINUTES', 'sec', 'min', 'd', 'ms', '1', '', '1d', '1m30h', 'PT', 'P1W', 'P1Y2M', 'T1M', '1.5h', '1 m', 'P1.5D',
    // Names every JavaScript object has are no units either.
    'constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__',
  ])(
    '%j is not a period',
    (text) => {
      expect(parsePeriod(text)).toMatchObject({ ok: false, kind: 'invalid-period' });
    },
  );
});
