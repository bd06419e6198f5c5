import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import type { Block } from '../../domain/blocks.js';
import type { AsyncReportEventSource, EventFilter, LeaseEvent, LeaseEventInput, ReportEvent, ReportEventQuery } from '../../domain/events.js';
import { FloatdError } from '../../domain/errors.js';
import type { Lease } from '../../domain/lease.js';
import type { ActivationStore, AdminToken, AdminTokenStore, CommitGuard, CommitPolicy, LeaseStore, LeaseUnit, StoredActivation, StoredLicense, UnitOptions } from '../../domain/ports.js';
import { WriterChain } from './pg-chain.js';
import { CHANGES_CHANNEL, LEASES_CHANNEL, PgChangeFeed } from './pg-change-feed.js';
import { PgCluster } from './pg-cluster.js';
import { DATABASE_RETRY_MS, databaseFault, isRetryable } from './pg-errors.js';
import { migratePg } from './pg-migrate.js';
import { LEASE_COLUMNS, PG_TYPES, toActivation, toBlock, toLease, type ActivationRow, type BlockRow, type EventRow, type LeaseRow } from './pg-rows.js';
import { PgUnit } from './pg-unit.js';
import { queryEvents, reportEvents } from './pg-log-reads.js';
import { readReplication, type ReplicationState } from './pg-replication.js';
import { verifyClusterLog, type ClusterLogReport } from './pg-log-verify.js';

export interface PgStoreOptions {
  /** postgres://user[:password]@host[:port]/database[?sslmode=…] */
  readonly url: string;
  /** The password, read from a secret file, when the URL carries none. */
  readonly password?: string;
  /** TLS to the database: false for none; otherwise Node TLS options (a CA, rejectUnauthorized). Overrides the URL's sslmode. */
  readonly ssl?: false | ConnectionOptions;
  /** Connections for units of work (each runs on one; more wait for a free one). */
  readonly poolSize?: number;
  /** This node's name in the cluster (the nodes table, leases, the lease log's writers). */
  readonly nodeId: string;
  /** Where errors of the background connections (the change feed) are reported. */
  readonly onError?: (err: unknown) => void;
  /** How many times a unit that met a deadlock or a serialization failure runs again before it fails. */
  readonly retries?: number;
  /** Tests only: lease time from this clock (a fake one) instead of the database's. */
  readonly leaseClock?: () => number;
}

const NO_GUARD: CommitGuard = { refuse: () => null, failed: () => null, succeeded: () => {} };

