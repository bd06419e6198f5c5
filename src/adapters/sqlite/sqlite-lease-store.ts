import Database from 'better-sqlite3';
import type { EventFilter, LeaseEvent, LeaseEventInput } from '../../domain/events.js';
import type { Lease } from '../../domain/lease.js';
import type { LeaseStore, LeaseTx, StoredLicense } from '../../domain/ports.js';
import { CommitQueue } from '../../domain/commit-queue.js';
import type { AdminToken, AdminTokenStore } from '../../domain/ports.js';
import { migrate } from './migrate.js';

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
  };
}

function eventParams(e: LeaseEventInput): unknown[] {
  return [
    e.ts, e.event, e.poolId ?? null, e.product ?? null, e.leaseId ?? null, e.user ?? null, e.host ?? null,
    e.instance ?? null, e.remote ?? null, e.listener ?? null, e.seatsInUse ?? null, e.seatsTotal ?? null,
    e.code ?? null, e.reason ?? null, e.message ?? null, e.actor ?? null,
  ];
}

/** A file that is not a usable floatd database (empty, another program's, or damaged); `why` says which. */
export class DatabaseUnusable extends Error {
  constructor(readonly why: string) {
    super(why);
    this.name = 'DatabaseUnusable';
  }
}

export interface SqliteOptions {
  readonly readonly?: boolean;
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
}

/**
 * The durable store. WAL mode keeps readers (status, log) off the writer's
 * back; every lease change runs in one IMMEDIATE transaction, so another
 * process sharing the file can never interleave with it. synchronous=NORMAL
 * makes each commit survive a process crash (kill -9): the WAL is in the OS
 * before the commit returns.
 */
export class SqliteLeaseStore implements LeaseStore, AdminTokenStore {
  private readonly db: Database.Database;
  private readonly tx: LeaseTx;
  private readonly stmt;
  private closed = false;
  private readonly commits: CommitQueue;

