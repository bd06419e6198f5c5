/**
 * The parser of the CLT rule language (CLT-RULES.md section 2). Any error
 * rejects the whole file; every error is reported with its line, so a
 * person can fix a file in one pass.
 */
import { tokenize, type Token } from './lexer.js';
import { parsePeriod } from './periods.js';

export const RULE_ERROR_KINDS = [
  'not-enough-tokens',
  'number-not-allowed',
  'unrecognised-command',
  'property-key-only',
  'property-no-equals',
  'property-no-value',
  'unknown-property',
  'duplicate-property',
  'invalid-number',
  'invalid-period',
  'negative-period',
  'premature-continuation',
  'unterminated-quote',
] as const;

export type RuleErrorKind = (typeof RULE_ERROR_KINDS)[number];

export interface RuleError {
  readonly line: number;
  readonly kind: RuleErrorKind;
  readonly message: string;
}

/** `ALL`, in any letter case, as written for identity, port or product. */
export const ALL = 'ALL';

/** One CLT line, as written (before the default period or CONFIG apply). */
export interface CltRule {
  readonly line: number;
  /** User or group name, or `ALL` for the default rule. */
  readonly identity: string;
  /** Listener name, or `ALL`. */
  readonly port: string;
  /** Product name, or `ALL` (floatd extension). */
  readonly product: string;
  readonly blocked: boolean;
  /** Max leases held at once; -1 is unlimited (written negative or 2147483647); null when the rule sets none (or blocks). */
  readonly countLimit: number | null;
  /** Max new acquisitions per period; -1 is unlimited (written negative or 2147483647); null when the rule sets none (or blocks). */
  readonly frequencyLimit: number | null;
  /** The rule's own period; null when it gave none (the default period applies). */
  readonly frequencyPeriodMs: number | null;
}

export interface RulesConfig {
  readonly logAll: boolean;
  /** null when the file does not set it (the server's default then applies). */
  readonly defaultFrequencyPeriodMs: number | null;
}

export interface RuleSet {
  readonly rules: readonly CltRule[];
  readonly config: RulesConfig;
}

export type ParseResult = { readonly ok: true; readonly ruleSet: RuleSet } | { readonly ok: false; readonly errors: readonly RuleError[] };

class LineError extends Error {
  constructor(
    readonly kind: RuleErrorKind,
    message: string,
  ) {
    super(message);
  }
}

const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;

function parseInteger(text: string, what: string): number {
  if (!/^[+-]?\d+$/.test(text)) throw new LineError('invalid-number', `${what} "${text}" is not a whole number`);
  const n = Number(text);
  if (n < INT_MIN || n > INT_MAX) throw new LineError('invalid-number', `${what} "${text}" is outside the 32-bit range ${INT_MIN}..${INT_MAX}`);
  return n === 0 ? 0 : n; // no -0
}

/**
 * Any negative limit means unlimited, and so does the largest 32-bit value,
 * which is what Qpid stores for "unlimited"; both are reported as -1.
 */
function limit(n: number): number {
  return n < 0 || n === INT_MAX ? -1 : n;
}

interface Pair {
  readonly block: false;
  readonly key: string;
  readonly value: string;
}

const BLOCK_WORD = { block: true } as const;

/**
 * Yields `key = value` pairs (and, for CLT, `BLOCK` words) left to right. A
 * pair's shape is checked only when it is reached, so the caller checks its
 * key and value before the next pair is looked at: the first error in the
 * statement is the one reported (`a=b=c` fails on `a`, not on the stray `=`).
 */
function pairs(tokens: readonly Token[], allowBlock: true): Generator<Pair | typeof BLOCK_WORD>;
function pairs(tokens: readonly Token[], allowBlock: false): Generator<Pair>;
function* pairs(tokens: readonly Token[], allowBlock: boolean): Generator<Pair | typeof BLOCK_WORD> {
  let i = 0;
  while (i < tokens.length) {
    const key = tokens[i]!;
    if (allowBlock && key.kind === 'word' && key.text.toUpperCase() === 'BLOCK') {
      yield BLOCK_WORD;
      i += 1;
      continue;
    }
    if (i + 1 >= tokens.length) throw new LineError('property-key-only', `"${key.text}" needs "= value" after it`);
    if (tokens[i + 1]!.kind !== 'equals') {
      throw new LineError('property-no-equals', `"${key.text}" must be followed by "=", not "${tokens[i + 1]!.text}"`);
    }
    if (i + 2 >= tokens.length) throw new LineError('property-no-value', `"${key.text} =" has no value`);
    yield { block: false, key: key.text, value: tokens[i + 2]!.text };
    i += 3;
  }
}

type CltProperty = 'port' | 'connection_limit' | 'connection_frequency_limit' | 'product';

function spellings(...words: string[]): string[] {
  const snake = words.join('_');
  return [snake, words.join('-'), words.join('')];
}

const CLT_PROPERTIES = new Map<string, CltProperty>([
  ['port', 'port'],
  ...spellings('connection', 'limit').map((s) => [s, 'connection_limit'] as [string, CltProperty]),
  ...spellings('connection', 'frequency', 'limit').map((s) => [s, 'connection_frequency_limit'] as [string, CltProperty]),
  ['product', 'product'],
  ['pool', 'product'],
]);

