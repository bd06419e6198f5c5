import { readFileSync } from 'node:fs';
import type { RulesSettings } from '../config/config.js';
import type { FileError } from '../domain/admin-replies.js';
import { FloatdError } from '../domain/errors.js';
import { parseGroups } from '../domain/rules/groups.js';
import type { LeaseStore } from '../domain/ports.js';
import { RuleBook, type Decision } from '../domain/rules/limits.js';
import { RuleSimulator } from '../domain/rules/simulator.js';
import { parseRules, type RuleError } from '../domain/rules/parser.js';

export interface LoadedRules {
  /** null when no rules are configured (every acquisition passes). */
  readonly book: RuleBook | null;
  readonly groups: ReadonlyMap<string, readonly string[]>;
  /** For logs: where the rules came from and how many there are. */
  readonly summary: string;
}

export type { FileError };

/** Reads a rules or groups file; an unreadable one is RULES_INVALID naming the file. */
export function readRulesText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new FloatdError('RULES_INVALID', `cannot read the ${what} ${file}: ${reason}`, { errors: [{ file, line: 0, kind: 'unreadable', message: reason }] });
  }
}

export function describeErrors(errors: readonly FileError[]): string {
  return errors.map((e) => `${e.file}${e.line > 0 ? `:${e.line}` : ''}: ${e.kind}: ${e.message}`).join('\n');
}

export function ruleFileErrors(file: string, errors: readonly RuleError[]): FileError[] {
  return errors.map((e) => ({ file, ...e }));
}

function rulesInvalid(errors: readonly FileError[], what: string): FloatdError {
  return new FloatdError('RULES_INVALID', `${errors.length} error(s); ${what}:\n${describeErrors(errors)}`, { errors });
}

/** A candidate rules file as a RuleBook (for `floatd rules`); any error throws RULES_INVALID listing them all. */
export function loadRuleBook(file: string, defaultPeriodMs: number): RuleBook {
  const parsed = parseRules(readRulesText(file, 'rules file'));
  if (!parsed.ok) throw rulesInvalid(ruleFileErrors(file, parsed.errors), 'the whole file is refused');
  return new RuleBook(parsed.ruleSet, defaultPeriodMs);
}

/**
 * Reads the configured rules (file or inline) and groups file, all or
 * nothing: any error throws RULES_INVALID listing every error with its line.
 */
export function loadRules(settings: RulesSettings): LoadedRules {
  let book: RuleBook | null = null;
  let where = 'no CLT rules';
  const source = settings.file ?? (settings.inline !== null ? 'config rules.inline' : null);
  const errors: FileError[] = [];
  if (source !== null) {
    const text = settings.file !== null ? readRulesText(settings.file, 'rules file') : settings.inline!;
    const parsed = parseRules(text);
    if (parsed.ok) {
      book = new RuleBook(parsed.ruleSet, settings.defaultFrequencyPeriodMs);
      where = `${parsed.ruleSet.rules.length} CLT rule(s) from ${source}`;
    } else {
      errors.push(...ruleFileErrors(source, parsed.errors));
    }
  }
  let groups: ReadonlyMap<string, readonly string[]> = new Map();
  if (settings.groupsFile !== null) {
    const parsed = parseGroups(readRulesText(settings.groupsFile, 'groups file'));
    if (parsed.ok) {
      groups = parsed.groups;
      where += `, groups of ${parsed.groups.size} user(s) from ${settings.groupsFile}`;
    } else {
      errors.push(...parsed.errors.map((e) => ({ file: settings.groupsFile!, line: e.line, kind: 'groups', message: e.message })));
    }
  }
  if (errors.length > 0) {
    throw rulesInvalid(errors, 'nothing of the rules is used');
  }
  return { book, groups, summary: where };
}

export interface ReplayResult {
  readonly tMs: number;
  readonly lease: string;
  readonly user: string;
  readonly listener: string;
  readonly product: string | null;
  readonly decision: Decision;
}

/**
 * Replays the server's own lease log (grants and lease ends, oldest first)
 * against candidate rules: what would they have denied? Acquisitions before
 * `sinceMs` still build up the counters, but only those from `sinceMs` on
 * are reported. A grant the rules would deny is taken as not held afterwards.
 */
export async function replayLeaseLog(
  store: LeaseStore,
  book: RuleBook,
  groups: ReadonlyMap<string, readonly string[]>,
  range: { sinceMs?: number; untilMs?: number },
): Promise<ReplayResult[]> {
  const sim = new RuleSimulator(book);
  const out: ReplayResult[] = [];
  const events = await store.queryEvents({ events: ['granted', 'released', 'expired', 'revoked'], ...(range.untilMs !== undefined ? { untilMs: range.untilMs } : {}) });
  for (const e of events) {
    if (e.leaseId === null || e.leaseId === undefined) continue;
    if (e.event !== 'granted') {
      sim.release(e.leaseId);
      continue;
    }
    const user = e.user ?? '';
    const listener = e.listener ?? 'tcp';
    const product = e.product ?? null;
    const decision = sim.acquire({ tMs: e.ts, lease: e.leaseId, user, groups: groups.get(user) ?? [], listener, product });
    if (range.sinceMs === undefined || e.ts >= range.sinceMs) out.push({ tMs: e.ts, lease: e.leaseId, user, listener, product, decision });
  }
  return out;
}
