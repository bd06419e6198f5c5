import { hash as digest } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { LogSigner } from '../crypto/log-signer.js';

/**
 * The lease log's hash chain.
 *
 * Canonical encoding, version 1: the JSON array
 *   [1, id, ts, event, pool_id, product, lease_id, user, host, instance, remote,
 *    listener, seats_in_use, seats_total, code, reason, message, actor, ...extensions]
 * (absent values as null, numbers as JSON integers, strings JSON-escaped), and
 *   hash = lowercase hex of SHA-256(UTF-8(prev_hash ‖ encoding))
 * where prev_hash is the 64-character hash of the entry before (64 zeros for
 * the first entry of the chain).
 *
 * Columns added to `events` later are encoded only by being listed in
 * CHAIN_EXTENSIONS, each as a trailing ["name", value] pair that appears only
 * when the entry carries something there, so entries written before the column
 * existed keep their hash. An entry is final once written: a later UPDATE of
 * any encoded column is, by design, reported as a change.
 */
export const CHAIN_VERSION = 1;
export const GENESIS = '0'.repeat(64);

/** The version-1 columns, in encoding order. */
export const CHAIN_COLUMNS = [
  'id', 'ts', 'event', 'pool_id', 'product', 'lease_id', 'user', 'host', 'instance', 'remote',
  'listener', 'seats_in_use', 'seats_total', 'code', 'reason', 'message', 'actor',
] as const;

/**
 * Columns encoded after version 1, in order, when present on the table and
 * carrying a value (none yet). A column is listed here only if an entry's value
 * in it is final once written.
 *
 * `count` (repeated identical denials recorded as one entry per minute,
 * migration 003) is deliberately not encoded: it is raised in place while its
 * minute lasts, after the entry was chained, so covering it would report every
 * aggregated denial as a change. The chain therefore does not protect an
 * entry's count (docs/lease-log.md says so). To cover it, the aggregate would
 * have to be written once its minute is over; then add
 *   { column: 'count', carries: (v) => v !== null && v !== undefined && v !== 1 }
 * so single entries, and those written before, keep their hashes.
 */
export const CHAIN_EXTENSIONS: ReadonlyArray<{ readonly column: string; readonly carries: (v: unknown) => boolean }> = [];

/** The canonical encoding of one entry, from its version-1 values (in CHAIN_COLUMNS order) and its extension values. */
export function entryEncoding(values: readonly unknown[], extensions: readonly unknown[]): string {
  return encodingFromJson(JSON.stringify(values), extensions);
}

/**
 * The same from the version-1 values already as a JSON array: SQLite's
 * json_array() over the columns gives exactly JSON.stringify's text for
 * integers, null and (well-formed) strings, which lets verification read one
 * string per entry instead of seventeen values.
 */
export function encodingFromJson(text: string, extensions: readonly unknown[]): string {
  let extra = '';
  for (let i = 0; i < extensions.length && i < CHAIN_EXTENSIONS.length; i++) {
    const x = CHAIN_EXTENSIONS[i]!;
    if (x.carries(extensions[i])) extra += `,${JSON.stringify([x.column, extensions[i]])}`;
  }
  return `[${CHAIN_VERSION},${text.slice(1, -1)}${extra}]`;
}

/** The hash of an entry from its encoding and the hash before it. */
export function chainHash(prev: string, encoding: string): string {
  // One-shot crypto.hash: half the cost of createHash().update().digest() per entry.
  return digest('sha256', prev + encoding, 'hex');
}

/** The hash of one entry, given the hash of the entry before it. */
export function entryHash(values: readonly unknown[], extensions: readonly unknown[], prev: string): string {
  return chainHash(prev, entryEncoding(values, extensions));
}

/** What a checkpoint signs. */
export function checkpointPayload(eventId: number, count: number, ts: number, head: string): string {
  return `floatd-log-checkpoint v${CHAIN_VERSION} event=${eventId} count=${count} ts=${ts} head=${head}`;
}

export interface Checkpoint {
  readonly eventId: number;
  readonly headHash: string;
  readonly count: number;
  readonly ts: number;
  readonly kid: string;
  readonly signature: string;
}

export interface ChainProblem {
  /** changed: an entry's content differs from what was hashed; removed: entries are missing; inserted: entries were added; checkpoint: a signed checkpoint does not match or its signature fails. */
  readonly kind: 'changed' | 'removed' | 'inserted' | 'checkpoint';
  /** The entry where the problem shows (for removed: the first entry after the gap). */
  readonly id: number | null;
  readonly ts: number | null;
  readonly detail: string;
}

export interface ChainReport {
  readonly ok: boolean;
  readonly entries: number;
  readonly first: { readonly id: number; readonly ts: number } | null;
  readonly last: { readonly id: number; readonly ts: number } | null;
  /** Entries before `first` were pruned by retention (recorded by a log-pruned entry). */
  readonly prunedBefore: number | null;
  readonly checkpoints: number;
  readonly lastCheckpoint: Checkpoint | null;
  /** Entries after the last checkpoint: chained, not yet covered by a signature. */
  readonly unsigned: number;
  readonly keyId: string;
  readonly problem: ChainProblem | null;
}

/** A row of log_checkpoints. */
export interface CheckpointRow {
  event_id: number;
  head_hash: string;
  count: number;
  ts: number;
  kid: string;
  signature: string;
}

export function toCheckpoint(r: CheckpointRow): Checkpoint {
  return { eventId: r.event_id, headHash: r.head_hash, count: r.count, ts: r.ts, kid: r.kid, signature: r.signature };
}

/** Which extension columns the events table has, in CHAIN_EXTENSIONS order (a prefix that may have holes is kept in order). */
export function presentExtensions(db: Database.Database): string[] {
  const columns = new Set((db.pragma('table_info(events)') as Array<{ name: string }>).map((c) => c.name));
  return CHAIN_EXTENSIONS.map((x) => x.column).filter((c) => columns.has(c));
}

/** Signs and stores a checkpoint of the entry `eventId` (already in the table). */
export function writeCheckpoint(db: Database.Database, signer: LogSigner, eventId: number, head: string, count: number, ts: number): void {
  db.prepare('INSERT OR IGNORE INTO log_checkpoints (event_id, head_hash, count, ts, kid, signature) VALUES (?, ?, ?, ?, ?, ?)').run(
    eventId, head, count, ts, signer.kid, signer.sign(checkpointPayload(eventId, count, ts, head)),
  );
}
