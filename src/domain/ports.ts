import type { Block } from './blocks.js';
import type { Lease } from './lease.js';
import type { EventFilter, LeaseEvent, LeaseEventInput } from './events.js';
import type { LeaseWrite } from './lease-decisions.js';

/**
 * One unit of work: what a lease operation reads and writes, all committed at
 * once or not at all. Reads see the unit's own writes. Every method may wait
 * on the store (a networked database), so a unit awaits each call and awaits
 * nothing else: a unit holds its pools until it ends.
 */
export interface LeaseUnit {
  /**
   * Lease time as the store keeps it, when the store keeps it: a database
   * several nodes share gives its own clock as the unit began, so node clocks
   * need not agree. Absent when the server's clock is lease time.
   */
  now?(): number;
  findLease(id: string): Promise<Lease | undefined>;
  findByHolder(user: string, instance: string, product: string): Promise<Lease | undefined>;
  /**
   * Leases of a pool that are still running at `now`. `seats` is the pool's
   * size as this node's license key says: a shared database records it and
   * refuses a commit that would run more leases than that. With `intent`
   * `grant` (the default) the count holds until the unit ends: a shared
   * database locks the pool for it, so grants to one pool are decided one at a
   * time; `read` only counts (a renewal's log entry), taking no lock.
   */
  seatsInUse(poolId: string, now: number, seats: number, intent?: 'grant' | 'read'): Promise<number>;
  /** Earliest expiry among running leases of the given pools, if any. */
  earliestExpiry(poolIds: readonly string[], now: number): Promise<number | undefined>;
  /** What CLT rules count for one user on one listener (`product` null: every product). */
  ruleUsage(listener: string, user: string, now: number): RuleUsage;
  /** The block in force at `now` that keeps this user (or instance) out of the product, if any. */
  activeBlock(user: string, instance: string, product: string, now: number): Promise<Block | undefined>;
  /** Leases whose expiry is at or before `now`, oldest first. */
  expiredLeases(now: number, limit: number): Promise<Lease[]>;
  /** Every lease, for the server's jobs that revise them all (keys gone, a clock jump). */
  leases(): Promise<Lease[]>;
  /** Writes a decision's rows, then its lease-log entries. */
  apply(changes: { readonly writes: readonly LeaseWrite[]; readonly log: readonly LeaseEventInput[] }): Promise<void>;
  /** Moves every lease's renewal and expiry time by `deltaMs` (the wall clock jumped); returns how many leases moved. */
  shiftExpiries(deltaMs: number): Promise<number>;
  /** Records a denial, folding repeats into a counted entry (LeaseTx.recordDenial). */
  recordDenial(event: LeaseEventInput, window: DenialWindow): Promise<void>;
  insertBlock(block: Block): Promise<void>;
  /** Lifts a block; returns it, or undefined when there is none with that id. */
  deleteBlock(id: string): Promise<Block | undefined>;
  appendEvent(event: LeaseEventInput): Promise<void>;
  /** Runs `fn` once the unit has committed; never if it rolls back. Pushes and counts go through here. */
  publish(fn: () => void): void;
  /** Runs `fn` if the unit rolls back, after its writes were undone (to take back what it changed in memory). */
  onRollback(fn: () => void): void;
}

/** Counts of a user's leases and grants on a listener, for CLT rules. */
export interface RuleUsage {
  /** Leases held now, of `product` or (null) of every product. */
  held(product: string | null): Promise<number>;
  /** Accepted acquisitions at a time > `sinceMs`, of `product` or (null) of every product. */
  acquiredSince(sinceMs: number, product: string | null): Promise<number>;
}

/** The synchronous view of the lease table inside one SQLite (or in-memory) transaction: what a store's units are built on. */
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

/** Options of one unit of work. */
export interface UnitOptions {
  /** Whose request it is (a client instance), for fairness between clients; '' (the default) for the server's own jobs. */
  readonly source?: string;
}

/**
 * Durable state: leases, license keys, settings and the lease log. Every
 * method but `close` and `configureCommits` answers through a promise, so a
 * networked database can sit behind it; each write is one transaction.
 */
