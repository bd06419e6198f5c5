import { FloatdError } from '../domain/errors.js';
import type { AsyncReportEventSource, ReportEvent, ReportEventSource } from '../domain/events.js';
import { EVALUATION_POOL_ID } from '../domain/pool.js';

import { GRANULARITIES, type DenialCount, type Granularity, type UsageReport, type UsageReportJson, type UsageRow, type UsersReport, type UsersReportJson, type UserRow } from '../domain/usage-reports.js';

export { GRANULARITIES };
export type { DenialCount, Granularity, UsageReport, UsageReportJson, UsageRow, UsersReport, UsersReportJson, UserRow } from '../domain/usage-reports.js';

export interface ReportQuery {
  /** The range reported, [fromMs, toMs); a range reaching past `nowMs` ends at `nowMs`. */
  readonly fromMs: number;
  readonly toMs: number;
  readonly by: Granularity;
  readonly product?: string;
  readonly user?: string;
  /** A denial not followed by a grant to the same user and instance within this long is a true denial. */
  readonly trueDenialMs: number;
  /** Bucket boundaries at UTC midnight (and UTC hours) rather than in the local time zone. */
  readonly utc: boolean;
  readonly nowMs: number;
}

const MAX_BUCKETS = 100_000;

/** The start of the bucket after the one starting at `t` (a bucket boundary). */
function nextBoundary(t: number, by: Granularity, utc: boolean): number {
  const d = new Date(t);
  if (utc) {
    if (by === 'hour') d.setUTCHours(d.getUTCHours() + 1);
    else if (by === 'day') d.setUTCDate(d.getUTCDate() + 1);
    else if (by === 'week') d.setUTCDate(d.getUTCDate() + 7);
    else d.setUTCMonth(d.getUTCMonth() + 1);
  } else {
    if (by === 'hour') return t + 3_600_000;
    if (by === 'day') d.setDate(d.getDate() + 1);
    else if (by === 'week') d.setDate(d.getDate() + 7);
    else d.setMonth(d.getMonth() + 1);
  }
  return d.getTime();
}

/** The bucket boundary at or before `t`: the hour, the midnight, the Monday midnight, the first of the month. */
export function bucketStart(t: number, by: Granularity, utc: boolean): number {
  const d = new Date(t);
  if (utc) {
    d.setUTCMinutes(0, 0, 0);
    if (by === 'hour') return d.getTime();
    d.setUTCHours(0);
    if (by === 'week') d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
    if (by === 'month') d.setUTCDate(1);
    return d.getTime();
  }
  d.setMinutes(0, 0, 0);
  if (by === 'hour') return d.getTime();
  d.setHours(0);
  if (by === 'week') d.setDate(d.getDate() - ((d.getDay() + 6) % 7));
  if (by === 'month') d.setDate(1);
  return d.getTime();
}

interface Bucket {
  start: number;
  end: number;
  area: number;
  peak: number;
  poolSize: number;
  ungrantable: number;
  grants: number;
  denials: number;
  trueDenials: number;
  denialsBy: Map<string, DenialCount & { count: number }>;
  users: Set<string>;
}

interface UserAcc {
  usageMs: number;
  open: number;
  peak: number;
  grants: number;
  denials: number;
  trueDenials: number;
}

interface OpenLease {
  readonly user: string;
  readonly start: number;
  /** Counted in the figures (matches --user). */
  readonly counted: boolean;
}

interface PendingDenial {
  readonly ts: number;
  readonly product: string | null;
  readonly bucket: Bucket;
  readonly user: UserAcc;
  readonly count: number;
}

const round = (n: number, places: number) => {
  const f = 10 ** places;
  return Math.round(n * f) / f;
};

/**
 * Replays the lease log once, oldest entry first, and measures the range:
 * seats in use over time (a lease holds a seat from its grant to its release,
 * expiry or revocation; leases granted before the range count from its start,
 * leases still open count to its end), grants, denials and which denials were
 * true ones, per bucket and per user.
 */
