/**
 * Effective limits (CLT-RULES.md section 3) and the acquire-time decision
 * (section 4). Pure: counts come in through `Usage`, time as `now`.
 */
import { describePeriod } from './periods.js';
import { ALL, type CltRule, type RuleSet } from './parser.js';

export const DEFAULT_FREQUENCY_PERIOD_MS = 60_000;

export type Level = 'user' | 'group' | 'default' | 'none';

/** A limit, counted over the leases of one product (`product`) or of every product (null). */
export interface CountLimit {
  readonly limit: number;
  readonly product: string | null;
}

export interface FrequencyLimit {
  readonly periodMs: number;
  readonly limit: number;
  readonly product: string | null;
}

export interface EffectiveLimits {
  readonly matched: Level;
  readonly blocked: boolean;
  readonly counts: readonly CountLimit[];
  /** Longest period first: the order they are checked in. */
  readonly frequencies: readonly FrequencyLimit[];
  readonly frequencyEnabled: boolean;
}

/** A rule after the default period and `default_frequency_period ≤ 0` applied. */
interface ActiveRule {
  readonly port: string;
  readonly product: string;
  readonly blocked: boolean;
  readonly countLimit: number | null;
  readonly frequency: { readonly limit: number; readonly periodMs: number } | null;
}

export interface Identity {
  readonly listener: string;
  readonly user: string;
  readonly groups: readonly string[];
  /** The product being acquired; rules naming another product do not apply. */
  readonly product: string | null;
}

const CACHE_LIMIT = 100_000;

/**
 * A loaded rules file, indexed by identity. Effective limits are cached per
 * (listener, user, groups, product); a reload builds a new RuleBook, which
 * drops the cache with it.
 */
export class RuleBook {
  readonly logAll: boolean;
  readonly frequencyEnabled: boolean;
  readonly defaultFrequencyPeriodMs: number;
  readonly size: number;
  private readonly byIdentity = new Map<string, ActiveRule[]>();
  private readonly cache = new Map<string, EffectiveLimits>();

  constructor(
    readonly ruleSet: RuleSet,
    /** The server's default period, used when the file has no CONFIG default_frequency_period. */
    serverDefaultPeriodMs: number = DEFAULT_FREQUENCY_PERIOD_MS,
  ) {
    this.logAll = ruleSet.config.logAll;
    this.defaultFrequencyPeriodMs = ruleSet.config.defaultFrequencyPeriodMs ?? serverDefaultPeriodMs;
    this.frequencyEnabled = this.defaultFrequencyPeriodMs > 0;
    let size = 0;
    for (const rule of ruleSet.rules) {
      const active = this.activate(rule);
      if (active === null) continue;
      size += 1;
      const bucket = this.byIdentity.get(rule.identity);
      if (bucket === undefined) this.byIdentity.set(rule.identity, [active]);
      else bucket.push(active);
    }
    this.size = size;
  }

  private activate(rule: CltRule): ActiveRule | null {
    const frequency =
      rule.frequencyLimit !== null && this.frequencyEnabled
        ? { limit: rule.frequencyLimit, periodMs: rule.frequencyPeriodMs ?? this.defaultFrequencyPeriodMs }
        : null;
    // With frequency switched off, a rule that only limited frequency vanishes and shadows nothing.
    if (!rule.blocked && rule.countLimit === null && frequency === null) return null;
    return { port: rule.port, product: rule.product, blocked: rule.blocked, countLimit: rule.countLimit, frequency };
  }

  private applicable(identity: string, who: Identity): ActiveRule[] {
    const bucket = this.byIdentity.get(identity);
    if (bucket === undefined) return [];
    return bucket.filter(
      (r) => (r.port === ALL || r.port === who.listener) && (r.product === ALL || r.product === who.product),
    );
  }