  constructor(file: string, options: SqliteOptions = {}) {
    this.commits = new CommitQueue(options.onAfterCommitError ?? ((err) => queueMicrotask(() => { throw err; })));
    this.db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
    this.db.pragma('busy_timeout = 5000');
    if (options.existing) this.checkExisting(options.verify ?? false);
    if (!options.readonly) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      // The server checkpoints every second (small, predictable pauses); this is only the safety net.
      this.db.pragma('wal_autocheckpoint = 10000');
      this.db.pragma('foreign_keys = ON');
      migrate(this.db);
    }
    const db = this.db;
    this.stmt = {
      findLease: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE id = ?'),
      findByHolder: db.prepare<[string, string, string], LeaseRow>(
        'SELECT * FROM leases WHERE user = ? AND instance = ? AND product = ?',
      ),
      inUse: db.prepare<[string], { in_use: number }>('SELECT in_use FROM pool_usage WHERE pool_id = ?'),
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
        `INSERT INTO leases (id, pool_id, product, user, host, instance, remote, listener, granted_at, renewed_at, expires_at, lease_ms)
         VALUES (@id, @poolId, @product, @user, @host, @instance, @remote, @listener, @grantedAt, @renewedAt, @expiresAt, @leaseMs)`,
      ),
      updateExpiry: db.prepare<[number, number, string]>('UPDATE leases SET renewed_at = ?, expires_at = ? WHERE id = ?'),
      shiftExpiries: db.prepare<[number, number]>('UPDATE leases SET renewed_at = renewed_at + ?, expires_at = expires_at + ?'),
      deleteLease: db.prepare<[string]>('DELETE FROM leases WHERE id = ?'),
      expired: db.prepare<[number, number], LeaseRow>(
        'SELECT * FROM leases WHERE expires_at <= ? ORDER BY expires_at LIMIT ?',
      ),
      allLeases: db.prepare<[], LeaseRow>('SELECT * FROM leases ORDER BY product, granted_at'),
      nextExpiry: db.prepare<[], { t: number | null }>('SELECT MIN(expires_at) AS t FROM leases'),
      latestRecorded: db.prepare<[], { t: number | null }>(
        'SELECT MAX(t) AS t FROM (SELECT MAX(ts) AS t FROM events UNION ALL SELECT MAX(renewed_at) FROM leases)',
      ),
      appendEvent: db.prepare(
        `INSERT INTO events (ts, event, pool_id, product, lease_id, user, host, instance, remote, listener, seats_in_use, seats_total, code, reason, message, actor)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      getMeta: db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare<[string, string]>(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
      initMeta: db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING'),
      listLicenses: db.prepare<[], { id: string; token: string; added_at: number }>(
        'SELECT id, token, added_at FROM licenses ORDER BY added_at, id',
      ),
      addLicense: db.prepare<[string, string, number]>('INSERT INTO licenses (id, token, added_at) VALUES (?, ?, ?)'),
      removeLicense: db.prepare<[string]>('DELETE FROM licenses WHERE id = ?'),
      pruneEvents: db.prepare<[number]>('DELETE FROM events WHERE ts < ?'),
    };
    const s = this.stmt;
    this.tx = {
      findLease: (id) => {
        const r = s.findLease.get(id);
        return r && toLease(r);
      },
      findLeaseByHolder: (user, instance, product) => {
        const r = s.findByHolder.get(user, instance, product);
        return r && toLease(r);
      },
      countActive: (poolId, now) => (s.inUse.get(poolId)?.in_use ?? 0) - s.expiredInPool.get(poolId, now)!.n,
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
        s.insertLease.run(lease);
      },
      updateExpiry: (id, renewedAt, expiresAt) => {
        s.updateExpiry.run(renewedAt, expiresAt, id);
      },
      shiftExpiries: (deltaMs) => s.shiftExpiries.run(deltaMs, deltaMs).changes,
      deleteLease: (id) => {
        s.deleteLease.run(id);
      },
      expiredLeases: (now, limit) => s.expired.all(now, limit).map(toLease),
      appendEvent: (event) => {
        s.appendEvent.run(...eventParams(event));
      },
    };
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

  transact<T>(fn: (tx: LeaseTx) => T): T {
    // Inside batch() better-sqlite3 turns this into a SAVEPOINT.
    return this.commits.within(() => this.db.transaction(() => fn(this.tx)).immediate());
  }

  batch(fn: () => void): void {
    this.commits.within(() => this.db.transaction(fn).immediate());
  }

  afterCommit(fn: () => void): void {
    this.commits.afterCommit(fn);
  }

  nextExpiry(): number | undefined {
    return this.stmt.nextExpiry.get()!.t ?? undefined;
  }

  latestRecordedTime(): number | undefined {
    return this.stmt.latestRecorded.get()!.t ?? undefined;
  }

  allLeases(): Lease[] {
    return this.stmt.allLeases.all().map(toLease);
  }

  getMeta(key: string): string | undefined {
    return this.stmt.getMeta.get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.stmt.setMeta.run(key, value);
  }

  initMeta(key: string, value: string): string {
    return this.db
      .transaction(() => {
        this.stmt.initMeta.run(key, value);
        return this.stmt.getMeta.get(key)!.value;
      })
      .immediate();
  }

  listLicenses(): StoredLicense[] {
    return this.stmt.listLicenses.all().map((r) => ({ id: r.id, token: r.token, addedAt: r.added_at }));
  }

  addLicense(license: StoredLicense, event: LeaseEventInput): void {
    this.db
      .transaction(() => {
        this.stmt.addLicense.run(license.id, license.token, license.addedAt);
        this.tx.appendEvent(event);
      })
      .immediate();
  }

  removeLicense(id: string, event: LeaseEventInput): boolean {
    return this.db
      .transaction(() => {
        const removed = this.stmt.removeLicense.run(id).changes > 0;
        if (removed) this.tx.appendEvent(event);
        return removed;
      })
      .immediate();
  }

  appendEvent(event: LeaseEventInput): void {
    this.tx.appendEvent(event);
  }

  listAdminTokens(): AdminToken[] {
    return this.db.prepare<[], { name: string; created_at: number }>('SELECT name, created_at FROM admin_tokens ORDER BY name').all().map((r) => ({ name: r.name, createdAt: r.created_at }));
  }

  adminTokenByHash(hash: string): string | undefined {
    return this.db.prepare<[string], { name: string }>('SELECT name FROM admin_tokens WHERE hash = ?').get(hash)?.name;
  }

  /** Adds a token (or, with `replace`, gives a name a new one) and records it in the lease log, in one transaction. */
  putAdminToken(name: string, hash: string, replace: boolean, event: LeaseEventInput): boolean {
    return this.db
      .transaction(() => {
        const sql = replace
          ? 'INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at'
          : 'INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING';
        const added = this.db.prepare<[string, string, number]>(sql).run(name, hash, event.ts).changes > 0;
        if (added) this.tx.appendEvent(event);
        return added;
      })
      .immediate();
  }

  removeAdminToken(name: string, event: LeaseEventInput): boolean {
    return this.db
      .transaction(() => {
        const removed = this.db.prepare<[string]>('DELETE FROM admin_tokens WHERE name = ?').run(name).changes > 0;
        if (removed) this.tx.appendEvent(event);
        return removed;
      })
      .immediate();
  }

  queryEvents(filter: EventFilter): LeaseEvent[] {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      where.push(sql);
      params.push(value);
    };
    if (filter.afterId !== undefined) add('id > ?', filter.afterId);
    if (filter.sinceMs !== undefined) add('ts >= ?', filter.sinceMs);
    if (filter.untilMs !== undefined) add('ts < ?', filter.untilMs);
    if (filter.user !== undefined) add('user = ?', filter.user);
    if (filter.host !== undefined) add('host = ?', filter.host);
    if (filter.product !== undefined) add('product = ?', filter.product);
    if (filter.pool !== undefined) add('pool_id = ?', filter.pool);
    if (filter.events !== undefined && filter.events.length > 0) {
      where.push(`event IN (${filter.events.map(() => '?').join(', ')})`);
      params.push(...filter.events);
    }
    let sql = 'SELECT * FROM events';
    if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
    sql += ' ORDER BY id';
    if (filter.limit !== undefined) {
      // The newest `limit` entries, still printed oldest first.
      sql = `SELECT * FROM (${sql.replace('ORDER BY id', 'ORDER BY id DESC')} LIMIT ?) ORDER BY id`;
      params.push(filter.limit);
    }
    return this.db.prepare<unknown[], EventRow>(sql).all(...params).map(toEvent);
  }

  pruneEvents(beforeMs: number): number {
    return this.stmt.pruneEvents.run(beforeMs).changes;
  }

  checkpoint(): void {
    this.db.pragma('wal_checkpoint(PASSIVE)');
  }

  changeCounter(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
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
