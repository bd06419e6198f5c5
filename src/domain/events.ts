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
  readonly product?: string;
  readonly pool?: string;
  readonly events?: readonly string[];
  readonly afterId?: number;
  readonly limit?: number;
}
