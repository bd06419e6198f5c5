import Database from 'better-sqlite3';
import type { EventFilter, LeaseEvent, LeaseEventInput, ReportEvent, ReportEventQuery, ReportEventSource } from '../../domain/events.js';
import type { Lease } from '../../domain/lease.js';
import type { Block } from '../../domain/blocks.js';
import { blockStatements } from './blocks.js';
import type { CommitPolicy, DenialWindow, LeaseStore, LeaseTx, LeaseUnit, StoredLicense, StoreMaintenance, UnitOptions } from '../../domain/ports.js';
import { GroupCommit, type BatcherBudget } from '../store/group-commit.js';
import { CounterChangeFeed, SingleNode } from '../store/single-node.js';
import { SqliteUnits } from './sqlite-units.js';
import { CommitQueue } from '../../domain/commit-queue.js';
import type { ActivationStore, AdminToken, AdminTokenStore, StoredActivation } from '../../domain/ports.js';
import { FloatdError, isFloatdError } from '../../domain/errors.js';
import { migrate } from './migrate.js';
import type { LogSigner, LogVerifier } from '../crypto/log-signer.js';
import { CHAIN_COLUMNS, GENESIS, entryHash, presentExtensions, toCheckpoint, verifyChain, verifyChainParallel, writeCheckpoint, type ChainReport, type Checkpoint } from './log-chain.js';
import { readAnchorFacts } from './log-anchors.js';
import { guardStorage } from './storage-fault.js';

/**
 * How long a statement waits for another process's lock before giving up
 * with SQLITE_BUSY, by default. The server passes its own, much shorter, bound:
 * better-sqlite3 waits on the event loop's thread.
 */
const DEFAULT_BUSY_TIMEOUT_MS = 5000;

interface LeaseRow {
  id: string;
  pool_id: string;
  product: string;
  user: string;
  host: string;
  instance: string;
  remote: string;
  listener: string;
  granted_at: number;
  renewed_at: number;
  expires_at: number;
  lease_ms: number;
  secret_hash: string | null;
}

interface EventRow {
  id: number;
  ts: number;
  event: string;
  pool_id: string | null;
  product: string | null;
  lease_id: string | null;
  user: string | null;
  host: string | null;
  instance: string | null;
  remote: string | null;
  listener: string | null;
  seats_in_use: number | null;
  seats_total: number | null;
  code: string | null;
  reason: string | null;
  message: string | null;
  actor: string | null;
  count: number;
}

interface ActivationRow {
  key_id: string;
  activation_id: string;
  token: string;
  source: 'online' | 'offline';
  url: string | null;
  activated_at: number;
  validated_at: number;
}

function toActivation(r: ActivationRow): StoredActivation {
  return { keyId: r.key_id, activationId: r.activation_id, token: r.token, source: r.source, url: r.url, activatedAt: r.activated_at, validatedAt: r.validated_at };
}

function toLease(r: LeaseRow): Lease {
  return {
    id: r.id,
    poolId: r.pool_id,
    product: r.product,
    user: r.user,
    host: r.host,
    instance: r.instance,
    remote: r.remote,
    listener: r.listener,
    grantedAt: r.granted_at,
    renewedAt: r.renewed_at,
    expiresAt: r.expires_at,
    leaseMs: r.lease_ms,
    ...(r.secret_hash === null ? {} : { secretHash: r.secret_hash }),
  };
}

function toEvent(r: EventRow): LeaseEvent {
  return {
    id: r.id,
    ts: r.ts,
    event: r.event as LeaseEvent['event'],
    poolId: r.pool_id,
    product: r.product,
    leaseId: r.lease_id,
    user: r.user,
    host: r.host,
    instance: r.instance,
    remote: r.remote,
    listener: r.listener,
    seatsInUse: r.seats_in_use,
    seatsTotal: r.seats_total,
    code: r.code,
    reason: r.reason,
    message: r.message,
    actor: r.actor,
    count: r.count,
  };
}

/** meta key: the id of the first entry of the hash chain. */
const CHAIN_START_META = 'log.chain.start';

// String.prototype.isWellFormed (Node 20) answers natively; the replacement is rare.
const LONE_SURROGATE_G = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Text as SQLite stores it: a lone UTF-16 surrogate (not valid Unicode) becomes U+FFFD, here before hashing, so the hash covers what is kept. */
function wellFormed(v: string | null | undefined): string | null {
  if (v === null || v === undefined) return null;
  return (v as unknown as { isWellFormed(): boolean }).isWellFormed() ? v : v.replace(LONE_SURROGATE_G, '\ufffd');
}

function eventParams(e: LeaseEventInput): unknown[] {
  const w = wellFormed;
  return [
    e.ts, e.event, w(e.poolId), w(e.product), w(e.leaseId), w(e.user), w(e.host),
    w(e.instance), w(e.remote), w(e.listener), e.seatsInUse ?? null, e.seatsTotal ?? null,
    w(e.code), w(e.reason), w(e.message), w(e.actor),
  ];
}