class Replay {
  readonly buckets: Bucket[] = [];
  readonly users = new Map<string, UserAcc>();
  private readonly open = new Map<string, OpenLease>();
  /** Open leases per user (counted ones only), for unique users and per-user peaks. */
  private readonly openByUser = new Map<string, number>();
  private readonly pending = new Map<string, PendingDenial[]>();
  /** Each pool's size and whether it could grant (false while its key lacked its activation: activation-changed entries). */
  private readonly pools = new Map<string, { product: string | null; seats: number; grantable: boolean }>();
  private inUse = 0;
  private poolSize = 0;
  private ungrantable = 0;
  private t: number;
  private index = -1;
  readonly end: number;

  constructor(private readonly q: ReportQuery) {
    this.end = Math.max(q.fromMs, Math.min(q.toMs, q.nowMs));
    this.t = -Infinity;
    for (let start = q.fromMs; start < this.end; ) {
      const next = Math.min(nextBoundary(bucketStart(start, q.by, q.utc), q.by, q.utc), this.end);
      this.buckets.push({ start, end: next, area: 0, peak: 0, poolSize: 0, ungrantable: 0, grants: 0, denials: 0, trueDenials: 0, denialsBy: new Map(), users: new Set() });
      if (this.buckets.length > MAX_BUCKETS) throw new FloatdError('USAGE', `the range holds more than ${MAX_BUCKETS} ${q.by}s; choose a shorter range or a longer --by`);
      start = next;
    }
  }

  private user(name: string): UserAcc {
    let u = this.users.get(name);
    if (u === undefined) {
      u = { usageMs: 0, open: 0, peak: 0, grants: 0, denials: 0, trueDenials: 0 };
      this.users.set(name, u);
    }
    return u;
  }

  private get current(): Bucket | undefined {
    return this.index >= 0 ? this.buckets[this.index] : undefined;
  }

  /** Enters bucket `i`: what is open now is in use in it. */
  private enter(i: number): void {
    this.index = i;
    const b = this.buckets[i]!;
    b.peak = Math.max(b.peak, this.inUse);
    b.poolSize = Math.max(b.poolSize, this.poolSize);
    b.ungrantable = Math.max(b.ungrantable, this.ungrantable);
    for (const [name, n] of this.openByUser) {
      b.users.add(name);
      if (i === 0) {
        const u = this.user(name);
        u.peak = Math.max(u.peak, n);
      }
    }
  }

  /** Moves time to `t`, adding seat time to the buckets passed. */
  private advance(to: number): void {
    const t = Math.min(to, this.end);
    if (t <= this.t) return;
    if (this.index < 0) {
      if (t < this.q.fromMs || this.buckets.length === 0) {
        this.t = t;
        return;
      }
      this.t = this.q.fromMs;
      this.enter(0);
    }
    while (this.t < t) {
      const b = this.buckets[this.index]!;
      const segEnd = Math.min(t, b.end);
      b.area += this.inUse * (segEnd - this.t);
      this.t = segEnd;
      if (segEnd === b.end && this.index + 1 < this.buckets.length) this.enter(this.index + 1);
      else if (segEnd === b.end) break;
    }
  }

  private inRange(ts: number): boolean {
    return ts >= this.q.fromMs && ts < this.end;
  }

  private recomputePoolSize(): void {
    let seats = 0;
    let idle = 0;
    for (const p of this.pools.values()) {
      if (this.q.product !== undefined && p.product !== null && p.product !== this.q.product) continue;
      if (p.grantable) seats += p.seats;
      else idle += p.seats;
    }
    this.poolSize = seats;
    this.ungrantable = idle;
    const b = this.current;
    if (b !== undefined && this.t < this.end) {
      b.poolSize = Math.max(b.poolSize, seats);
      b.ungrantable = Math.max(b.ungrantable, idle);
    }
  }

