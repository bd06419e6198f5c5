import type { Block } from './blocks.js';
import type { Lease } from './lease.js';
import type { EventFilter, LeaseEvent, LeaseEventInput } from './events.js';

/** The view of the lease table inside one atomic transaction. */
export interface LeaseTx {
  findLease(id: string): Lease | undefined;
  findLeaseByHolder(user: string, instance: string, product: string): Lease | undefined;
  /** Leases of a pool that are still running at `now`. */
  countActive(poolId: string, now: number): number;
  /** Leases a user holds on a listener at `now`, of one product or of all (for count rules). */
  countHeld(listener: string, user: string, now: number, product?: string): number;
  /** New acquisitions a user made on a listener at a time > `sinceMs`, of one product or of all (for frequency rules). */
  countGrantsSince(listener: string, user: string, sinceMs: number, product?: string): number;
  /** Earliest expiry among running leases of the given pools, if any. */
  earliestExpiry(poolIds: readonly string[], now: number): number | undefined;
  insertLease(lease: Lease): void;
  updateExpiry(id: string, renewedAt: number, expiresAt: number): void;
  /** Moves every lease's renewal and expiry time by `deltaMs` (the wall clock jumped); returns how many leases moved. */
  shiftExpiries(deltaMs: number): number;
  deleteLease(id: string): void;
  /** Leases whose expiry is at or before `now`, oldest first. */
  expiredLeases(now: number, limit: number): Lease[];
  appendEvent(event: LeaseEventInput): void;
  /** The block in force at `now` that keeps this user (or instance) out of the product, if any. */
  activeBlock(user: string, instance: string, product: string, now: number): Block | undefined;
  insertBlock(block: Block): void;
  /** Lifts a block; returns it, or undefined when there is none with that id. */
  deleteBlock(id: string): Block | undefined;
  /**
   * Records a denial (`event.event` is 'denied'). One made since `sinceMs` with
   * the same remote address, listener, user, host, instance, product, pool,
   * code and reason already has an entry: its count goes up instead. Once the
   * remote address has `perAddress` entries since `sinceMs`, its further new
   * ones are counted in one catch-all entry of that address (no user, product
   * or code; `overflowMessage` as its message), so no peer grows the log
   * faster than a bounded rate.
   */
  recordDenial(event: LeaseEventInput, window: DenialWindow): void;
}

/** How denials are folded into counted lease-log entries. */
export interface DenialWindow {
  readonly sinceMs: number;
  readonly perAddress: number;
  readonly overflowMessage: string;
}

export interface StoredLicense {
  readonly id: string;
  readonly token: string;
  readonly addedAt: number;
}

/** Durable state: leases, license keys, settings and the lease log. */
export interface LeaseStore {
  /** Runs `fn` as one atomic transaction: all its writes commit, or none. */
  transact<T>(fn: (tx: LeaseTx) => T): T;
  /**
   * Group commit: runs `fn`, in which each `transact` becomes a savepoint
   * (still all-or-nothing on its own), and commits once at the end. Throws if
   * the commit fails, in which case nothing of `fn` is kept.
   */
  batch(fn: () => void): void;
  /**
   * Runs `fn` once the transaction in progress has committed (at once outside
   * one); never if it rolls back. Events, pushes and counts go through here, so
   * nothing is told or counted that was not kept.
   */
  afterCommit(fn: () => void): void;
  nextExpiry(): number | undefined;
  /** The latest time the store recorded (a lease-log entry or a renewal), to notice a clock turned back while stopped. */
  latestRecordedTime(): number | undefined;
  allLeases(): Lease[];
  /** Blocks in force at `now`, soonest to end first. */
  blocks(now: number): Block[];
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
  /** Sets `key` to `value` unless it already holds one; returns the stored value. */
  initMeta(key: string, value: string): string;
  listLicenses(): StoredLicense[];
  addLicense(license: StoredLicense, event: LeaseEventInput): void;
  removeLicense(id: string, event: LeaseEventInput): boolean;
  appendEvent(event: LeaseEventInput): void;
  queryEvents(filter: EventFilter): LeaseEvent[];
  /**
   * Where retention cuts the lease log: the id of the oldest entry recorded at
   * or after `beforeMs` (entries below it go), or undefined when the log holds
   * no entry that new.
   */
  pruneBoundary(beforeMs: number): number | undefined;
  /** Deletes up to `limit` of the oldest lease-log entries with an id below `beforeId`, in one short transaction; returns how many. */
  pruneEvents(beforeId: number, limit: number): number;
  /** Moves committed changes from the write-ahead log into the database (cheap and frequent beats big and rare). */
  checkpoint(): void;
  /**
   * Commits a small write and takes it back: throws (UNAVAILABLE) while the
   * storage refuses writes, so a server in a storage fault learns when it ended.
   */
  probe(): void;
  /** A number that changes whenever another process commits a change. */
  changeCounter(): number;
  close(): void;
}

export interface AdminToken {
  readonly name: string;
  readonly createdAt: number;
}

/** Admin API bearer tokens, stored only as hashes; every change is a lease-log entry. */
export interface AdminTokenStore {
  listAdminTokens(): AdminToken[];
  /** The name of the token with this hash, if any. */
  adminTokenByHash(hash: string): string | undefined;
  putAdminToken(name: string, hash: string, replace: boolean, event: LeaseEventInput): boolean;
  removeAdminToken(name: string, event: LeaseEventInput): boolean;
}

/** A vendor-signed activation as the server keeps it. */
export interface StoredActivation {
  readonly keyId: string;
  readonly activationId: string;
  readonly token: string;
  readonly source: 'online' | 'offline';
  /** The activation service it came from and re-validates with (online only). */
  readonly url: string | null;
  readonly activatedAt: number;
  /** When the vendor last confirmed it (activation or re-validation). */
  readonly validatedAt: number;
}

/** The server's activations and the offline requests it wrote. */
export interface ActivationStore {
  listActivations(): StoredActivation[];
  getActivation(keyId: string): StoredActivation | undefined;
  /** Stores (or replaces) a key's activation, consuming the offline request it answers, with its lease-log entry, in one transaction; false when the request was already consumed. */
  putActivation(activation: StoredActivation, consumeNonce: string | null, event: LeaseEventInput): boolean;
  /** A re-validation: the vendor's fresh activation and when. */
  revalidated(keyId: string, token: string, at: number): void;
  removeActivation(keyId: string, event: LeaseEventInput): boolean;
  addActivationRequest(nonce: string, keyId: string, kind: 'activation' | 'deactivation', createdAt: number): void;
  findActivationRequest(nonce: string): { keyId: string; kind: 'activation' | 'deactivation'; createdAt: number; consumedAt: number | null } | undefined;
}
