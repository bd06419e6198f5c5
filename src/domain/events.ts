/** Every kind of lease-log entry. */
export const LEASE_EVENTS = [
  'granted',
  'renewed',
  'released',
  'expired',
  'denied',
  'revoked',
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