  private notePool(e: ReportEvent): void {
    if (e.poolId === null || e.seatsTotal === null) return;
    const known = this.pools.get(e.poolId);
    // The evaluation pool serves every product.
    const product = e.poolId === EVALUATION_POOL_ID ? null : (known?.product ?? e.product);
    // An activation-changed entry's seats are what the pool can grant (0 while its key lacks its activation); a grant
    // proves it could grant; a key that needs activation is added unable to; other entries leave that as it was.
    const activation = e.event === 'activation-changed';
    const grantable = activation ? e.seatsTotal > 0 : e.event === 'granted' || (e.event === 'key-added' ? e.code !== 'activation-required' : (known?.grantable ?? true));
    const seats = activation && !grantable ? (known?.seats ?? 0) : e.seatsTotal;
    if (known !== undefined && known.seats === seats && known.product === product && known.grantable === grantable) return;
    this.pools.set(e.poolId, { product, seats, grantable });
    this.recomputePoolSize();
  }

  /**
   * The denials of a user and instance still waiting, seen from `ts`: those
   * whose window has passed are true denials; a grant (`grantProduct` given)
   * answers those within it, when it is for the product they asked for.
   */
  private settle(key: string, ts: number, grantProduct?: string | null): void {
    const list = this.pending.get(key);
    if (list === undefined) return;
    const keep: PendingDenial[] = [];
    for (const d of list) {
      if (ts - d.ts > this.q.trueDenialMs) this.countTrue(d);
      else if (grantProduct === undefined || (d.product !== null && d.product !== grantProduct)) keep.push(d);
    }
    if (keep.length > 0) this.pending.set(key, keep);
    else this.pending.delete(key);
  }

  private countTrue(d: PendingDenial): void {
    d.bucket.trueDenials += d.count;
    d.user.trueDenials += d.count;
  }

  private bucketAt(ts: number): Bucket {
    // Entries come in order, so the bucket is the current one or a later one.
    this.advance(ts);
    let i = Math.max(this.index, 0);
    while (this.buckets[i]!.end <= ts) i++;
    return this.buckets[i]!;
  }

  feed(e: ReportEvent): void {
    const q = this.q;
    if (e.ts >= this.end) {
      // After the range: only grants that answer denials made in it.
      if (e.event === 'granted' && e.user !== null && this.pending.size > 0) this.settle(`${e.user}\u0000${e.instance ?? ''}`, e.ts, e.product);
      return;
    }
    switch (e.event) {
      case 'granted': {
        this.advance(e.ts);
        this.notePool(e);
        if (e.leaseId === null || e.user === null) return;
        if (this.pending.size > 0) this.settle(`${e.user}\u0000${e.instance ?? ''}`, e.ts, e.product);
        const counted = q.user === undefined || e.user === q.user;
        this.open.set(e.leaseId, { user: e.user, start: e.ts, counted });
        if (!counted) return;
        this.inUse++;
        const n = (this.openByUser.get(e.user) ?? 0) + 1;
        this.openByUser.set(e.user, n);
        if (!this.inRange(e.ts)) return;
        const b = this.bucketAt(e.ts);
        b.peak = Math.max(b.peak, this.inUse);
        b.grants++;
        b.users.add(e.user);
        const u = this.user(e.user);
        u.grants++;
        u.peak = Math.max(u.peak, n);
        return;
      }
      case 'released':
      case 'expired':
      case 'revoked': {
        this.advance(e.ts);
        this.notePool(e);
        if (e.leaseId === null) return;
        const lease = this.open.get(e.leaseId);
        if (lease === undefined) return;
        this.open.delete(e.leaseId);
        if (!lease.counted) return;
        this.inUse--;
        const n = (this.openByUser.get(lease.user) ?? 1) - 1;
        if (n > 0) this.openByUser.set(lease.user, n);
        else this.openByUser.delete(lease.user);
        this.addUsage(lease, e.ts);
        return;
      }
      case 'denied': {
        this.notePool(e);
        if (e.user === null || (q.user !== undefined && e.user !== q.user) || !this.inRange(e.ts)) return;
        const b = this.bucketAt(e.ts);
        const u = this.user(e.user);
        b.denials += e.count;
        u.denials += e.count;
        const code = e.code ?? 'UNKNOWN';
        const key = `${code}\u0000${e.reason ?? ''}`;
        const by = b.denialsBy.get(key);
        if (by === undefined) b.denialsBy.set(key, { code, reason: e.reason, count: e.count });
        else by.count += e.count;
        const holder = `${e.user}\u0000${e.instance ?? ''}`;
        this.settle(holder, e.ts);
        const list = this.pending.get(holder) ?? [];
        list.push({ ts: e.ts, product: e.product, bucket: b, user: u, count: e.count });
        this.pending.set(holder, list);
        return;
      }
      case 'key-added':
      case 'activation-changed':
        this.advance(e.ts);
        this.notePool(e);
        return;
      case 'key-removed':
      case 'key-expired':
        this.advance(e.ts);
        if (e.poolId !== null && this.pools.delete(e.poolId)) this.recomputePoolSize();
        return;
      default:
        return;
    }
  }

