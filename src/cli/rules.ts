import { readFileSync } from 'node:fs';
import { openExisting } from '../app/inspect.js';
import { describeErrors, loadRuleBook, loadRules, readRulesText, replayLeaseLog, ruleFileErrors } from '../app/rules.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { FloatdError } from '../domain/errors.js';
import type { Decision, EffectiveLimits } from '../domain/rules/limits.js';
import { parseRules, type RuleSet } from '../domain/rules/parser.js';
import { describePeriod } from '../domain/rules/periods.js';
import { RuleSimulator } from '../domain/rules/simulator.js';
import { reloadRulesOfServer } from './admin.js';
import { CONFIG_FLAGS, configFrom, parse, table, timeFlag, type Io } from './common.js';

export const RULES_USAGE = `floatd rules check FILE [--json]
floatd rules explain FILE --user U [--group G]... [--groups FILE] [--listener NAME] [--product P] [--json]
floatd rules simulate FILE --events EVENTS.jsonl [--json]
floatd rules simulate FILE --from-log [--since TIME] [--until TIME] [--groups FILE] [--data-dir DIR] [--json]
floatd rules reload [--config FILE] [--data-dir DIR] [--server URL --token-file FILE]   (through the admin API, as floatd admin rules reload)
  check, explain and simulate also take --config FILE (for rules.defaultFrequencyPeriodMs and the groups file).`;

function fileArg(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new FloatdError('USAGE', `floatd rules ${command} takes one rules FILE; got ${positionals.length}`);
  return positionals[0]!;
}

function checkJson(ruleSet: RuleSet): unknown {
  return {
    ok: true,
    rules: ruleSet.rules.map((r) => ({
      identity: r.identity,
      port: r.port,
      product: r.product,
      blocked: r.blocked,
      countLimit: r.countLimit,
      frequencyLimit: r.frequencyLimit,
      frequencyPeriodMs: r.frequencyPeriodMs,
    })),
    config: { logAll: ruleSet.config.logAll, defaultFrequencyPeriodMs: ruleSet.config.defaultFrequencyPeriodMs },
  };
}

function unlimited(n: number | null): string {
  return n === null ? '-' : n < 0 ? 'unlimited' : String(n);
}

async function check(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, true);
  const file = fileArg(positionals, 'check');
  const parsed = parseRules(readRulesText(file, 'rules file'));
  if (values.json) {
    io.out(JSON.stringify(parsed.ok ? checkJson(parsed.ruleSet) : { ok: false, errors: parsed.errors.map((e) => ({ line: e.line, kind: e.kind, message: e.message })) }));
    return parsed.ok ? 0 : 1;
  }
  if (!parsed.ok) {
    io.err(`floatd rules check: RULES_INVALID: ${file}: ${parsed.errors.length} error(s); the whole file would be refused:\n${describeErrors(ruleFileErrors(file, parsed.errors))}`);
    return 1;
  }
  const { rules, config } = parsed.ruleSet;
  io.out(`${file}: valid, ${rules.length} rule(s)`);
  if (rules.length > 0) {
    io.out(
      table(
        rules.map((r) => [
          String(r.line),
          r.identity,
          r.port,
          r.product,
          r.blocked ? 'BLOCK' : '',
          unlimited(r.countLimit),
          r.frequencyLimit === null ? '-' : `${unlimited(r.frequencyLimit)}${r.frequencyPeriodMs === null ? ' per default period' : ` per ${describePeriod(r.frequencyPeriodMs)}`}`,
        ]),
        ['line', 'identity', 'port', 'product', 'block', 'leases', 'new leases'],
      ),
    );
  }
  io.out(
    `CONFIG log_all=${config.logAll} default_frequency_period=${config.defaultFrequencyPeriodMs === null ? 'not set (server default)' : `${config.defaultFrequencyPeriodMs} ms`}`,
  );
  return 0;
}

