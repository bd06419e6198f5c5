/**
 * What the admin API (/v1/admin) answers, as data: the shapes its routes send,
 * the CLI and the dashboard read, and the server fills in.
 */
import type { BlockScope } from './blocks.js';
import type { LeaseEvent } from './events.js';
import type { LogAnchor } from './log-anchoring.js';
import type { UsageReportJson, UsersReportJson } from './usage-reports.js';

/** A running lease as the admin API shows it (the lmstat -a view). */
export interface LeaseView {
  readonly id: string;
  readonly user: string;
  readonly host: string;
  readonly instance: string;
  readonly remote: string;
  readonly listener: string;
  readonly product: string;
  readonly pool: string;
  readonly grantedAt: string;
  readonly renewedAt: string;
  readonly expiresAt: string;
  readonly expiresInMs: number;
  /** The cluster node the holder's client is on (several nodes on PostgreSQL only). */
  readonly node?: string;
}

/** A block in force, as the admin API shows it. */
export interface BlockView {
  readonly id: string;
  readonly scope: BlockScope;
  readonly user: string;
  readonly instance: string | null;
  readonly product: string;
  readonly since: string;
  readonly until: string;
  readonly endsInMs: number;
  readonly reason: string;
  readonly actor: string;
  readonly lease: string | null;
}

/** A listening socket: `tcp` and `tls` speak NDJSON, `http` and `https` are the web endpoint. */
export interface ListenerView {
  readonly name: string;
  readonly scheme: 'tcp' | 'tls' | 'http' | 'https';
  readonly address: string;
  readonly port: number;
  /** Refusing new lease connections for maintenance (floatd admin suspend). */
  readonly suspended?: boolean;
}

/** Readiness, uptime, version, listeners and the server's time: the dashboard's health panel. */
export interface ServerInfo {
  readonly version: string;
  /** The server's wall-clock time (ISO 8601). */
  readonly now: string;
  readonly ready: boolean;
  readonly reason: string;
  readonly startedAt: string | null;
  readonly uptimeSeconds: number;
  readonly listeners: readonly ListenerView[];
  readonly leaseSeconds: number;
  readonly logAnchor: LogAnchor | null;
}

/** A line of a rules or groups file that could not be read. */
export interface FileError {
  readonly file: string;
  readonly line: number;
  readonly kind: string;
  readonly message: string;
}

/** What a rules reload came to: the new rules in force, or why the server keeps the old ones. */
export type RulesReloadReply =
  | { readonly ok: true; readonly summary: string }
  | { readonly ok: false; readonly message: string; readonly errors: readonly FileError[] };

/** A TLS reload: refused (ok false) keeps the certificate the server had. */
export interface TlsReloadReply {
  readonly ok: boolean;
  readonly message: string;
}

/** POST /v1/admin/leases/:id/revoke: the lease ended and, with blockSeconds, the block made. */
export interface RevokeReply {
  readonly ok: true;
  readonly lease: LeaseView;
  readonly block?: BlockView;
}

/** POST /v1/admin/blocks/:id/lift. */
export interface UnblockReply {
  readonly ok: true;
  readonly block: BlockView;
}

/** POST /v1/admin/listeners/suspend and resume: the listeners suspended afterwards. */
export interface SuspensionReply {
  readonly ok: true;
  readonly suspended: readonly string[];
}

export interface LeasesReply {
  readonly ok: true;
  readonly leases: readonly LeaseView[];
}

export interface BlocksReply {
  readonly ok: true;
  readonly blocks: readonly BlockView[];
}

export interface LogReply {
  readonly ok: true;
  readonly events: readonly LeaseEvent[];
}

export interface UsageReportReply {
  readonly ok: true;
  readonly report: UsageReportJson;
}

export interface UsersReportReply {
  readonly ok: true;
  readonly report: UsersReportJson;
}

export type ServerReply = { readonly ok: true } & ServerInfo;