  private addUsage(lease: OpenLease, endTs: number): void {
    const from = Math.max(lease.start, this.q.fromMs);
    const to = Math.min(endTs, this.end);
    if (to > from) this.user(lease.user).usageMs += to - from;
  }

  finish(): void {
    this.advance(this.end);
    for (const lease of this.open.values()) if (lease.counted) this.addUsage(lease, this.end);
    // Denials whose window has passed with no grant are true ones; those still inside it are not (yet).
    for (const list of this.pending.values()) {
      for (const d of list) if (d.ts + this.q.trueDenialMs <= this.q.nowMs) this.countTrue(d);
    }
    this.pending.clear();
  }
}

function usageRow(b: Pick<Bucket, 'start' | 'end' | 'area' | 'peak' | 'poolSize' | 'ungrantable' | 'grants' | 'denials' | 'trueDenials' | 'denialsBy'>, uniqueUsers: number): UsageRow {
  const duration = b.end - b.start;
  const average = duration > 0 ? b.area / duration : 0;
  return {
    start: b.start,
    end: b.end,
    peak: b.peak,
    average: round(average, 2),
    poolSize: b.poolSize,
    ungrantableSeats: b.ungrantable,
    utilisationPercent: b.poolSize > 0 ? round((100 * average) / b.poolSize, 1) : null,
    grants: b.grants,
    denials: b.denials,
    trueDenials: b.trueDenials,
    denialsBy: [...b.denialsBy.values()].map((d) => ({ code: d.code, reason: d.reason, count: d.count })).sort((x, y) => y.count - x.count || x.code.localeCompare(y.code) || (x.reason ?? '').localeCompare(y.reason ?? '')),
    uniqueUsers,
  };
}

function startReplay(q: ReportQuery): Replay {
  if (!(q.toMs > q.fromMs)) throw new FloatdError('USAGE', `the report's end (${new Date(q.toMs).toISOString()}) must come after its start (${new Date(q.fromMs).toISOString()})`);
  if (q.fromMs > q.nowMs) throw new FloatdError('USAGE', `the report's start (${new Date(q.fromMs).toISOString()}) is in the future`);
  return new Replay(q);
}

function replay(source: ReportEventSource, q: ReportQuery): Replay {
  const r = startReplay(q);
  // Grants up to the true-denial window after the end still answer denials made before it.
  for (const e of source.reportEvents({ untilMs: r.end + q.trueDenialMs, product: q.product })) r.feed(e);
  r.finish();
  return r;
}

/** The same over a lease log that streams its entries from a database across the network. */
async function replayAsync(source: AsyncReportEventSource, q: ReportQuery): Promise<Replay> {
  const r = startReplay(q);
  for await (const e of source.reportEvents({ untilMs: r.end + q.trueDenialMs, product: q.product })) r.feed(e);
  r.finish();
  return r;
}