const PROPERTY_NAMES = 'port, connection_limit, connection_frequency_limit, product (or pool)';

function allOr(value: string): string {
  return value.toUpperCase() === ALL ? ALL : value;
}

function parseClt(tokens: readonly Token[], line: number): CltRule | null {
  const identity = allOr(tokens[1]!.text);
  const seen = new Set<CltProperty>();
  let blocked = false;
  let port = ALL;
  let product = ALL;
  let countLimit: number | null = null;
  let frequencyLimit: number | null = null;
  let frequencyPeriodMs: number | null = null;
  for (const item of pairs(tokens.slice(2), true)) {
    if (item.block) {
      blocked = true;
      continue;
    }
    const { key, value } = item;
    const property = CLT_PROPERTIES.get(key.toLowerCase());
    if (property === undefined) throw new LineError('unknown-property', `unknown property "${key}" (known: ${PROPERTY_NAMES})`);
    if (seen.has(property)) throw new LineError('duplicate-property', `property ${property} is given more than once ("${key}")`);
    seen.add(property);
    switch (property) {
      case 'port':
        port = allOr(value.trim());
        break;
      case 'product':
        product = allOr(value.trim());
        break;
      case 'connection_limit':
        countLimit = limit(parseInteger(value, 'connection_limit'));
        break;
      case 'connection_frequency_limit': {
        const slash = value.indexOf('/');
        // The limit is an integer like any other, so a missing one is a bad number, not a bad period.
        if (slash === 0) throw new LineError('invalid-number', `connection_frequency_limit "${value}" has no limit before "/"`);
        frequencyLimit = limit(parseInteger(slash < 0 ? value : value.slice(0, slash), 'connection_frequency_limit'));
        if (slash > 0) {
          const period = parsePeriod(value.slice(slash + 1));
          if (!period.ok) throw new LineError(period.kind, `connection_frequency_limit: ${period.message}`);
          frequencyPeriodMs = period.ms;
        }
        break;
      }
    }
  }
  if (blocked) {
    return { line, identity, port, product, blocked, countLimit: null, frequencyLimit: null, frequencyPeriodMs: null };
  }
  if (countLimit === null && frequencyLimit === null) return null; // a rule that limits nothing is dropped
  return { line, identity, port, product, blocked, countLimit, frequencyLimit, frequencyPeriodMs };
}

interface MutableConfig {
  logAll: boolean;
  defaultFrequencyPeriodMs: number | null;
}

function parseConfig(tokens: readonly Token[], config: MutableConfig): void {
  for (const { key, value } of pairs(tokens.slice(1), false)) {
    const name = key.replaceAll('-', '_').toLowerCase();
    if (name === 'log_all' || name === 'logall') {
      config.logAll = value.toLowerCase() === 'true';
    } else if (name === 'default_frequency_period' || name === 'defaultfrequencyperiod') {
      config.defaultFrequencyPeriodMs = parseInteger(value, 'default_frequency_period (milliseconds)');
    }
    // Other CONFIG keys are ignored, as in Qpid.
  }
}

/** `[n] ACL outcome identity operation object [key=value …]`: accepted for old files, never used. */
function parseAcl(tokens: readonly Token[]): void {
  if (tokens.length - 1 < 4) return;
  // Only the shape of the pairs is checked; ACL keys and values are not used.
  for (const _pair of pairs(tokens.slice(5), false)) continue;
}

export function parseRules(text: string): ParseResult {
  const { statements, errors: lexErrors } = tokenize(text);
  const errors: RuleError[] = [...lexErrors];
  const rules: CltRule[] = [];
  const config: MutableConfig = { logAll: false, defaultFrequencyPeriodMs: null };
  for (const { line, tokens } of statements) {
    try {
      if (tokens.length === 1) {
        throw new LineError('not-enough-tokens', `"${tokens[0]!.text}" alone is not a statement; a rule reads like "CLT alice connection_limit=2"`);
      }
      let body = tokens;
      const first = tokens[0]!;
      if (first.kind === 'word' && /^\d+$/.test(first.text)) {
        if (tokens[1]!.kind === 'word' && tokens[1]!.text.toUpperCase() === 'ACL') {
          body = tokens.slice(1);
        } else {
          throw new LineError('number-not-allowed', `a line number ("${first.text}") may only stand before ACL`);
        }
      }
      const command = body[0]!.kind === 'word' ? body[0]!.text.toUpperCase() : '';
      if (command === 'CLT') {
        const rule = parseClt(body, line);
        if (rule !== null) rules.push(rule);
      } else if (command === 'CONFIG') {
        parseConfig(body, config);
      } else if (command === 'ACL') {
        parseAcl(body);
      } else {
        throw new LineError('unrecognised-command', `"${body[0]!.text}" is not a command (use CLT, CONFIG or ACL)`);
      }
    } catch (err) {
      if (!(err instanceof LineError)) throw err;
      errors.push({ line, kind: err.kind, message: err.message });
    }
  }
  if (errors.length > 0) return { ok: false, errors: errors.sort((a, b) => a.line - b.line) };
  return { ok: true, ruleSet: { rules, config } };
}