/** How the lease log's hash chain is checkpointed (see log-chain.ts). */
export interface LogChainOptions {
  /** Signs checkpoints; without one (commands other than `serve`), entries are chained and left for the server to checkpoint. */
  readonly signer: LogSigner;
  /** A checkpoint after this many entries… */
  readonly everyEntries: number;
  /** …or, by `checkpointLogIfDue`, after this long with new entries. */
  readonly everyMs: number;
}
/**
 * Seats taken per pool (lease rows, expired or not yet swept), kept in memory
 * so that granting and writing a lease-log row cost no COUNT: loaded from the
 * lease table when the store opens and again whenever another process has
 * committed (PRAGMA data_version), changed by this store's own inserts and
 * deletes, and taken back with the savepoint or transaction that rolls back.
 *
 * Running = taken − expired. For the expired part each pool keeps a lower
 * bound of its earliest expiry (while it is in the future nothing has
 * expired: no statement at all), and the last count of expired leases with
 * the time it was for: a later time adds only the leases expiring in between
 * (an index range of a few rows), instead of counting every expired lease
 * again, which matters while a large sweep is under way. Every change this
 * store makes keeps that count exact; what it cannot tell (a lease's old
 * expiry it has not read in this transaction) drops it.
 */
class SeatCounts {
  private readonly held = new Map<string, number>();
  private readonly earliest = new Map<string, number>();
  private readonly expired = new Map<string, { at: number; n: number }>();
  /** Expiries of leases read or written in the current outermost transaction. */
  private readonly known = new Map<string, number>();
  private readonly undo: Array<readonly [string, number]> = [];
  private version = -1;

  constructor(
    private readonly dataVersion: () => number,
    private readonly load: () => ReadonlyArray<readonly [string, number]>,
    private readonly expiredIn: (poolId: string, now: number) => number,
    private readonly expiringBetween: (poolId: string, after: number, upTo: number) => number,
    private readonly earliestRunning: (poolId: string, now: number) => number,
  ) {}

  /** At the start of an outermost transaction: reload if another process committed since. */
  sync(): void {
    this.known.clear();
    const v = this.dataVersion();
    if (v === this.version) return;
    this.version = v;
    this.held.clear();
    this.forgetExpiries();
    for (const [pool, n] of this.load()) this.held.set(pool, n);
  }

  active(poolId: string, now: number): number {
    const held = this.held.get(poolId) ?? 0;
    if (held === 0) return 0;
    if ((this.earliest.get(poolId) ?? -Infinity) > now) return held;
    const last = this.expired.get(poolId);
    const n = last === undefined || now < last.at ? this.expiredIn(poolId, now) : last.n + (now === last.at ? 0 : this.expiringBetween(poolId, last.at, now));
    this.expired.set(poolId, { at: now, n });
    // None expired: the earliest expiry of the pool's leases is a lower bound until a lease moves earlier.
    if (n === 0) this.earliest.set(poolId, this.earliestRunning(poolId, now));
    return held - n;
  }

  read(id: string, expiresAt: number): void {
    this.known.set(id, expiresAt);
  }

  added(id: string, poolId: string, expiresAt: number): void {
    this.change(poolId, 1);
    this.lower(poolId, expiresAt);
    this.countExpired(poolId, expiresAt, 1);
    this.known.set(id, expiresAt);
  }

  removed(id: string, poolId: string, expiresAt: number): void {
    this.change(poolId, -1);
    this.countExpired(poolId, expiresAt, -1);
    this.known.delete(id);
  }

  expiryMoved(id: string, poolId: string, expiresAt: number): void {
    this.lower(poolId, expiresAt);
    const before = this.known.get(id);
    if (before === undefined) this.expired.delete(poolId);
    else {
      this.countExpired(poolId, before, -1);
      this.countExpired(poolId, expiresAt, 1);
    }
    this.known.set(id, expiresAt);
  }

  /** Every expiry moved by the same amount: what was learnt of them is learnt again. */
  expiriesShifted(): void {
    this.forgetExpiries();
  }

  mark(): number {
    return this.undo.length;
  }

  rollback(mark: number): void {
    while (this.undo.length > mark) {
      const [pool, delta] = this.undo.pop()!;
      this.held.set(pool, (this.held.get(pool) ?? 0) - delta);
    }
    // What was learnt inside the rolled-back work may not hold for what is back.
    this.forgetExpiries();
  }

  committed(): void {
    this.undo.length = 0;
  }

  /** Counts from the lease table again at the next outermost transaction. */
  reloadNextTime(): void {
    this.version = -1;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.held].filter(([, n]) => n !== 0));
  }

  private forgetExpiries(): void {
    this.earliest.clear();
    this.expired.clear();
    this.known.clear();
  }

  private lower(poolId: string, expiresAt: number): void {
    const bound = this.earliest.get(poolId);
    if (bound !== undefined && expiresAt < bound) this.earliest.set(poolId, expiresAt);
  }

  /** A lease expiring at `expiresAt` came (+1) or went (−1): the kept count changes if it had expired by then. */
  private countExpired(poolId: string, expiresAt: number, delta: number): void {
    const last = this.expired.get(poolId);
    if (last !== undefined && expiresAt <= last.at) last.n += delta;
  }

  private change(poolId: string, delta: number): void {
    this.held.set(poolId, (this.held.get(poolId) ?? 0) + delta);
    this.undo.push([poolId, delta]);
  }
}

/** How many entries a report reads at a time. */
const REPORT_CHUNK = 20_000;
/** The entries reports read, by the number the report query gives each kind. */
const REPORT_EVENT_KINDS = ['', 'granted', 'released', 'expired', 'revoked', 'denied', 'key-added', 'key-removed', 'key-expired', 'activation-changed'] as const;

/** A file that is not a usable floatd database (empty, another program's, or damaged); `why` says which. */
export class DatabaseUnusable extends Error {
  constructor(readonly why: string) {
    super(why);
    this.name = 'DatabaseUnusable';
  }
}