/** `floatd report usage`: seats in use, grants and denials per bucket, and over the whole range. */
export function usageReport(source: ReportEventSource, q: ReportQuery): UsageReport {
  return usageOf(replay(source, q), q);
}

/** `floatd report usage` over a networked lease log (a cluster's PostgreSQL). */
export async function usageReportAsync(source: AsyncReportEventSource, q: ReportQuery): Promise<UsageReport> {
  return usageOf(await replayAsync(source, q), q);
}

function usageOf(r: Replay, q: ReportQuery): UsageReport {
  const all: Bucket = { start: q.fromMs, end: r.end, area: 0, peak: 0, poolSize: 0, ungrantable: 0, grants: 0, denials: 0, trueDenials: 0, denialsBy: new Map(), users: new Set() };
  for (const b of r.buckets) {
    all.area += b.area;
    all.peak = Math.max(all.peak, b.peak);
    all.poolSize = Math.max(all.poolSize, b.poolSize);
    all.ungrantable = Math.max(all.ungrantable, b.ungrantable);
    all.grants += b.grants;
    all.denials += b.denials;
    all.trueDenials += b.trueDenials;
    for (const [key, d] of b.denialsBy) {
      const t = all.denialsBy.get(key);
      if (t === undefined) all.denialsBy.set(key, { ...d });
      else t.count += d.count;
    }
    for (const u of b.users) all.users.add(u);
  }
  return {
    from: q.fromMs,
    to: r.end,
    by: q.by,
    product: q.product ?? null,
    user: q.user ?? null,
    trueDenialMinutes: q.trueDenialMs / 60_000,
    buckets: r.buckets.map((b) => usageRow(b, b.users.size)),
    total: usageRow(all, all.users.size),
  };
}

/** `floatd report users`: seat time, peak concurrent leases and denials per user, most seat time first. */
export function usersReport(source: ReportEventSource, q: Omit<ReportQuery, 'by'> & { readonly top?: number }): UsersReport {
  return usersOf(replay(source, { ...q, by: 'month' }), q);
}

/** `floatd report users` over a networked lease log (a cluster's PostgreSQL). */
export async function usersReportAsync(source: AsyncReportEventSource, q: Omit<ReportQuery, 'by'> & { readonly top?: number }): Promise<UsersReport> {
  return usersOf(await replayAsync(source, { ...q, by: 'month' }), q);
}

function usersOf(r: Replay, q: Omit<ReportQuery, 'by'> & { readonly top?: number }): UsersReport {
  const users = [...r.users]
    .map(([user, u]) => ({ user, usageHours: round(u.usageMs / 3_600_000, 2), peakConcurrent: u.peak, grants: u.grants, denials: u.denials, trueDenials: u.trueDenials }))
    .filter((u) => u.usageHours > 0 || u.grants > 0 || u.denials > 0 || u.peakConcurrent > 0)
    .sort((a, b) => b.usageHours - a.usageHours || b.denials - a.denials || a.user.localeCompare(b.user));
  return {
    from: q.fromMs,
    to: r.end,
    product: q.product ?? null,
    trueDenialMinutes: q.trueDenialMs / 60_000,
    users: q.top === undefined ? users : users.slice(0, q.top),
  };
}

const iso = (t: number) => new Date(t).toISOString();

/** A usage report as JSON: times as ISO 8601 UTC, numbers as computed. */
export function usageReportJson(report: UsageReport): UsageReportJson {
  const row = (r: UsageRow) => ({ ...r, start: iso(r.start), end: iso(r.end) });
  return { ...report, from: iso(report.from), to: iso(report.to), buckets: report.buckets.map(row), total: row(report.total) };
}

/** A users report as JSON: times as ISO 8601 UTC. */
export function usersReportJson(report: UsersReport): UsersReportJson {
  return { ...report, from: iso(report.from), to: iso(report.to) };
}