/** The explain contract: one count and per-period limits, most restrictive over product scopes. */
function explainJson(limits: EffectiveLimits): { blocked: boolean; countLimit: number | null; frequencyLimits: Array<{ periodMs: number; limit: number }>; frequencyEnabled: boolean; matched: string } {
  const counts = limits.counts.map((c) => c.limit);
  const byPeriod = new Map<number, number>();
  for (const f of limits.frequencies) byPeriod.set(f.periodMs, Math.min(byPeriod.get(f.periodMs) ?? Infinity, f.limit));
  return {
    blocked: limits.blocked,
    countLimit: counts.length === 0 ? null : Math.min(...counts),
    frequencyLimits: [...byPeriod].sort((a, b) => a[0] - b[0]).map(([periodMs, limit]) => ({ periodMs, limit })),
    frequencyEnabled: limits.frequencyEnabled,
    matched: limits.matched,
  };
}

async function explain(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      config: CONFIG_FLAGS.config,
      user: { type: 'string' },
      group: { type: 'string', multiple: true },
      groups: { type: 'string' },
      listener: { type: 'string' },
      product: { type: 'string' },
      json: { type: 'boolean' },
    },
    true,
  );
  const file = fileArg(positionals, 'explain');
  if (values.user === undefined) throw new FloatdError('USAGE', 'floatd rules explain needs --user U');
  const config = configFrom(io, values, { 'rules.groupsFile': values.groups });
  const book = loadRuleBook(file, config.rules.defaultFrequencyPeriodMs);
  // The user's groups: those the groups file (--groups, or the config's rules.groupsFile) gives, plus any --group.
  const fromFile = loadRules({ ...config.rules, file: null, inline: null }).groups.get(values.user) ?? [];
  const groups = [...new Set([...fromFile, ...(values.group ?? [])])];
  const who = { listener: values.listener ?? 'tcp', user: values.user, groups, product: values.product ?? null };
  const limits = book.limitsFor(who);
  if (values.json) {
    io.out(JSON.stringify(explainJson(limits)));
    return 0;
  }
  const groupList = who.groups.length > 0 ? ` (groups ${who.groups.join(', ')})` : '';
  const level = { user: 'the rules naming the user', group: 'the rules of the user’s groups', default: 'the default (ALL) rules', none: 'no rule' }[limits.matched];
  io.out(`user ${who.user}${groupList} on listener ${who.listener}${who.product ? `, product ${who.product}` : ''}: ${level} apply`);
  if (limits.blocked) {
    io.out('  blocked: every new lease is refused');
    return 0;
  }
  const scope = (p: string | null) => (p === null ? '' : ` (leases of ${p})`);
  if (limits.counts.length === 0) io.out('  leases held at once: no limit');
  for (const c of limits.counts) io.out(`  leases held at once: at most ${c.limit}${scope(c.product)}`);
  if (!limits.frequencyEnabled) io.out('  new leases: frequency limits are switched off (default_frequency_period ≤ 0)');
  else if (limits.frequencies.length === 0) io.out('  new leases: no limit');
  for (const f of [...limits.frequencies].reverse()) io.out(`  new leases: at most ${f.limit} per ${describePeriod(f.periodMs)}${scope(f.product)}`);
  return 0;
}

interface SimEvent {
  readonly line: number;
  readonly tMs: number;
  readonly op: 'acquire' | 'release';
  readonly lease: string;
  readonly user: string;
  readonly groups: string[];
  readonly listener: string;
  readonly product: string | null;
}

function parseEvents(file: string): SimEvent[] {
  const events: SimEvent[] = [];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FloatdError('INPUT_INVALID', `cannot read the events file ${file}: ${(err as Error).message}`);
  }
  const lines = text.split(/\r?\n/);
  lines.forEach((text, i) => {
    const line = i + 1;
    if (text.trim() === '') return;
    const bad = (why: string): never => {
      throw new FloatdError('INPUT_INVALID', `${file}:${line}: ${why}`);
    };
    let o: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return bad('each line must be one JSON object');
      o = parsed as Record<string, unknown>;
    } catch (err) {
      return bad(`not JSON: ${(err as Error).message}`);
    }
    const tMs = o['tMs'];
    if (typeof tMs !== 'number' || !Number.isFinite(tMs)) return bad('"tMs" must be a number of milliseconds');
    const previous = events.at(-1);
    if (previous !== undefined && tMs < previous.tMs) bad(`"tMs" ${tMs} is earlier than the line before (${previous.tMs}); events must be in time order`);
    const op = o['op'];
    if (op !== 'acquire' && op !== 'release') return bad('"op" must be "acquire" or "release"');
    const lease = o['lease'];
    if ((typeof lease !== 'string' || lease === '') && typeof lease !== 'number') return bad('"lease" must name the lease');
    const user = o['user'];
    if (op === 'acquire' && (typeof user !== 'string' || user === '')) return bad('"user" is required for an acquire');
    const groups = o['groups'] ?? [];
    if (!Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) return bad('"groups" must be an array of group names');
    const listener = o['listener'] ?? 'tcp';
    if (typeof listener !== 'string') return bad('"listener" must be a listener name');
    const product = o['product'] ?? null;
    if (product !== null && typeof product !== 'string') return bad('"product" must be a product name');
    events.push({ line, tMs, op, lease: String(lease), user: typeof user === 'string' ? user : '', groups, listener, product });
  });
  return events;
}

