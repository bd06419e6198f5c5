import type Database from 'better-sqlite3';
import type { EventFilter, LeaseEvent, LeaseEventInput, ReportEvent, ReportEventQuery, ReportEventSource } from '../../domain/events.js';
import type { Lease } from '../../domain/lease.js';
import type { Block } from '../../domain/blocks.js';
import type { ActivationStore, AdminToken, AdminTokenStore, CommitPolicy, LeaseStore, LeaseTx, LeaseUnit, StoredActivation, StoredActivationRequest, StoredLicense, StoreMaintenance, UnitOptions } from '../../domain/ports.js';
import { CommitQueue } from '../../domain/commit-queue.js';
import { FloatdError, isStorageFault } from '../../domain/errors.js';
import { GroupCommit, type GroupCommitBudget } from '../store/group-commit.js';
import { CounterChangeFeed, SingleNode } from '../store/single-node.js';
import type { LogVerifier } from '../crypto/log-signer.js';
import { SqliteActivations } from './activations.js';
import { SqliteAdminTokens } from './admin-tokens.js';
import { blockStatements } from './blocks.js';
import { SqliteConnection } from './connection.js';
import { SqliteLeaseTx } from './lease-tx.js';
import { queryEvents, reportEvents } from './lease-log-reads.js';
import { readAnchorFacts } from './log-anchors.js';
import type { ChainReport, Checkpoint } from './log-chain.js';
import { verifyChain, verifyChainParallel } from './log-chain-verify.js';
import { LogChainAppender, type LogChainOptions } from './log-chain-appender.js';
import { openDatabase, type OpenOptions } from './open-database.js';
import { SeatCounts } from './seat-counts.js';
import { SqliteUnits } from './sqlite-units.js';
import { guardStorage } from './storage-fault.js';

export { DatabaseUnusable } from './open-database.js';
export type { LogChainOptions } from './log-chain-appender.js';

export interface SqliteOptions extends OpenOptions {
  readonly logChain?: LogChainOptions;
  /** Where an after-commit callback's failure is reported (the commit itself stands). */
  readonly onAfterCommitError?: (err: unknown) => void;
  /** Called just before each batch of units commits; what it throws fails the commit (tests: a full disk at COMMIT). */
  readonly beforeCommit?: () => void;
  /** How many units one client may have in a batch, and how long a batch may run (ms). */
  readonly batchBudget?: GroupCommitBudget;
  /** The clock the batch budget is measured on (tests); performance.now by default. */
  readonly batchClock?: { monotonic(): number };
}

/** The store's own statements: meta, licenses, the lease log's upkeep. */
function storeStatements(db: Database.Database) {
  return {
    nextExpiry: db.prepare<[], { t: number | null }>('SELECT MIN(expires_at) AS t FROM leases'),
    nextExpiryAfter: db.prepare<[number], { t: number | null }>('SELECT MIN(expires_at) AS t FROM leases WHERE expires_at > ?'),
    latestRecorded: db.prepare<[], { t: number | null }>(
      'SELECT MAX(t) AS t FROM (SELECT MAX(ts) AS t FROM events UNION ALL SELECT MAX(renewed_at) FROM leases)',
    ),
    probeEvent: db.prepare<[string]>("INSERT INTO events (ts, event, message) VALUES (0, 'storage-probe', ?)"),
    getMeta: db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
    setMeta: db.prepare<[string, string]>(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ),
    initMeta: db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING'),
    deleteEvent: db.prepare<[number | bigint]>('DELETE FROM events WHERE id = ?'),
    listLicenses: db.prepare<[], { id: string; token: string; added_at: number }>(
      'SELECT id, token, added_at FROM licenses ORDER BY added_at, id',
    ),
    addLicense: db.prepare<[string, string, number]>('INSERT INTO licenses (id, token, added_at) VALUES (?, ?, ?)'),
    removeLicense: db.prepare<[string]>('DELETE FROM licenses WHERE id = ?'),
    pruneBoundary: db.prepare<[number], { id: number }>('SELECT id FROM events WHERE ts >= ? ORDER BY ts, id LIMIT 1'),
    pruneEvents: db.prepare<[number, number]>('DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < ? ORDER BY id LIMIT ?)'),
    pruneCheckpoints: db.prepare('DELETE FROM log_checkpoints WHERE event_id < (SELECT MIN(id) FROM events)'),
  };
}

/**
 * The durable store. WAL mode keeps readers (status, log) off the writer's
 * back; every lease change runs in one IMMEDIATE transaction, so another
 * process sharing the file can never interleave with it (open-database.ts).
 *
 * This class owns the connection and its transactions; its parts each keep
 * one port or one piece of state: the lease tables as units see them
 * (lease-tx.ts), the seats taken per pool (seat-counts.ts), the lease log's
 * hash chain (log-chain-appender.ts), activations (activations.ts), admin
 * tokens (admin-tokens.ts) and the lease log's read models (lease-log-reads.ts).
 */