export interface LeaseStore {
  /**
   * Runs `fn` as one unit of work: all its writes commit, or none, and what it
   * published is told only after the commit. Units are serialized against
   * each other (a store may commit several at once, each still all-or-nothing).
   * Rejects with the error `fn` threw, or with UNAVAILABLE when the storage
   * refused the commit.
   */
  unit<T>(fn: (u: LeaseUnit) => Promise<T>, options?: UnitOptions): Promise<T>;
  /** Resolves once every unit submitted so far has ended. */
  drained(): Promise<void>;
  /** How commits are guarded and counted (set once, by the composition root). */
  configureCommits(policy: CommitPolicy): void;
  /** Changes other writers commit (keys, activations, rules, leases). */
  readonly changes: ChangeFeed;
  /** The nodes sharing this store, and which runs a job. */
  readonly cluster: Cluster;
  /** The earliest lease expiry, or the earliest after `after` when given. */
  nextExpiry(after?: number): Promise<number | undefined>;
  /** The latest time the store recorded (a lease-log entry or a renewal), to notice a clock turned back while stopped. */
  latestRecordedTime(): Promise<number | undefined>;
  allLeases(): Promise<Lease[]>;
  /** Blocks in force at `now`, soonest to end first. */
  blocks(now: number): Promise<Block[]>;
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;
  /** Sets `key` to `value` unless it already holds one; returns the stored value. */
  initMeta(key: string, value: string): Promise<string>;
  listLicenses(): Promise<StoredLicense[]>;
  addLicense(license: StoredLicense, event: LeaseEventInput): Promise<void>;
  removeLicense(id: string, event: LeaseEventInput): Promise<boolean>;
  appendEvent(event: LeaseEventInput): Promise<void>;
  queryEvents(filter: EventFilter): Promise<LeaseEvent[]>;
  /**
   * Where retention cuts the lease log: the id of the oldest entry recorded at
   * or after `beforeMs` (entries below it go), or undefined when the log holds
   * no entry that new.
   */
  pruneBoundary(beforeMs: number): Promise<number | undefined>;
  /** Deletes up to `limit` of the oldest lease-log entries with an id below `beforeId`, in one short transaction; returns how many. */
  pruneEvents(beforeId: number, limit: number): Promise<number>;
  close(): void;
}

/**
 * How a store learns of storage faults and answers while one lasts: the
 * server's StorageHealth. A store consults it before a commit of `operations`
 * units and tells it how the commit went.
 */
export interface CommitGuard {
  /** Null to go ahead with a commit of `operations` units, or the error to answer them with at once. */
  refuse(operations: number): Error | null;
  /** A commit failed: the error to answer its units with instead, or null to keep `err`. */
  failed(err: unknown, operations: number): Error | null;
  /** A commit succeeded. */
  succeeded(): void;
}

/** What a store tells of its commits and how it treats them: set once by the composition root. */
export interface CommitPolicy {
  readonly guard?: CommitGuard;
  /** Told of every commit: how many units it held and how long it took (seconds). */
  readonly committed?: (units: number, seconds: number) => void;
}

/**
 * Changes made by others (another process, another node) that the server
 * must follow: keys added or removed, activations, rules, leases ended. SQLite
 * notices them through its data version; a networked store would be told.
 */
export interface ChangeFeed {
  /** Calls `fn` at the next `poll` after a change another writer committed. Returns a function that stops it. */
  subscribe(fn: () => void): () => void;
  /** Looks for changes now (the server's maintenance tick). */
  poll(): void;
}

/** Where the server's jobs run when several nodes share a store. */
export interface Cluster {
  /** This node's name (the lease log and logs say which node did what). */
  readonly nodeId: string;
  /** Runs `fn` unless another node runs `job` now; resolves to whether it ran. One node alone always runs it. */
  runOnce(job: string, fn: () => Promise<void> | void): Promise<boolean>;
}

/** The chores of an embedded store: the composition root runs them, nothing else sees them. */
export interface StoreMaintenance {
  /** Moves committed changes out of the write-ahead log (cheap and frequent beats big and rare). */
  checkpoint(): void;
  /** Commits a small write and takes it back: throws (UNAVAILABLE) while the storage refuses writes. */
  probe(): void;
}

export interface AdminToken {
  readonly name: string;
  readonly createdAt: number;
}

/** Admin API bearer tokens, stored only as hashes; every change is a lease-log entry. */
export interface AdminTokenStore {
  listAdminTokens(): Promise<AdminToken[]>;
  /** The name of the token with this hash, if any. */
  adminTokenByHash(hash: string): Promise<string | undefined>;
  putAdminToken(name: string, hash: string, replace: boolean, event: LeaseEventInput): Promise<boolean>;
  removeAdminToken(name: string, event: LeaseEventInput): Promise<boolean>;
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

/** An offline activation (or deactivation) request the server wrote, and when its answer consumed it. */
export interface StoredActivationRequest {
  readonly keyId: string;
  readonly kind: 'activation' | 'deactivation';
  readonly createdAt: number;
  readonly consumedAt: number | null;
}

/** The server's activations and the offline requests it wrote. */
export interface ActivationStore {
  listActivations(): Promise<StoredActivation[]>;
  getActivation(keyId: string): Promise<StoredActivation | undefined>;
  /** Stores (or replaces) a key's activation, consuming the offline request it answers, with its lease-log entry, in one transaction; false when the request was already consumed. */
  putActivation(activation: StoredActivation, consumeNonce: string | null, event: LeaseEventInput): Promise<boolean>;
  /** A re-validation: the vendor's fresh activation and when. */
  revalidated(keyId: string, token: string, at: number): Promise<void>;
  removeActivation(keyId: string, event: LeaseEventInput): Promise<boolean>;
  addActivationRequest(nonce: string, keyId: string, kind: 'activation' | 'deactivation', createdAt: number): Promise<void>;
  findActivationRequest(nonce: string): Promise<StoredActivationRequest | undefined>;
}