export interface SqliteOptions {
  readonly readonly?: boolean;
  readonly logChain?: LogChainOptions;
  /**
   * The file must already be a floatd database: one without floatd's schema
   * (an empty file, another program's database) is refused with
   * DatabaseUnusable, never made into a fresh one.
   */
  readonly existing?: boolean;
  /** Checks every page of the database before use (PRAGMA quick_check; about a second per 500 MB). */
  readonly verify?: boolean;
  /** Where an after-commit callback's failure is reported (the commit itself stands). */
  readonly onAfterCommitError?: (err: unknown) => void;
  /** How long to wait for a lock another process holds (PRAGMA busy_timeout); 5000 ms by default. */
  readonly busyTimeoutMs?: number;
  /** Called just before each batch of units commits; what it throws fails the commit (tests: a full disk at COMMIT). */
  readonly beforeCommit?: () => void;
  /** How many units one client may have in a batch, and how long a batch may run (ms). */
  readonly batchBudget?: BatcherBudget;
  /** The clock the batch budget is measured on (tests); performance.now by default. */
  readonly batchClock?: { monotonic(): number };
}

/**
 * The durable store. WAL mode keeps readers (status, log) off the writer's
 * back; every lease change runs in one IMMEDIATE transaction, so another
 * process sharing the file can never interleave with it. synchronous=NORMAL
 * makes each commit survive a process crash (kill -9): the WAL is in the OS
 * before the commit returns.
 */