export class SqliteLeaseStore implements LeaseStore, StoreMaintenance, AdminTokenStore, ReportEventSource, ActivationStore {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;
  /** Units of work, committed in groups (one transaction, a savepoint each). */
  private readonly units: GroupCommit<LeaseUnit>;
  /** Another process's commits show in the data version (`floatd license add`, activations, admin tokens). */
  readonly changes = new CounterChangeFeed(() => this.changeCounter());
  readonly cluster = new SingleNode();
  private readonly tx: SqliteLeaseTx;
  private readonly blockStore: ReturnType<typeof blockStatements>;
  private readonly stmt: ReturnType<typeof storeStatements>;
  private closed = false;
  private readonly commits: CommitQueue;
  private readonly chain: LogChainAppender;
  private readonly seats: SeatCounts;
  private readonly connection: SqliteConnection;
  private readonly activations: SqliteActivations;
  private readonly adminTokens: SqliteAdminTokens;
  /** One transaction function, made once (better-sqlite3 makes a savepoint of it inside a transaction). */
  private readonly inTransaction: Database.Transaction<(fn: () => unknown) => unknown>;
  private syncSeats = false;
  /** Batches in progress (0 or 1: a batch never nests). */
  private batchDepth = 0;
  /** The first storage fault an operation of the batch in progress met. */
  private batchFault: FloatdError | null = null;

  /**
   * Opens (and migrates) the database. Storage faults (a lock another process
   * holds, a full disk, I/O errors) come out of this and every other method
   * as UNAVAILABLE; any other error is a bug and passes unchanged.
   */
  constructor(
    private readonly file: string,
    options: SqliteOptions = {},
  ) {
    this.commits = new CommitQueue(options.onAfterCommitError ?? ((err) => queueMicrotask(() => { throw err; })));
    const db = (this.db = openDatabase(file, options));
    this.chain = new LogChainAppender(db, options.logChain);
    this.stmt = storeStatements(db);
    this.seats = new SeatCounts(db);
    this.blockStore = blockStatements(db);
    this.tx = new SqliteLeaseTx(db, this.seats, this.chain, this.blockStore.tx);
    this.connection = new SqliteConnection(db, file, this.chain);
    this.activations = new SqliteActivations(this.connection);
    this.adminTokens = new SqliteAdminTokens(this.connection);
    this.inTransaction = db.transaction((fn: () => unknown) => {
      // Inside the outermost transaction, so no other process can commit between the check and the work.
      if (this.syncSeats) {
        this.syncSeats = false;
        this.seats.sync();
      }
      return fn();
    });
    const tx = this.tx;
    this.units = new GroupCommit(
      new SqliteUnits({
        db,
        file,
        tx,
        commits: this.commits,
        seats: this.seats,
        chain: this.chain,
        allLeases: () => tx.allLeases(),
        beforeCommit: options.beforeCommit ?? (() => {}),
      }),
      options.batchClock ?? { monotonic: () => performance.now() },
      options.batchBudget,
    );
    try {
      this.guard(() => this.chain.load());
    } catch (err) {
      this.db.close();
      throw err;
    }
  }

  /** From now on, checkpoints are signed (the server, once it has loaded its key). */
  enableLogCheckpoints(options: LogChainOptions): void {
    this.chain.enableCheckpoints(options);
  }

  /**
   * Signs a checkpoint of the newest entry when entries came after the last
   * one and it is older than `everyMs` (or `force`). Returns whether it did.
   */
  checkpointLogIfDue(now: number, force = false): boolean {
    return this.guard(() => this.chain.checkpointIfDue(now, force));
  }

  /**
   * Appends an entry and signs a checkpoint of it in the same transaction (the
   * server's start and stop entries): returns that checkpoint, or undefined
   * when this store does not sign.
   */
  appendAnchored(event: LeaseEventInput): Checkpoint | undefined {
    return this.transact((tx) => {
      tx.appendEvent(event);
      return this.chain.anchorHead(event.ts);
    });
  }

  /** The runs, checkpoints and unsigned tail of the log up to entry `lastId`, for judging its anchoring. */
  logAnchorFacts(lastId: number | null, verifier: LogVerifier, verifiedUpTo: number): ReturnType<typeof readAnchorFacts> {
    return readAnchorFacts(this.db, lastId, verifier, verifiedUpTo);
  }

  /** The newest signed checkpoint, if any. */
  latestCheckpoint(): Checkpoint | undefined {
    return this.chain.latestCheckpoint();
  }

