/** Every kind of lease-log entry. */
export const LEASE_EVENTS = [
  'granted',
  'renewed',
  'released',
  'expired',
  'denied',
  'revoked',
  'blocked',
  'unblocked',
  'key-added',
  'key-removed',
  'key-expired',
  'evaluation-started',
  'rules-reloaded',
  'rules-rejected',
  'server-started',
  'server-stopped',
  'tls-reloaded',
  'listener-suspended',
  'listener-resumed',
  'admin-token-created',
  'admin-token-revoked',
  'clock-jump',
  'log-pruned',
  'activated',
  'deactivated',
  'activation-revalidated',
  'activation-failed',
  'activation-changed',
] as const;

export type LeaseEventKind = (typeof LEASE_EVENTS)[number];

export interface LeaseEventInput {
  readonly ts: number;
  readonly event: LeaseEventKind;
  readonly poolId?: string | null;
  readonly product?: string | null;
  readonly leaseId?: string | null;
  readonly user?: string | null;
  readonly host?: string | null;
  readonly instance?: string | null;
  readonly remote?: string | null;
  readonly listener?: string | null;
  readonly seatsInUse?: number | null;
  readonly seatsTotal?: number | null;
  readonly code?: string | null;
  readonly reason?: string | null;
  readonly message?: string | null;
  /** Who did it, for entries an operator caused through the admin API: `token:NAME` or `cert:SUBJECT`. */
  readonly actor?: string | null;
}

export interface LeaseEvent extends LeaseEventInput {
  readonly id: number;
  /** How many identical occurrences the entry stands for: above 1 only for repeated denials (one entry per client and minute). */
  readonly count: number;
}

export interface EventFilter {
  readonly sinceMs?: number;
  readonly untilMs?: number;
  readonly user?: string;
  readonly host?: string;
  readonly instance?: string;
  /** A lease id, or a prefix of one (the table shows the first 8 characters). */
  readonly leaseId?: string;
  readonly listener?: string;
  readonly actor?: string;
  readonly product?: string;
  readonly pool?: string;
  readonly events?: readonly string[];
  readonly afterId?: number;
  readonly beforeId?: number;
  /** The newest `limit` matching entries (still oldest first). */
  readonly limit?: number;
  /** The oldest `first` matching entries: for reading a long log in slices with `afterId`. */
  readonly first?: number;
}

/**
 * The fields of a lease-log entry that reports read (grants, lease ends,
 * denials, key changes), in log order. `count` is how many requests an entry
 * stands for (repeated denials may be recorded as one entry); 1 otherwise.
 */
export interface ReportEvent {
  readonly ts: number;
  readonly event: string;
  readonly poolId: string | null;
  readonly product: string | null;
  readonly leaseId: string | null;
  readonly user: string | null;
  readonly instance: string | null;
  readonly seatsTotal: number | null;
  readonly code: string | null;
  readonly reason: string | null;
  readonly count: number;
}

/** The entries reports read: everything before `untilMs`, of one product when given. */
export interface ReportEventQuery {
  readonly untilMs: number;
  readonly product?: string;
}

/** A lease log that streams the entries reports read, oldest first, without holding them all. */
export interface ReportEventSource {
  reportEvents(query: ReportEventQuery): Iterable<ReportEvent>;
}

/** A lease log that streams the entries reports read from across the network, a page at a time. */
export interface AsyncReportEventSource {
  reportEvents(query: ReportEventQuery): AsyncIterable<ReportEvent>;
}