export class SqliteLeaseStore implements LeaseStore, StoreMaintenance, AdminTokenStore, ReportEventSource, ActivationStore {
  private readonly db: Database.Database;
  /** Units of work, committed in groups (one transaction, a savepoint each). */
  private readonly units: GroupCommit<LeaseUnit>;
  /** Another process's commits show in the data version (`floatd license add`, activations, admin tokens). */
  readonly changes = new CounterChangeFeed(() => this.changeCounter());
  readonly cluster = new SingleNode();
  private readonly tx: LeaseTx;
  private readonly blockStore: ReturnType<typeof blockStatements>;
  private readonly stmt;
  private closed = false;
  private readonly commits: CommitQueue;
  private chain: LogChainOptions | undefined;
  /** Extension columns of the chain's encoding this database has (CHAIN_EXTENSIONS). */
  private readonly extensions: string[];
  /** The entry the newest checkpoint covers (0: none yet). */
  private lastCheckpointId = 0;
  /**
   * The newest entry's id and hash, as this connection last saw them, or null
   * when unknown: saves a lookup per entry on the lease path. Trusted only
   * while no other process has committed (PRAGMA data_version, checked once
   * per transaction under its write lock) and forgotten on any rollback.
   */
  private head: { id: number; hash: string } | null = null;
  private seenVersion = -1;
  private depth = 0;
  private versionChecked = false;
  /** One transaction function each, made once (better-sqlite3 makes a savepoint of them inside a transaction). */
  private readonly inTransaction: Database.Transaction<(fn: () => unknown) => unknown>;
  private readonly seats: SeatCounts;
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
    this.db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
    try {
      this.guard(() => {
        this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS}`);
        if (options.existing) this.checkExisting(options.verify ?? false);
        if (!options.readonly) {
          this.db.pragma('journal_mode = WAL');
          this.db.pragma('synchronous = NORMAL');
          // The server checkpoints every second (small, predictable pauses); this is only the safety net.
          this.db.pragma('wal_autocheckpoint = 10000');
          this.db.pragma('foreign_keys = ON');
          migrate(this.db);
        }
      });
    } catch (err) {
      if (this.db.open) this.db.close();
      throw err;
    }
    this.chain = options.logChain;
    const db = this.db;
    this.extensions = presentExtensions(db);
    const extCols = this.extensions.map((c) => `, "${c}"`).join('');
    const extMarks = this.extensions.map(() => ', ?').join('');
    this.stmt = {
      findLease: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE id = ?'),
      findByHolder: db.prepare<[string, string, string], LeaseRow>(
        'SELECT * FROM leases WHERE user = ? AND instance = ? AND product = ?',
      ),
      expiredInPool: db.prepare<[string, number], { n: number }>(
        'SELECT COUNT(*) AS n FROM leases WHERE pool_id = ? AND expires_at <= ?',
      ),
      countHeld: db.prepare<[string, string, number], { n: number }>(
        'SELECT COUNT(*) AS n FROM leases WHERE user = ? AND listener = ? AND expires_at > ?',
      ),
      countGrants: db.prepare<[string, number, string], { n: number }>(
        "SELECT COUNT(*) AS n FROM events WHERE user = ? AND ts > ? AND event = 'granted' AND listener = ?",
      ),
      countHeldOfProduct: db.prepare<[string, string, number, string], { n: number }>(
        'SELECT COUNT(*) AS n FROM leases WHERE user = ? AND listener = ? AND expires_at > ? AND product = ?',
      ),
      countGrantsOfProduct: db.prepare<[string, number, string, string], { n: number }>(
        "SELECT COUNT(*) AS n FROM events WHERE user = ? AND ts > ? AND event = 'granted' AND listener = ? AND product = ?",
      ),
      poolMinExpiry: db.prepare<[string, number], { t: number | null }>(
        'SELECT MIN(expires_at) AS t FROM leases WHERE pool_id = ? AND expires_at > ?',
      ),
      insertLease: db.prepare(
        `INSERT INTO leases (id, pool_id, product, user, host, instance, remote, listener, granted_at, renewed_at, expires_at, lease_ms, secret_hash)
         VALUES (@id, @poolId, @product, @user, @host, @instance, @remote, @listener, @grantedAt, @renewedAt, @expiresAt, @leaseMs, @secretHash)`,
      ),
      shiftExpiries: db.prepare<[number, number]>('UPDATE leases SET renewed_at = renewed_at + ?, expires_at = expires_at + ?'),
      expired: db.prepare<[number, number], LeaseRow>(
        'SELECT * FROM leases WHERE expires_at <= ? ORDER BY expires_at LIMIT ?',
      ),
      allLeases: db.prepare<[], LeaseRow>('SELECT * FROM leases ORDER BY product, granted_at'),
      nextExpiry: db.prepare<[], { t: number | null }>('SELECT MIN(expires_at) AS t FROM leases'),
      nextExpiryAfter: db.prepare<[number], { t: number | null }>('SELECT MIN(expires_at) AS t FROM leases WHERE expires_at > ?'),
      latestRecorded: db.prepare<[], { t: number | null }>(
        'SELECT MAX(t) AS t FROM (SELECT MAX(ts) AS t FROM events UNION ALL SELECT MAX(renewed_at) FROM leases)',
      ),
      appendEvent: db.prepare(
        `INSERT INTO events (id, ts, event, pool_id, product, lease_id, user, host, instance, remote, listener, seats_in_use, seats_total, code, reason, message, actor${extCols}, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?${extMarks}, ?, ?)`,
      ),
      chainHead: db.prepare<[], { id: number; hash: string | null; ts: number }>('SELECT id, hash, ts FROM events ORDER BY id DESC LIMIT 1'),
      dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
      lastCheckpoint: db.prepare<[], { event_id: number; ts: number }>('SELECT event_id, ts FROM log_checkpoints ORDER BY event_id DESC LIMIT 1'),
      sameDenial: db.prepare<unknown[], { id: number }>(
        `SELECT id FROM events WHERE event = 'denied' AND remote = ? AND ts >= ? AND listener IS ? AND user IS ? AND host IS ?
           AND instance IS ? AND product IS ? AND pool_id IS ? AND code IS ? AND reason IS ? ORDER BY id DESC LIMIT 1`,
      ),
      denialEntries: db.prepare<[string, number], { n: number }>("SELECT COUNT(*) AS n FROM events WHERE event = 'denied' AND remote = ? AND ts >= ?"),
      countDenial: db.prepare<[number]>('UPDATE events SET count = count + 1 WHERE id = ?'),
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
      expiringBetween: db.prepare<[string, number, number], number>('SELECT COUNT(*) FROM leases WHERE pool_id = ? AND expires_at > ? AND expires_at <= ?').pluck(),
      leasesPerPool: db.prepare<[], { pool_id: string; n: number }>('SELECT pool_id, COUNT(*) AS n FROM leases GROUP BY pool_id'),
      updateExpiryOf: db.prepare<[number, number, string], { pool_id: string }>('UPDATE leases SET renewed_at = ?, expires_at = ? WHERE id = ? RETURNING pool_id'),
      deleteLeaseOf: db.prepare<[string], { pool_id: string; expires_at: number }>('DELETE FROM leases WHERE id = ? RETURNING pool_id, expires_at'),
    };
    const s = this.stmt;
    this.inTransaction = db.transaction((fn: () => unknown) => {
      // Inside the outermost transaction, so no other process can commit between the check and the work.
      if (this.syncSeats) {
        this.syncSeats = false;
        this.seats.sync();
      }
      return fn();
    });
    this.seats = new SeatCounts(
      () => s.dataVersion.get()!,
      () => s.leasesPerPool.all().map((r) => [r.pool_id, r.n] as const),
      (poolId, now) => s.expiredInPool.get(poolId, now)!.n,
      (poolId, after, upTo) => s.expiringBetween.get(poolId, after, upTo)!,
      (poolId, now) => s.poolMinExpiry.get(poolId, now)!.t ?? Infinity,
    );
    this.blockStore = blockStatements(db);
    this.tx = {
      ...this.blockStore.tx,
      findLease: (id) => {
        const r = s.findLease.get(id);
        if (r !== undefined) this.seats.read(r.id, r.expires_at);
        return r && toLease(r);
      },
      findLeaseByHolder: (user, instance, product) => {
        const r = s.findByHolder.get(user, instance, product);
        if (r !== undefined) this.seats.read(r.id, r.expires_at);
        return r && toLease(r);
      },
      countActive: (poolId, now) => this.seats.active(poolId, now),
      countHeld: (listener, user, now, product) =>
        (product === undefined ? s.countHeld.get(user, listener, now) : s.countHeldOfProduct.get(user, listener, now, product))!.n,
      countGrantsSince: (listener, user, sinceMs, product) =>
        (product === undefined ? s.countGrants.get(user, sinceMs, listener) : s.countGrantsOfProduct.get(user, sinceMs, listener, product))!.n,
      earliestExpiry: (poolIds, now) => {
        let min: number | undefined;
        for (const id of poolIds) {
          const t = s.poolMinExpiry.get(id, now)!.t;
          if (t !== null && (min === undefined || t < min)) min = t;
        }
        return min;
      },
      insertLease: (lease) => {
        s.insertLease.run({ ...lease, secretHash: lease.secretHash ?? null });
        this.seats.added(lease.id, lease.poolId, lease.expiresAt);
      },
      updateExpiry: (id, renewedAt, expiresAt) => {
        const row = s.updateExpiryOf.get(renewedAt, expiresAt, id);
        if (row !== undefined) this.seats.expiryMoved(id, row.pool_id, expiresAt);
      },
      shiftExpiries: (deltaMs) => {
        this.seats.expiriesShifted();
        return s.shiftExpiries.run(deltaMs, deltaMs).changes;
      },
      deleteLease: (id) => {
        const row = s.deleteLeaseOf.get(id);
        if (row !== undefined) this.seats.removed(id, row.pool_id, row.expires_at);
      },
      expiredLeases: (now, limit) =>
        s.expired.all(now, limit).map((r) => {
          this.seats.read(r.id, r.expires_at);
          return toLease(r);
        }),
      appendEvent: (event) => this.appendChained(event),
      recordDenial: (event, window) => this.recordDenial(event, window),
    };
    this.units = new GroupCommit(
      new SqliteUnits({
        db,
        file,
        tx: this.tx,
        commits: this.commits,
        seats: this.seats,
        allLeases: () => s.allLeases.all().map(toLease),
        opened: () => {
          this.depth++;
          this.versionChecked = false;
        },
        closed: () => void this.depth--,
        forgetHead: () => void (this.head = null),
        beforeCommit: options.beforeCommit ?? (() => {}),
      }),
      options.batchClock ?? { monotonic: () => performance.now() },
      options.batchBudget,
    );
    try {
      this.guard(() => {
        if (!this.db.readonly) this.chainLegacyEntries();
        this.lastCheckpointId = s.lastCheckpoint.get()?.event_id ?? 0;
      });
    } catch (err) {
      this.db.close();
      throw err;
    }
  }

  /**
   * Appends one entry to the hash chain: its id is the next after the newest
   * entry, its hash covers its content and the newest entry's hash. Runs inside
   * the caller's transaction (IMMEDIATE: no other writer can append between
   * reading the head and inserting), and signs a checkpoint there when one is due.
   */
  private appendChained(event: LeaseEventInput): void {
    if (this.depth === 0 || !this.versionChecked) {
      const version = this.stmt.dataVersion.get() as number;
      if (version !== this.seenVersion) this.head = null;
      this.seenVersion = version;
      this.versionChecked = this.depth > 0;
    }
    let head = this.head;
    if (head === null) {
      const row = this.stmt.chainHead.get();
      head = row === undefined ? null : { id: row.id, hash: row.hash ?? GENESIS };
    }
    const id = (head?.id ?? 0) + 1;
    const params = eventParams(event);
    const ext = this.extensions.map((c) => ((event as unknown as Record<string, unknown>)[c] as unknown) ?? null);
    const prev = head?.hash ?? GENESIS;
    const hash = entryHash([id, ...params], ext, prev);
    this.stmt.appendEvent.run(id, ...params, ...ext, prev, hash);
    this.head = { id, hash };
    if (head === null) this.stmt.setMeta.run(CHAIN_START_META, String(id));
    if (this.chain !== undefined && id - this.lastCheckpointId >= this.chain.everyEntries) this.signCheckpoint(id, hash, event.ts);
  }

  /**
   * Runs the body of a write transaction (or savepoint): what it appended is
   * remembered as the head only if it is kept; any failure forgets the head.
   */
  private guarded<T>(fn: () => T): T {
    if (this.depth === 0) this.versionChecked = false;
    this.depth++;
    try {
      return fn();
    } catch (err) {
      this.head = null;
      throw err;
    } finally {
      this.depth--;
    }
  }

  /** A commit that fails after its body ran forgets the head too. */
  private committing<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      this.head = null;
      throw err;
    }
  }

  /** From now on, checkpoints are signed (the server, once it has loaded its key). */
  enableLogCheckpoints(options: LogChainOptions): void {
    this.chain = options;
  }

  private signCheckpoint(id: number, hash: string, ts: number): void {
    writeCheckpoint(this.db, this.chain!.signer, id, hash, this.chainCount(id), ts);
    this.lastCheckpointId = id;
  }

  /** How many entries the chain has had up to and including `id`, pruned ones included. */
  private chainCount(id: number): number {
    return id - Number(this.stmt.getMeta.get(CHAIN_START_META)?.value ?? 1) + 1;
  }

  /**
   * Entries recorded before the log was chained (databases older than
   * migration 004) are chained once, oldest first, at the first start after the
   * upgrade: the chain proves they are unchanged since then, not before.
   */
  private chainLegacyEntries(): void {
    if (this.stmt.getMeta.get(CHAIN_START_META) !== undefined) return;
    // Nothing to chain (a new database): no write, so opening needs no write lock.
    if (this.db.prepare('SELECT 1 FROM events WHERE hash IS NULL LIMIT 1').get() === undefined) return;
    const rows = this.db.prepare(`SELECT ${[...CHAIN_COLUMNS, ...this.extensions].map((c) => `"${c}"`).join(', ')} FROM events WHERE hash IS NULL ORDER BY id`).raw(true);
    const update = this.db.prepare<[string, string, number]>('UPDATE events SET prev_hash = ?, hash = ? WHERE id = ?');
    const n = CHAIN_COLUMNS.length;
    this.db
      .transaction(() => {
        let prev: string = GENESIS;
        let start: number | undefined;
        for (const raw of rows.all() as unknown[][]) {
          const hash = entryHash(raw.slice(0, n), raw.slice(n), prev);
          update.run(prev, hash, raw[0] as number);
          start ??= raw[0] as number;
          prev = hash;
        }
        if (start !== undefined) this.stmt.setMeta.run(CHAIN_START_META, String(start));
      })
      .immediate();
  }

  /**
   * Signs a checkpoint of the newest entry when entries came after the last
   * one and it is older than `everyMs` (or `force`). Returns whether it did.
   */
  checkpointLogIfDue(now: number, force = false): boolean {
    if (this.chain === undefined) return false;
    return this.guard(() => this.db
      .transaction(() => {
        const head = this.stmt.chainHead.get();
        const last = this.stmt.lastCheckpoint.get();
        if (head === undefined || head.hash === null || (last !== undefined && last.event_id >= head.id)) return false;
        // A wall clock set back signs at once, so the unsigned tail never spans more than one interval of entry time.
        if (!force && last !== undefined && now - last.ts < this.chain!.everyMs && now >= last.ts) return false;
        this.signCheckpoint(head.id, head.hash, now);
        return true;
      })
      .immediate());
  }

  /**
   * Appends an entry and signs a checkpoint of it in the same transaction (the
   * server's start and stop entries): returns that checkpoint, or undefined
   * when this store does not sign.
   */
  appendAnchored(event: LeaseEventInput): Checkpoint | undefined {
    return this.transact((tx) => {
      tx.appendEvent(event);
      if (this.chain === undefined) return undefined;
      const head = this.stmt.chainHead.get()!;
      this.signCheckpoint(head.id, head.hash!, event.ts);
      return this.latestCheckpoint();
    });
  }

  /** The runs, checkpoints and unsigned tail of the log up to entry `lastId`, for judging its anchoring. */
  logAnchorFacts(lastId: number | null, verifier: LogVerifier, verifiedUpTo: number): ReturnType<typeof readAnchorFacts> {
    return readAnchorFacts(this.db, lastId, verifier, verifiedUpTo);
  }

  /** The newest signed checkpoint, if any. */
  latestCheckpoint(): Checkpoint | undefined {
    const r = this.db.prepare('SELECT * FROM log_checkpoints ORDER BY event_id DESC LIMIT 1').get() as Parameters<typeof toCheckpoint>[0] | undefined;
    return r && toCheckpoint(r);
  }

  /** Checks the whole hash chain and every checkpoint against the server's public key. */
  verifyLog(verifier: LogVerifier): ChainReport {
    return verifyChain(this.db, verifier, this.chainStart());
  }

  /** The same, spread over the machine's cores when the log is long. */
  verifyLogInParallel(verifier: LogVerifier): Promise<ChainReport> {
    return verifyChainParallel(this.db, this.db.name, verifier, this.chainStart());
  }

  private chainStart(): number | null {
    const start = this.stmt.getMeta.get(CHAIN_START_META)?.value;
    return start === undefined ? null : Number(start);
  }

  private recordDenial(event: LeaseEventInput, window: DenialWindow): void {
    const s = this.stmt;
    const remote = event.remote ?? '';
    const key = (e: LeaseEventInput) =>
      [remote, window.sinceMs, e.listener ?? null, e.user ?? null, e.host ?? null, e.instance ?? null, e.product ?? null, e.poolId ?? null, e.code ?? null, e.reason ?? null];
    const same = s.sameDenial.get(...key(event));
    if (same !== undefined) {
      s.countDenial.run(same.id);
      return;
    }
    if (s.denialEntries.get(remote, window.sinceMs)!.n < window.perAddress) {
      this.appendChained({ ...event, remote });
      return;
    }
    const overflow: LeaseEventInput = { ts: event.ts, event: 'denied', remote, listener: event.listener ?? null, message: window.overflowMessage };
    const catchAll = s.sameDenial.get(...key(overflow));
    if (catchAll !== undefined) s.countDenial.run(catchAll.id);
    else this.appendChained(overflow);
  }

  private guard<T>(fn: () => T): T {
    return guardStorage(this.file, fn);
  }

  private checkExisting(verify: boolean): void {
    try {
      if ((this.db.pragma('user_version', { simple: true }) as number) === 0) {
        const tables = this.db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table'").get()!.n;
        throw new DatabaseUnusable(tables === 0 ? 'it is empty: it holds no floatd data' : 'it is not a floatd database: it holds tables of another program');
      }
      if (verify) {
        const rows = (this.db.pragma('quick_check(5)') as Array<{ quick_check: string }>).map((r) => r.quick_check);
        if (rows.join() !== 'ok') {
          const problems = rows.flatMap((r) => r.split('\n')).filter((p) => p.trim() !== '' && !p.startsWith('*** in database'));
          throw new DatabaseUnusable(`it is damaged (PRAGMA quick_check: ${problems[0] ?? rows[0]}${problems.length > 1 ? `, and more` : ''})`);
        }
      }
    } catch (err) {
      this.db.close();
      throw err;
    }
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
      return this.committing(() => this.guard(() => this.commits.within(() => this.seatsFollow(() => this.inTransaction.immediate(() => this.guarded(() => fn(this.tx))) as T))));
    } catch (err) {
      if (this.batchDepth > 0 && isFloatdError(err) && err.code === 'UNAVAILABLE') this.batchFault ??= err;
      throw err;
    }
  }

  batch(fn: () => void): void {
    this.batchDepth++;
    this.batchFault = null;
    try {
      this.committing(() => this.guard(() =>
        this.commits.within(() =>
          this.seatsFollow(() =>
            this.inTransaction.immediate(() => this.guarded(() => {
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
    return { inMemory: this.seats.snapshot(), inDatabase: Object.fromEntries(this.stmt.leasesPerPool.all().map((r) => [r.pool_id, r.n])) };
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

  nextExpiry(after?: number): number | undefined {
    return this.guard(() => (after === undefined ? this.stmt.nextExpiry.get() : this.stmt.nextExpiryAfter.get(after))!.t ?? undefined);
  }

  latestRecordedTime(): number | undefined {
    return this.guard(() => this.stmt.latestRecorded.get()!.t ?? undefined);
  }

  allLeases(): Lease[] {
    return this.guard(() => this.stmt.allLeases.all().map(toLease));
  }

  blocks(now: number): Block[] {
    return this.guard(() => this.blockStore.blocks(now));
  }

  getMeta(key: string): string | undefined {
    return this.guard(() => this.stmt.getMeta.get(key)?.value);
  }

  setMeta(key: string, value: string): void {
    this.guard(() => this.stmt.setMeta.run(key, value));
  }

  initMeta(key: string, value: string): string {
    return this.guard(() => this.db
      .transaction(() => {
        this.stmt.initMeta.run(key, value);
        return this.stmt.getMeta.get(key)!.value;
      })
      .immediate());
  }

  listLicenses(): StoredLicense[] {
    return this.guard(() => this.stmt.listLicenses.all().map((r) => ({ id: r.id, token: r.token, addedAt: r.added_at })));
  }

  addLicense(license: StoredLicense, event: LeaseEventInput): void {
    this.guard(() => this.committing(() => this.db
      .transaction(() => this.guarded(() => {
        this.stmt.addLicense.run(license.id, license.token, license.addedAt);
        this.tx.appendEvent(event);
      }))
      .immediate()));
  }

  removeLicense(id: string, event: LeaseEventInput): boolean {
    return this.guard(() => this.committing(() => this.db
      .transaction(() => this.guarded(() => {
        const removed = this.stmt.removeLicense.run(id).changes > 0;
        if (removed) this.tx.appendEvent(event);
        return removed;
      }))
      .immediate()));
  }

  appendEvent(event: LeaseEventInput): void {
    this.transact((tx) => tx.appendEvent(event));
  }

  listActivations(): StoredActivation[] {
    return this.guard(() => this.db.prepare<[], ActivationRow>('SELECT * FROM activations ORDER BY key_id').all().map(toActivation));
  }

  getActivation(keyId: string): StoredActivation | undefined {
    const row = this.guard(() => this.db.prepare<[string], ActivationRow>('SELECT * FROM activations WHERE key_id = ?').get(keyId));
    return row === undefined ? undefined : toActivation(row);
  }

  putActivation(a: StoredActivation, consumeNonce: string | null, event: LeaseEventInput): boolean {
    return this.guard(() => this.committing(() => this.db
      .transaction(() => this.guarded(() => {
        if (consumeNonce !== null) {
          const consumed = this.db.prepare<[number, string]>('UPDATE activation_requests SET consumed_at = ? WHERE nonce = ? AND consumed_at IS NULL').run(event.ts, consumeNonce);
          if (consumed.changes === 0) return false;
        }
        this.db
          .prepare(
            `INSERT INTO activations (key_id, activation_id, token, source, url, activated_at, validated_at) VALUES (@keyId, @activationId, @token, @source, @url, @activatedAt, @validatedAt)
             ON CONFLICT (key_id) DO UPDATE SET activation_id = excluded.activation_id, token = excluded.token, source = excluded.source, url = excluded.url, activated_at = excluded.activated_at, validated_at = excluded.validated_at`,
          )
          .run(a);
        this.tx.appendEvent(event);
        return true;
      }))
      .immediate()));
  }

  revalidated(keyId: string, token: string, at: number): void {
    this.guard(() => this.db.prepare<[string, number, string]>('UPDATE activations SET token = ?, validated_at = ? WHERE key_id = ?').run(token, at, keyId));
  }

  removeActivation(keyId: string, event: LeaseEventInput): boolean {
    return this.guard(() => this.committing(() => this.db
      .transaction(() => this.guarded(() => {
        const removed = this.db.prepare<[string]>('DELETE FROM activations WHERE key_id = ?').run(keyId).changes > 0;
        if (removed) this.tx.appendEvent(event);
        return removed;
      }))
      .immediate()));
  }

  addActivationRequest(nonce: string, keyId: string, kind: 'activation' | 'deactivation', createdAt: number): void {
    this.guard(() => this.db.prepare<[string, string, string, number]>('INSERT INTO activation_requests (nonce, key_id, kind, created_at) VALUES (?, ?, ?, ?)').run(nonce, keyId, kind, createdAt));
  }

  findActivationRequest(nonce: string) {
    const row = this.guard(() => this.db
      .prepare<[string], { key_id: string; kind: 'activation' | 'deactivation'; created_at: number; consumed_at: number | null }>('SELECT key_id, kind, created_at, consumed_at FROM activation_requests WHERE nonce = ?')
      .get(nonce));
    return row === undefined ? undefined : { keyId: row.key_id, kind: row.kind, createdAt: row.created_at, consumedAt: row.consumed_at };
  }

  listAdminTokens(): AdminToken[] {
    return this.guard(() => this.db.prepare<[], { name: string; created_at: number }>('SELECT name, created_at FROM admin_tokens ORDER BY name').all().map((r) => ({ name: r.name, createdAt: r.created_at })));
  }

  adminTokenByHash(hash: string): string | undefined {
    return this.guard(() => this.db.prepare<[string], { name: string }>('SELECT name FROM admin_tokens WHERE hash = ?').get(hash)?.name);
  }

  /** Adds a token (or, with `replace`, gives a name a new one) and records it in the lease log, in one transaction. */
  putAdminToken(name: string, hash: string, replace: boolean, event: LeaseEventInput): boolean {
    return this.guard(() => this.committing(() => this.db
      .transaction(() => this.guarded(() => {
        const sql = replace
          ? 'INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at'
          : 'INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING';
        const added = this.db.prepare<[string, string, number]>(sql).run(name, hash, event.ts).changes > 0;
        if (added) this.tx.appendEvent(event);
        return added;
      }))
      .immediate()));
  }

  removeAdminToken(name: string, event: LeaseEventInput): boolean {
    return this.guard(() => this.committing(() => this.db
      .transaction(() => this.guarded(() => {
        const removed = this.db.prepare<[string]>('DELETE FROM admin_tokens WHERE name = ?').run(name).changes > 0;
        if (removed) this.tx.appendEvent(event);
        return removed;
      }))
      .immediate()));
  }

  queryEvents(filter: EventFilter): LeaseEvent[] {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      where.push(sql);
      params.push(value);
    };
    if (filter.afterId !== undefined) add('id > ?', filter.afterId);
    if (filter.beforeId !== undefined) add('id < ?', filter.beforeId);
    if (filter.sinceMs !== undefined) add('ts >= ?', filter.sinceMs);
    if (filter.untilMs !== undefined) add('ts < ?', filter.untilMs);
    if (filter.user !== undefined) add('user = ?', filter.user);
    if (filter.host !== undefined) add('host = ?', filter.host);
    if (filter.instance !== undefined) add('instance = ?', filter.instance);
    if (filter.leaseId !== undefined) {
      where.push('substr(lease_id, 1, ?) = ?');
      params.push(filter.leaseId.length, filter.leaseId);
    }
    if (filter.listener !== undefined) add('listener = ?', filter.listener);
    if (filter.actor !== undefined) add('actor = ?', filter.actor);
    if (filter.product !== undefined) add('product = ?', filter.product);
    if (filter.pool !== undefined) add('pool_id = ?', filter.pool);
    if (filter.events !== undefined && filter.events.length > 0) {
      where.push(`event IN (${filter.events.map(() => '?').join(', ')})`);
      params.push(...filter.events);
    }
    let sql = 'SELECT * FROM events';
    if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
    sql += ' ORDER BY id';
    if (filter.first !== undefined) {
      sql += ' LIMIT ?';
      params.push(filter.first);
    } else if (filter.limit !== undefined) {
      // The newest `limit` entries, still printed oldest first.
      sql = `SELECT * FROM (${sql.replace('ORDER BY id', 'ORDER BY id DESC')} LIMIT ?) ORDER BY id`;
      params.push(filter.limit);
    }
    return this.guard(() => this.db.prepare<unknown[], EventRow>(sql).all(...params).map(toEvent));
  }

  /**
   * Streams the entries reports read, in the order written, one row at a time (a
   * report over millions of entries holds only what is still open). Entries
   * that stand for several requests (counted denials) count as such.
   */
  *reportEvents(query: ReportEventQuery): IterableIterator<ReportEvent> {
    const params: unknown[] = [query.untilMs];
    let where =
      "ts < ? AND event IN ('granted', 'released', 'expired', 'revoked', 'denied', 'key-added', 'key-removed', 'key-expired', 'activation-changed')";
    if (query.product !== undefined) {
      where += " AND (product = ? OR event = 'key-removed')";
      params.push(query.product);
    }
    // Read in chunks of rows that SQLite packs as one JSON array each: far cheaper than a row at a
    // time, and each kind of entry brings only the columns reports read of it.
    const e = "CASE event WHEN 'granted' THEN 1 WHEN 'released' THEN 2 WHEN 'expired' THEN 3 WHEN 'revoked' THEN 4 WHEN 'denied' THEN 5 WHEN 'key-added' THEN 6 WHEN 'key-removed' THEN 7 WHEN 'key-expired' THEN 8 ELSE 9 END";
    const product = query.product === undefined ? 'CASE WHEN e IN (1, 5, 6, 9) THEN product END' : 'NULL';
    const chunk = this.db
      .prepare<unknown[], [number | null, string | null]>(
        `SELECT max(id), json_group_array(json_array(ts, e, CASE WHEN e IN (1, 5, 6, 7, 8, 9) THEN pool_id END, ${product}, CASE WHEN e <= 4 THEN lease_id END, ` +
          'CASE WHEN e IN (1, 5) THEN user END, CASE WHEN e IN (1, 5) THEN instance END, CASE WHEN e IN (1, 5, 6, 9) THEN seats_total END, ' +
          `CASE WHEN e IN (5, 6) THEN code END, CASE WHEN e = 5 THEN reason END, COALESCE("count", 1))) ` +
          `FROM (SELECT id, ts, ${e} AS e, pool_id, product, lease_id, user, instance, seats_total, code, reason, "count" ` +
          `FROM events NOT INDEXED WHERE id > ? AND ${where} ORDER BY id LIMIT ${REPORT_CHUNK})`,
      )
      .raw(true);
    type Row = [number, number, string | null, string | null, string | null, string | null, string | null, number | null, string | null, string | null, number];
    // In the order written: one pass over the table, no sort (an entry stamped earlier than the one
    // before it, after the clock was stepped back, counts at the later time).
    for (let after = 0; ; ) {
      const [last, json] = chunk.get(after, ...params)!;
      if (last === null || json === null) return;
      after = last;
      for (const r of JSON.parse(json) as Row[]) {
        yield { ts: r[0], event: REPORT_EVENT_KINDS[r[1]]!, poolId: r[2], product: query.product ?? r[3], leaseId: r[4], user: r[5], instance: r[6], seatsTotal: r[7], code: r[8], reason: r[9], count: r[10] };
      }
    }
  }

  pruneBoundary(beforeMs: number): number | undefined {
    return this.guard(() => this.stmt.pruneBoundary.get(beforeMs)?.id);
  }

  pruneEvents(beforeId: number, limit: number): number {
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
