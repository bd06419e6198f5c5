/**
 * What `floatd report usage` and `floatd report users` compute from the lease
 * log, as data: times are epoch milliseconds here, ISO 8601 in the JSON replies
 * (UsageReportJson, UsersReportJson).
 */

export const GRANULARITIES = ['hour', 'day', 'week', 'month'] as const;
export type Granularity = (typeof GRANULARITIES)[number];

export interface DenialCount {
  readonly code: string;
  readonly reason: string | null;
  readonly count: number;
}

/** One bucket of `floatd report usage` (and the totals over the whole range, in the same shape). */
export interface UsageRow {
  readonly start: number;
  readonly end: number;
  /** Most seats in use at any moment. */
  readonly peak: number;
  /** Seats in use, averaged over the time in the bucket (time-weighted), 2 decimals. */
  readonly average: number;
  /** Most seats the pools could grant in the bucket (seats of keys lacking an activation are not counted). */
  readonly poolSize: number;
  /** Most seats of installed keys that could not be granted in the bucket (their key lacked its activation); 0 when all could. */
  readonly ungrantableSeats: number;
  /** average / poolSize, in percent with 1 decimal; null without seats. */
  readonly utilisationPercent: number | null;
  readonly grants: number;
  readonly denials: number;
  readonly trueDenials: number;
  readonly denialsBy: readonly DenialCount[];
  readonly uniqueUsers: number;
}

export interface UsageReport {
  readonly from: number;
  readonly to: number;
  readonly by: Granularity;
  readonly product: string | null;
  readonly user: string | null;
  readonly trueDenialMinutes: number;
  readonly buckets: readonly UsageRow[];
  readonly total: UsageRow;
}

export interface UserRow {
  readonly user: string;
  /** Seat time within the range, in hours (2 decimals): the sum of the user's leases' durations. */
  readonly usageHours: number;
  /** Most leases the user held at once. */
  readonly peakConcurrent: number;
  readonly grants: number;
  readonly denials: number;
  readonly trueDenials: number;
}

export interface UsersReport {
  readonly from: number;
  readonly to: number;
  readonly product: string | null;
  readonly trueDenialMinutes: number;
  readonly users: readonly UserRow[];
}

/** A time as ISO 8601 UTC in place of epoch milliseconds. */
type IsoTimes<T, K extends keyof T> = Omit<T, K> & { readonly [P in K]: string };

/** A usage row as JSON (the admin API, --json): start and end as ISO 8601 UTC. */
export type UsageRowJson = IsoTimes<UsageRow, 'start' | 'end'>;

/** A usage report as JSON: times as ISO 8601 UTC, numbers as computed. */
export interface UsageReportJson extends IsoTimes<Omit<UsageReport, 'buckets' | 'total'>, 'from' | 'to'> {
  readonly buckets: readonly UsageRowJson[];
  readonly total: UsageRowJson;
}

/** A users report as JSON: times as ISO 8601 UTC. */
export type UsersReportJson = IsoTimes<UsersReport, 'from' | 'to'>;