  /** Checks the whole hash chain and every checkpoint against the server's public key. */
  verifyLog(verifier: LogVerifier): ChainReport {
    return verifyChain(this.db, verifier, this.chain.start());
  }

  /** The same, spread over the machine's cores when the log is long. */
  verifyLogInParallel(verifier: LogVerifier): Promise<ChainReport> {
    return verifyChainParallel(this.db, this.db.name, verifier, this.chain.start());
  }

  private guard<T>(fn: () => T): T {
    return guardStorage(this.file, fn);
  }

  unit<T>(fn: (u: LeaseUnit) => Promise<T>, options: UnitOptions = {}): Promise<T> {
    return this.units.submit(fn, options.source ?? '');
  }

  drained(): Promise<void> {
    return this.units.drained();
  }

  configureCommits(policy: CommitPolicy): void {
    this.units.configure(policy);
  }

  /** One synchronous transaction (or a savepoint inside `batch`): for this adapter's own writes and its tests; lease operations are units. */
  transact<T>(fn: (tx: LeaseTx) => T): T {
    if (this.batchDepth > 0 && !this.db.inTransaction) {
      // SQLite rolls the whole transaction back on some faults (a full disk, an I/O error): the batch is lost,
      // and this operation must not commit on its own outside it.
      throw new FloatdError('UNAVAILABLE', `storage unavailable: the batch this operation belonged to was rolled back by a storage fault (${this.file})`, { reason: 'io-error' });
    }
    try {
      // Inside batch() better-sqlite3 turns this into a SAVEPOINT.
      return this.chain.committing(() => this.guard(() => this.commits.within(() => this.seatsFollow(() => this.inTransaction.immediate(() => this.chain.guarded(() => fn(this.tx))) as T))));
    } catch (err) {
      if (this.batchDepth > 0 && isStorageFault(err)) this.batchFault ??= err;
      throw err;
    }
  }

  batch(fn: () => void): void {
    this.batchDepth++;
    this.batchFault = null;
    try {
      this.chain.committing(() => this.guard(() =>
        this.commits.within(() =>
          this.seatsFollow(() =>
            this.inTransaction.immediate(() => this.chain.guarded(() => {
              fn();
              // A fault SQLite answered by rolling back the whole transaction: the batch is lost, say why.
              if (!this.db.inTransaction) {
                throw this.batchFault ?? new FloatdError('UNAVAILABLE', `storage unavailable: the transaction was rolled back by SQLite (${this.file})`, { reason: 'io-error' });
              }
            })),
          ),
        ),
      ));
    } finally {
      this.batchDepth--;
      this.batchFault = null;
    }
  }

  /** Runs one transaction level; the seat counts it changed are taken back if it rolls back. */
  private seatsFollow<T>(level: () => T): T {
    const outermost = !this.db.inTransaction;
    this.syncSeats = outermost;
    const mark = this.seats.mark();
    let result: T;
    try {
      result = level();
    } catch (err) {
      this.seats.rollback(mark);
      // A failed outermost transaction (a storage fault, perhaps): count again from the table next time.
      if (outermost) this.seats.reloadNextTime();
      throw err;
    }
    if (outermost) this.seats.committed();
    return result;
  }

  /** The seats taken per pool as kept in memory, and as the lease table has them: equal unless something is wrong. */
  seatCounts(): { inMemory: Record<string, number>; inDatabase: Record<string, number> } {
    return { inMemory: this.seats.snapshot(), inDatabase: this.seats.inDatabase() };
  }

  /**
   * Commits a small write and takes it back, to learn whether the storage
   * takes writes again (a full disk, a lock held by another process).
   */
  probe(): void {
    this.guard(() =>
      this.db
        .transaction(() => {
          // A lease-log entry the size of a lease operation's, where every lease operation writes.
          // Outside the hash chain: it never outlives this transaction.
          const { lastInsertRowid } = this.stmt.probeEvent.run('x'.repeat(200));
          this.stmt.deleteEvent.run(lastInsertRowid);
        })
        .immediate(),
    );
  }

  afterCommit(fn: () => void): void {
    this.commits.afterCommit(fn);
  }

  async nextExpiry(after?: number): Promise<number | undefined> {
    return this.guard(() => (after === undefined ? this.stmt.nextExpiry.get() : this.stmt.nextExpiryAfter.get(after))!.t ?? undefined);
  }

  async latestRecordedTime(): Promise<number | undefined> {
    return this.guard(() => this.stmt.latestRecorded.get()!.t ?? undefined);
  }

  async allLeases(): Promise<Lease[]> {
    return this.guard(() => this.tx.allLeases());
  }