  limitsFor(who: Identity): EffectiveLimits {
    const key = `${who.listener}\u0000${who.user}\u0000${who.product ?? ''}\u0000${who.groups.join('\u0000')}`;
    let limits = this.cache.get(key);
    if (limits === undefined) {
      limits = this.compute(who);
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(key, limits);
    }
    return limits;
  }

  /** Levels: user → the user's groups together → default → none; the first that has rules wins whole. */
  private compute(who: Identity): EffectiveLimits {
    const user = who.user === ALL ? [] : this.applicable(who.user, who);
    if (user.length > 0) return this.merge('user', user);
    const groups = [...new Set(who.groups)].filter((g) => g !== ALL).flatMap((g) => this.applicable(g, who));
    if (groups.length > 0) return this.merge('group', groups);
    const fallback = this.applicable(ALL, who);
    if (fallback.length > 0) return this.merge('default', fallback);
    return { matched: 'none', blocked: false, counts: [], frequencies: [], frequencyEnabled: this.frequencyEnabled };
  }

  /** Most restrictive wins: any block blocks; per product scope the smallest count; per (period, scope) the smallest frequency. */
  private merge(matched: Level, rules: readonly ActiveRule[]): EffectiveLimits {
    const frequencyEnabled = this.frequencyEnabled;
    if (rules.some((r) => r.blocked)) return { matched, blocked: true, counts: [], frequencies: [], frequencyEnabled };
    const counts = new Map<string, CountLimit>();
    const frequencies = new Map<string, FrequencyLimit>();
    const smaller = (a: number | undefined, b: number): number => (a === undefined || (b >= 0 && (a < 0 || b < a)) ? b : a);
    for (const r of rules) {
      const product = r.product === ALL ? null : r.product;
      const scope = product ?? '';
      if (r.countLimit !== null) {
        counts.set(scope, { limit: smaller(counts.get(scope)?.limit, r.countLimit), product });
      }
      if (r.frequency !== null) {
        const key = `${r.frequency.periodMs}\u0000${scope}`;
        frequencies.set(key, { periodMs: r.frequency.periodMs, limit: smaller(frequencies.get(key)?.limit, r.frequency.limit), product });
      }
    }
    return {
      matched,
      blocked: false,
      counts: [...counts.values()].filter((c) => c.limit >= 0),
      frequencies: [...frequencies.values()].filter((f) => f.limit >= 0).sort((a, b) => b.periodMs - a.periodMs),
      frequencyEnabled,
    };
  }
}

/** The counters a decision needs, for one (listener, user). */
export interface Usage {
  /** Leases held now, of `product` or (null) of every product. */
  held(product: string | null): number;
  /** Accepted acquisitions at a time > `sinceMs`, of `product` or (null) of every product. */
  acquiredSince(sinceMs: number, product: string | null): number;
}

export type Decision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly reason: 'count' | 'frequency' | 'blocked'; readonly message: string };

const ALLOWED: Decision = { allowed: true };

function forProduct(product: string | null): string {
  return product === null ? '' : ` for product ${product}`;
}

/** Blocked, then each frequency limit longest period first, then the count limit. */
export function decide(limits: EffectiveLimits, who: Pick<Identity, 'user' | 'listener'>, now: number, usage: Usage): Decision {
  const on = `on listener ${who.listener}`;
  if (limits.blocked) return { allowed: false, reason: 'blocked', message: `user ${who.user} is blocked ${on}` };
  for (const f of limits.frequencies) {
    const recent = usage.acquiredSince(now - f.periodMs, f.product);
    if (recent >= f.limit) {
      return {
        allowed: false,
        reason: 'frequency',
        message: `user ${who.user} breaks acquisition frequency limit ${f.limit} per ${describePeriod(f.periodMs)} ${on}${forProduct(f.product)}`,
      };
    }
  }
  for (const c of limits.counts) {
    if (usage.held(c.product) >= c.limit) {
      return { allowed: false, reason: 'count', message: `user ${who.user} breaks lease count limit ${c.limit} ${on}${forProduct(c.product)}` };
    }
  }
  return ALLOWED;
}