function decisionJson(lease: string, d: Decision, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return d.allowed ? { lease, allowed: true, ...extra } : { lease, allowed: false, reason: d.reason, message: d.message, ...extra };
}

async function simulate(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      ...CONFIG_FLAGS,
      events: { type: 'string' },
      'from-log': { type: 'boolean' },
      since: { type: 'string' },
      until: { type: 'string' },
      groups: { type: 'string' },
      json: { type: 'boolean' },
    },
    true,
  );
  const file = fileArg(positionals, 'simulate');
  if ((values.events === undefined) === (values['from-log'] !== true)) {
    throw new FloatdError('USAGE', 'floatd rules simulate needs exactly one of --events FILE.jsonl and --from-log');
  }
  const config = configFrom(io, values, { 'rules.groupsFile': values.groups });
  const book = loadRuleBook(file, config.rules.defaultFrequencyPeriodMs);
  let allowed = 0;
  let denied = 0;
  const count = (d: Decision) => (d.allowed ? (allowed += 1) : (denied += 1));
  if (values.events !== undefined) {
    const sim = new RuleSimulator(book);
    for (const e of parseEvents(values.events)) {
      if (e.op === 'release') {
        sim.release(e.lease);
        continue;
      }
      const d = sim.acquire(e);
      count(d);
      if (values.json) io.out(JSON.stringify(decisionJson(e.lease, d)));
      else io.out(`t=${e.tMs}ms  ${e.lease}  ${e.user}  ${d.allowed ? 'allowed' : `DENIED (${d.reason}): ${d.message}`}`);
    }
  } else {
    const now = new SystemClock().now();
    const groups = loadRules({ ...config.rules, file: null, inline: null }).groups;
    const store = openExisting(config);
    try {
      const sinceMs = timeFlag(values.since, 'since', now);
      const untilMs = timeFlag(values.until, 'until', now);
      const results = await replayLeaseLog(store, book, groups, { ...(sinceMs !== undefined ? { sinceMs } : {}), ...(untilMs !== undefined ? { untilMs } : {}) });
      for (const r of results) {
        count(r.decision);
        if (values.json) {
          io.out(JSON.stringify(decisionJson(r.lease, r.decision, { tMs: r.tMs, at: new Date(r.tMs).toISOString(), user: r.user, listener: r.listener, product: r.product })));
        } else if (!r.decision.allowed) {
          io.out(`${new Date(r.tMs).toISOString()}  ${r.user}  ${r.product ?? ''}  lease ${r.lease.slice(0, 8)}  would be DENIED (${r.decision.reason}): ${r.decision.message}`);
        }
      }
    } finally {
      store.close();
    }
  }
  if (!values.json) io.out(`${allowed + denied} acquisition(s): ${allowed} allowed, ${denied} denied`);
  return 0;
}

async function reload(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { ...CONFIG_FLAGS, 'token-file': { type: 'string' }, server: { type: 'string' }, ca: { type: 'string' } });
  return reloadRulesOfServer(configFrom(io, values), io, values);
}

const SUBCOMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = { check, explain, simulate, reload };

export async function rules(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const run = sub === undefined ? undefined : SUBCOMMANDS[sub];
  if (run === undefined) throw new FloatdError('USAGE', `floatd rules needs one of: check, explain, simulate, reload\n${RULES_USAGE}`);
  return run(rest, io);
}