  async blocks(now: number): Promise<Block[]> {
    return this.guard(() => this.blockStore.blocks(now));
  }

  async getMeta(key: string): Promise<string | undefined> {
    return this.guard(() => this.stmt.getMeta.get(key)?.value);
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.guard(() => this.stmt.setMeta.run(key, value));
  }

  async initMeta(key: string, value: string): Promise<string> {
    return this.guard(() => this.db
      .transaction(() => {
        this.stmt.initMeta.run(key, value);
        return this.stmt.getMeta.get(key)!.value;
      })
      .immediate());
  }

  async listLicenses(): Promise<StoredLicense[]> {
    return this.guard(() => this.stmt.listLicenses.all().map((r) => ({ id: r.id, token: r.token, addedAt: r.added_at })));
  }

  async addLicense(license: StoredLicense, event: LeaseEventInput): Promise<void> {
    this.connection.write(() => {
      this.stmt.addLicense.run(license.id, license.token, license.addedAt);
      this.connection.appendEvent(event);
    });
  }

  async removeLicense(id: string, event: LeaseEventInput): Promise<boolean> {
    return this.connection.write(() => {
      const removed = this.stmt.removeLicense.run(id).changes > 0;
      if (removed) this.connection.appendEvent(event);
      return removed;
    });
  }

  async appendEvent(event: LeaseEventInput): Promise<void> {
    this.transact((tx) => tx.appendEvent(event));
  }

  async listActivations(): Promise<StoredActivation[]> {
    return this.activations.listActivations();
  }

  async getActivation(keyId: string): Promise<StoredActivation | undefined> {
    return this.activations.getActivation(keyId);
  }

  async putActivation(a: StoredActivation, consumeNonce: string | null, event: LeaseEventInput): Promise<boolean> {
    return this.activations.putActivation(a, consumeNonce, event);
  }

  async revalidated(keyId: string, token: string, at: number): Promise<void> {
    this.activations.revalidated(keyId, token, at);
  }

  async removeActivation(keyId: string, event: LeaseEventInput): Promise<boolean> {
    return this.activations.removeActivation(keyId, event);
  }

  async addActivationRequest(nonce: string, keyId: string, kind: 'activation' | 'deactivation', createdAt: number): Promise<void> {
    this.activations.addActivationRequest(nonce, keyId, kind, createdAt);
  }

  async findActivationRequest(nonce: string): Promise<StoredActivationRequest | undefined> {
    return this.activations.findActivationRequest(nonce);
  }

  async listAdminTokens(): Promise<AdminToken[]> {
    return this.adminTokens.listAdminTokens();
  }

  async adminTokenByHash(hash: string): Promise<string | undefined> {
    return this.adminTokens.adminTokenByHash(hash);
  }

  /** Adds a token (or, with `replace`, gives a name a new one) and records it in the lease log, in one transaction. */
  async putAdminToken(name: string, hash: string, replace: boolean, event: LeaseEventInput): Promise<boolean> {
    return this.adminTokens.putAdminToken(name, hash, replace, event);
  }

  async removeAdminToken(name: string, event: LeaseEventInput): Promise<boolean> {
    return this.adminTokens.removeAdminToken(name, event);
  }

  async queryEvents(filter: EventFilter): Promise<LeaseEvent[]> {
    return this.guard(() => queryEvents(this.db, filter));
  }

  /**
   * Streams the entries reports read, in the order written, one row at a time (a
   * report over millions of entries holds only what is still open). Entries
   * that stand for several requests (counted denials) count as such.
   */
  reportEvents(query: ReportEventQuery): IterableIterator<ReportEvent> {
    return reportEvents(this.db, query);
  }

  async pruneBoundary(beforeMs: number): Promise<number | undefined> {
    return this.guard(() => this.stmt.pruneBoundary.get(beforeMs)?.id);
  }

  async pruneEvents(beforeId: number, limit: number): Promise<number> {
    return this.guard(() => this.db
      .transaction(() => {
        const n = this.stmt.pruneEvents.run(beforeId, limit).changes;
        // Checkpoints of entries that are gone anchor nothing any more.
        if (n > 0) this.stmt.pruneCheckpoints.run();
        return n;
      })
      .immediate());
  }

  checkpoint(): void {
    this.guard(() => this.db.pragma('wal_checkpoint(PASSIVE)'));
  }

  /** A number that changes whenever another process commits a change (PRAGMA data_version). */
  changeCounter(): number {
    return this.guard(() => this.db.pragma('data_version', { simple: true }) as number);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.db.readonly) {
      try {
        this.db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        // Another process may hold the WAL; the next open checkpoints it.
      }
    }
    this.db.close();
  }
}