/** The host and database of a URL, for messages (never its password). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `postgres://${u.hostname}${u.port === '' ? '' : `:${u.port}`}${u.pathname}`;
  } catch {
    return 'the configured PostgreSQL URL';
  }
}

/** Reads a password file (one line; a trailing newline is not part of it). */
export function readPasswordFile(path: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new FloatdError('CONFIG_INVALID', `setting store.passwordFile: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { setting: 'store.passwordFile' });
  }
}

/**
 * The store of a cluster: several floatd nodes share one PostgreSQL database.
 * Seats are decided in the database (units lock their pools' rows; a trigger
 * refuses an over-grant even from a node with a bug), lease time is the
 * database's clock, the nodes hear each other's changes through
 * LISTEN/NOTIFY, and each connection extends a hash chain of its own in the
 * lease log.
 */
export class PgLeaseStore implements LeaseStore, AdminTokenStore, ActivationStore, AsyncReportEventSource {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  readonly changes: PgChangeFeed;
  readonly cluster: PgCluster;
  private readonly where: string;
  private readonly origin = randomUUID();
  private readonly chains = new WeakMap<pg.PoolClient, WriterChain>();
  /** Pools whose seats this node has recorded in the database (a unit then only locks their row). */
  private readonly knownPools = new Map<string, number>();
  private readonly poolSeats = { registered: (pool: string, seats: number) => this.knownPools.get(pool) === seats };
  private guard: CommitGuard = NO_GUARD;
  private committed: (units: number, seconds: number) => void = () => {};
  private inFlight = 0;
  private idle: Array<() => void> = [];
  private ended: Promise<void> | null = null;
  /** Connections units may hold at once, and the units waiting for one. */
  private slots: number;
  private readonly waiting: Array<() => void> = [];

  private constructor(private readonly options: PgStoreOptions) {
    this.where = describeUrl(options.url);
    const config = PgLeaseStore.clientConfig(options);
    this.slots = options.poolSize ?? 10;
    // Units take at most poolSize connections (they wait their turn here, not in the pool, whose wait would time out like a failed connect); two more serve reads and once-per-cluster jobs.
    this.pool = new pg.Pool({ ...config, max: this.slots + 2 });
    // An idle connection the database dropped: the next unit takes another; nothing to answer here.
    this.pool.on('error', (err) => options.onError?.(err));
    this.cluster = new PgCluster(this.pool, options.nodeId);
    this.changes = new PgChangeFeed(config, this.origin, options.nodeId, options.onError);
  }

  private static clientConfig(options: PgStoreOptions): pg.ClientConfig {
    return {
      connectionString: options.url,
      ...(options.password === undefined ? {} : { password: options.password }),
      ...(options.ssl === undefined ? {} : { ssl: options.ssl === false ? false : { ...options.ssl } }),
      types: PG_TYPES,
      application_name: `floatd ${options.nodeId}`,
      connectionTimeoutMillis: 5000,
    };
  }

  /** Connects, brings the schema up to date (under an advisory lock) and starts listening for the other nodes' changes. */
  static async open(options: PgStoreOptions): Promise<PgLeaseStore> {
    const store = new PgLeaseStore(options);
    try {
      const client = await store.pool.connect();
      try {
        await migratePg(client);
      } finally {
        client.release();
      }
      await store.changes.start();
      return store;
    } catch (err) {
      await store.end();
      throw databaseFault(err, store.where) ?? err;
    }
  }

  configureCommits(policy: CommitPolicy): void {
    this.guard = policy.guard ?? NO_GUARD;
    this.committed = policy.committed ?? (() => {});
  }

  /** The chain of the writer this connection is: taken the first time it writes, kept while the connection lives. */
  private async chainOf(client: pg.PoolClient): Promise<WriterChain> {
    let chain = this.chains.get(client);
    if (chain === undefined) {
      const { rows } = await client.query<{ epoch: number }>("SELECT nextval('writer_epochs') AS epoch");
      chain = new WriterChain(`${this.options.nodeId}:${rows[0]!.epoch}`);
      this.chains.set(client, chain);
    }
    return chain;
  }

  /**
   * Runs `fn` as one transaction. A deadlock, a serialization failure or a
   * lost race on a holder's lease runs it again (what it published is told
   * only once, after the commit that stands); an unreachable or read-only
   * database rejects with UNAVAILABLE and a retry hint.
   */
  async unit<T>(fn: (u: LeaseUnit) => Promise<T>, _options?: UnitOptions): Promise<T> {
    const refused = this.guard.refuse(1);
    if (refused !== null) throw refused;
    this.inFlight++;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.attempt(fn);
        } catch (err) {
          if (isRetryable(err) && attempt < (this.options.retries ?? 8)) {
            await new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
            continue;
          }
          const fault = databaseFault(err, this.where);
          if (fault !== null) throw this.guard.failed(fault, 1) ?? fault;
          throw err;
        }
      }
    } finally {
      if (--this.inFlight === 0) for (const f of this.idle.splice(0)) f();
    }
  }

  private async attempt<T>(fn: (u: LeaseUnit) => Promise<T>): Promise<T> {
    if (this.slots > 0) this.slots--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await this.attemptOnConnection(fn);
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.slots++;
    }
  }

  private async attemptOnConnection<T>(fn: (u: LeaseUnit) => Promise<T>): Promise<T> {
    const started = performance.now();
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // The connection may drop while the unit waits on something else: its next query fails; no stray error event.
    const dropped = (err: Error) => {
      broken = err;
    };
    client.on('error', dropped);
    let chain: WriterChain | undefined;
    let unit: PgUnit | undefined;
    try {
      chain = await this.chainOf(client);
      const fixed = this.options.leaseClock === undefined ? '' : ` SET LOCAL floatd.now_ms = ${Math.trunc(this.options.leaseClock())};`;
      const results = (await client.query(`BEGIN;${fixed} SELECT floatd_now_ms() AS now`)) as unknown as pg.QueryResult<{ now: number }>[];
      unit = new PgUnit(client, chain, this.options.nodeId, results.at(-1)!.rows[0]!.now, this.poolSeats);
      const value = await fn(unit);
      for (const e of unit.ended) await client.query('SELECT pg_notify($1, $2)', [LEASES_CHANNEL, JSON.stringify(e)]);
      await client.query('COMMIT');
      chain.committed();
      for (const [pool, seats] of unit.registeredPools) this.knownPools.set(pool, seats);
      this.guard.succeeded();
      this.committed(1, (performance.now() - started) / 1000);
      for (const told of unit.takePublished()) {
        try {
          told();
        } catch (err) {
          this.options.onError?.(err);
        }
      }
      return value;
    } catch (err) {
      chain?.rolledBack();
      try {
        await client.query('ROLLBACK');
      } catch (e) {
        // The connection is gone: drop it from the pool (its writer's chain ends with it).
        broken = e as Error;
      }
      if (databaseFault(err, this.where) !== null) broken ??= err as Error;
      for (const undo of unit?.takeRollbacks() ?? []) {
        try {
          undo();
        } catch {
          // Undoing in-memory state must not stop the rest from being undone.
        }
      }
      throw err;
    } finally {
      client.off('error', dropped);
      client.release(broken);
    }
  }

  drained(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.idle.push(resolve));
  }

  /** A short write transaction outside the lease path (keys, meta, activations), with its lease-log entry and a notice to the other nodes. */
  private async write<T>(what: string, fn: (client: pg.PoolClient, log: (e: LeaseEventInput) => Promise<void>) => Promise<T>): Promise<T> {
    return this.unit(async (u) => {
      const unit = u as PgUnit;
      const value = await fn(unitClient(unit), (e) => unit.appendEvent(e));
      await unitClient(unit).query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, JSON.stringify({ origin: this.origin, what })]);
      return value;
    });
  }

  private async rows<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    try {
      return (await this.pool.query<R>(text, values)).rows;
    } catch (err) {
      throw databaseFault(err, this.where) ?? err;
    }
  }

  /**
   * Throws (rejects) UNAVAILABLE while the database cannot take writes: not
   * reachable, or a standby (read-only). The server's storage health probes
   * with it until a fault is over.
   */
  async probe(): Promise<void> {
    const [r] = await this.rows<{ standby: boolean; ro: string }>("SELECT pg_is_in_recovery() AS standby, current_setting('transaction_read_only') AS ro");
    if (r!.standby || r!.ro === 'on') {
      throw new FloatdError('UNAVAILABLE', `storage unavailable: the database refuses writes (a standby, or a primary in read-only mode) (${this.where})`, { reason: 'read-only', retryAfterMs: DATABASE_RETRY_MS });
    }
  }

  /** The database's clock now (epoch ms): lease time in this mode. */
  async databaseTime(): Promise<number> {
    return (await this.rows<{ now: number }>('SELECT floatd_now_ms() AS now'))[0]!.now;
  }

  async nextExpiry(after?: number): Promise<number | undefined> {
    const [r] = await this.rows<{ t: number | null }>(after === undefined ? 'SELECT min(expires_at) AS t FROM leases' : 'SELECT min(expires_at) AS t FROM leases WHERE expires_at > $1', after === undefined ? [] : [after]);
    return r?.t ?? undefined;
  }

  async latestRecordedTime(): Promise<number | undefined> {
    const [r] = await this.rows<{ t: number | null }>('SELECT greatest((SELECT max(ts) FROM events), (SELECT max(renewed_at) FROM leases)) AS t');
    return r?.t ?? undefined;
  }

  /** Every lease of the cluster, with the node its client is on. */
  async allLeases(): Promise<Lease[]> {
    return (await this.rows<LeaseRow>(`SELECT ${LEASE_COLUMNS} FROM leases ORDER BY product, granted_at`)).map(toLease);
  }

  async blocks(now: number): Promise<Block[]> {
    return (await this.rows<BlockRow>('SELECT * FROM blocks WHERE until > $1 ORDER BY until, id', [now])).map(toBlock);
  }

  async getMeta(key: string): Promise<string | undefined> {
    return (await this.rows<{ value: string }>('SELECT value FROM meta WHERE key = $1', [key]))[0]?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.write('meta', (c) => c.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', [key, value]));
  }

  async initMeta(key: string, value: string): Promise<string> {
    await this.rows('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [key, value]);
    return (await this.getMeta(key))!;
  }

  async listLicenses(): Promise<StoredLicense[]> {
    return (await this.rows<{ id: string; token: string; added_at: number }>('SELECT id, token, added_at FROM licenses ORDER BY added_at, id')).map((r) => ({ id: r.id, token: r.token, addedAt: r.added_at }));
  }

  async addLicense(license: StoredLicense, event: LeaseEventInput): Promise<void> {
    await this.write('licenses', async (c, log) => {
      await c.query('INSERT INTO licenses (id, token, added_at) VALUES ($1, $2, $3)', [license.id, license.token, license.addedAt]);
      await log(event);
    });
  }

  async removeLicense(id: string, event: LeaseEventInput): Promise<boolean> {
    return this.write('licenses', async (c, log) => {
      const gone = ((await c.query('DELETE FROM licenses WHERE id = $1', [id])).rowCount ?? 0) > 0;
      if (gone) await log(event);
      return gone;
    });
  }

  async appendEvent(event: LeaseEventInput): Promise<void> {
    await this.unit((u) => u.appendEvent(event));
  }

  queryEvents(filter: EventFilter): Promise<LeaseEvent[]> {
    return queryEvents((text, values) => this.rows<EventRow>(text, values), filter);
  }

  /** The entries reports read, oldest first, a page at a time. */
  reportEvents(query: ReportEventQuery): AsyncIterableIterator<ReportEvent> {
    return reportEvents((text, values) => this.rows(text, values), query);
  }

  async pruneBoundary(beforeMs: number): Promise<number | undefined> {
    return (await this.rows<{ id: number }>('SELECT id FROM events WHERE ts >= $1 ORDER BY ts, id LIMIT 1', [beforeMs]))[0]?.id;
  }

  async pruneEvents(beforeId: number, limit: number): Promise<number> {
    const r = await this.pool.query('DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < $1 ORDER BY id LIMIT $2)', [beforeId, limit]).catch((err: unknown) => {
      throw databaseFault(err, this.where) ?? err;
    });
    return r.rowCount ?? 0;
  }

  async listAdminTokens(): Promise<AdminToken[]> {
    return (await this.rows<{ name: string; created_at: number }>('SELECT name, created_at FROM admin_tokens ORDER BY name')).map((r) => ({ name: r.name, createdAt: r.created_at }));
  }

  async adminTokenByHash(hash: string): Promise<string | undefined> {
    return (await this.rows<{ name: string }>('SELECT name FROM admin_tokens WHERE hash = $1', [hash]))[0]?.name;
  }

  async putAdminToken(name: string, hash: string, replace: boolean, event: LeaseEventInput): Promise<boolean> {
    return this.write('admin-tokens', async (c, log) => {
      const sql = replace
        ? 'INSERT INTO admin_tokens (name, hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET hash = EXCLUDED.hash, created_at = EXCLUDED.created_at'
        : 'INSERT INTO admin_tokens (name, hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING';
      const done = ((await c.query(sql, [name, hash, event.ts])).rowCount ?? 0) > 0;
      if (done) await log(event);
      return done;
    });
  }

  async removeAdminToken(name: string, event: LeaseEventInput): Promise<boolean> {
    return this.write('admin-tokens', async (c, log) => {
      const gone = ((await c.query('DELETE FROM admin_tokens WHERE name = $1', [name])).rowCount ?? 0) > 0;
      if (gone) await log(event);
      return gone;
    });
  }

  /** This node's activations: a host-bound activation binds one node (migration 002). */
  async listActivations(): Promise<StoredActivation[]> {
    return (await this.rows<ActivationRow>('SELECT * FROM activations WHERE node = $1 ORDER BY key_id', [this.options.nodeId])).map(toActivation);
  }

  async getActivation(keyId: string): Promise<StoredActivation | undefined> {
    const [r] = await this.rows<ActivationRow>('SELECT * FROM activations WHERE node = $1 AND key_id = $2', [this.options.nodeId, keyId]);
    return r && toActivation(r);
  }

  async putActivation(a: StoredActivation, consumeNonce: string | null, event: LeaseEventInput): Promise<boolean> {
    return this.write('activations', async (c, log) => {
      if (consumeNonce !== null) {
        const used = await c.query('UPDATE activation_requests SET consumed_at = $1 WHERE nonce = $2 AND node = $3 AND consumed_at IS NULL', [a.activatedAt, consumeNonce, this.options.nodeId]);
        if ((used.rowCount ?? 0) === 0) return false;
      }
      await c.query(
        `INSERT INTO activations (node, key_id, activation_id, token, source, url, activated_at, validated_at) VALUES ($8, $1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (node, key_id) DO UPDATE SET activation_id = EXCLUDED.activation_id, token = EXCLUDED.token, source = EXCLUDED.source, url = EXCLUDED.url,
           activated_at = EXCLUDED.activated_at, validated_at = EXCLUDED.validated_at`,
        [a.keyId, a.activationId, a.token, a.source, a.url, a.activatedAt, a.validatedAt, this.options.nodeId],
      );
      await log(event);
      return true;
    });
  }

  async revalidated(keyId: string, token: string, at: number): Promise<void> {
    await this.write('activations', (c) => c.query('UPDATE activations SET token = $1, validated_at = $2 WHERE node = $4 AND key_id = $3', [token, at, keyId, this.options.nodeId]));
  }

  async removeActivation(keyId: string, event: LeaseEventInput): Promise<boolean> {
    return this.write('activations', async (c, log) => {
      const gone = ((await c.query('DELETE FROM activations WHERE node = $2 AND key_id = $1', [keyId, this.options.nodeId])).rowCount ?? 0) > 0;
      if (gone) await log(event);
      return gone;
    });
  }

  async addActivationRequest(nonce: string, keyId: string, kind: 'activation' | 'deactivation', createdAt: number): Promise<void> {
    await this.rows('INSERT INTO activation_requests (nonce, key_id, kind, created_at, node) VALUES ($1, $2, $3, $4, $5)', [nonce, keyId, kind, createdAt, this.options.nodeId]);
  }

  async findActivationRequest(nonce: string): Promise<{ keyId: string; kind: 'activation' | 'deactivation'; createdAt: number; consumedAt: number | null } | undefined> {
    const [r] = await this.rows<{ key_id: string; kind: 'activation' | 'deactivation'; created_at: number; consumed_at: number | null }>('SELECT * FROM activation_requests WHERE nonce = $1 AND node = $2', [nonce, this.options.nodeId]);
    return r && { keyId: r.key_id, kind: r.kind, createdAt: r.created_at, consumedAt: r.consumed_at };
  }

  /** The database's replication as this node sees it (status, /readyz). */
  replication(): Promise<ReplicationState> {
    return readReplication(<R,>(text: string) => this.rows<R & pg.QueryResultRow>(text) as Promise<R[]>);
  }

  /** Checks every writer's hash chain of the cluster's lease log and the merged order (floatd log verify). */
  async verifyLog(): Promise<ClusterLogReport> {
    try {
      return await verifyClusterLog(this.pool);
    } catch (err) {
      throw databaseFault(err, this.where) ?? err;
    }
  }

  /**
   * Every pool's seats and running leases, counted in one statement on the
   * database's clock: what `floatd ha verify` samples during a drill.
   */
  async seatSample(): Promise<Array<{ readonly pool: string; readonly seats: number; readonly running: number }>> {
    return this.rows<{ pool: string; seats: number; running: number }>(
      `SELECT p.id AS pool, p.seats, count(l.id) FILTER (WHERE l.expires_at > floatd_now_ms())::int AS running
         FROM pools p LEFT JOIN leases l ON l.pool_id = p.id GROUP BY p.id, p.seats ORDER BY p.id`,
    );
  }

  /** Every node's activations, for status: which nodes may serve which keys. */
  async clusterActivations(): Promise<Array<StoredActivation & { readonly node: string }>> {
    return (await this.rows<ActivationRow & { node: string }>('SELECT * FROM activations ORDER BY node, key_id')).map((r) => ({ ...toActivation(r), node: r.node }));
  }

  /** Ends the connections (the change feed's too). */
  close(): void {
    void this.end();
  }

  end(): Promise<void> {
    this.ended ??= (async () => {
      await this.changes.close();
      await this.pool.end().catch(() => {});
    })();
    return this.ended;
  }
}

/** The connection a unit runs on (for the store's own short writes beside the lease path). */
function unitClient(unit: PgUnit): pg.PoolClient {
  return unit.connection;
}


export type { ReplicationState } from './pg-replication.js';
