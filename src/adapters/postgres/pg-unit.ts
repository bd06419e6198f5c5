import type pg from 'pg';
import type { Block } from '../../domain/blocks.js';
import type { LeaseEventInput } from '../../domain/events.js';
import type { Lease } from '../../domain/lease.js';
import type { LeaseWrite } from '../../domain/lease-decisions.js';
import type { DenialWindow, LeaseUnit, RuleUsage } from '../../domain/ports.js';
import { insertEntries, type WriterChain } from './pg-chain.js';
import { LEASE_COLUMNS, toBlock, toLease, type BlockRow, type LeaseRow } from './pg-rows.js';

/** A lease that ended in a unit, for the node whose client holds it. */
export interface EndedLease {
  readonly lease: Lease;
  /** The node whose client holds it. */
  readonly node: string;
  readonly kind: 'released' | 'expired' | 'revoked';
  readonly reason: string | null;
}

/**
 * One unit of work on PostgreSQL: one transaction on one pooled connection,
 * READ COMMITTED, with the locks that make its decisions exact across nodes:
 * a pool's row (FOR UPDATE) before its seats are counted, a lease's row before
 * it is judged, a per-user advisory lock before a user's rule counts. Lease
 * time is the database's clock as the transaction began (`now()`).
 */
export class PgUnit implements LeaseUnit {
  private readonly publishes: Array<() => void> = [];
  private readonly rollbacks: Array<() => void> = [];
  /** Leases this unit ended, told to their nodes in the same transaction (pg_notify is delivered at commit). */
  readonly ended: EndedLease[] = [];
  private readonly lockedUsers = new Set<string>();

  constructor(
    private readonly client: pg.PoolClient,
    private readonly chain: WriterChain,
    private readonly nodeId: string,
    private readonly time: number,
    private readonly pools: { registered(poolId: string, seats: number): boolean },
  ) {}

  now(): number {
    return this.time;
  }

  /** The unit's connection, for the store's own writes in the same transaction. */
  get connection(): pg.PoolClient {
    return this.client;
  }

  private async rows<R>(text: string, values: unknown[]): Promise<R[]> {
    return (await this.client.query<R & pg.QueryResultRow>(text, values)).rows;
  }

  async findLease(id: string): Promise<Lease | undefined> {
    const [r] = await this.rows<LeaseRow>(`SELECT ${LEASE_COLUMNS} FROM leases WHERE id = $1 FOR UPDATE`, [id]);
    return r && toLease(r);
  }

  async findByHolder(user: string, instance: string, product: string): Promise<Lease | undefined> {
    const [r] = await this.rows<LeaseRow>(`SELECT ${LEASE_COLUMNS} FROM leases WHERE "user" = $1 AND instance = $2 AND product = $3 FOR UPDATE`, [user, instance, product]);
    return r && toLease(r);
  }

  async seatsInUse(poolId: string, now: number, seats: number, intent: 'grant' | 'read' = 'grant'): Promise<number> {
    if (intent === 'grant') await this.lockPool(poolId, seats);
    // A statement of its own: after a lock, it sees what the transactions that held the lock committed.
    const [r] = await this.rows<{ n: number }>('SELECT count(*) AS n FROM leases WHERE pool_id = $1 AND expires_at > $2', [poolId, now]);
    return r!.n;
  }

  /**
   * Locks the pool's row for the rest of the unit: grants to one pool are
   * decided one at a time, cluster-wide. The first unit of a node to grant
   * from a pool also records its seats there (an upsert, which locks too).
   */
  private async lockPool(poolId: string, seats: number): Promise<void> {
    if (this.pools.registered(poolId, seats)) {
      const { rowCount } = await this.client.query('SELECT 1 FROM pools WHERE id = $1 AND seats = $2 FOR UPDATE', [poolId, seats]);
      if ((rowCount ?? 0) > 0) return;
    }
    await this.client.query('INSERT INTO pools (id, seats) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET seats = EXCLUDED.seats', [poolId, seats]);
    this.registeredPools.push([poolId, seats]);
  }

  /** Pools whose seats this unit recorded: known to the node once it commits. */
  readonly registeredPools: Array<[string, number]> = [];

  async earliestExpiry(poolIds: readonly string[], now: number): Promise<number | undefined> {
    const [r] = await this.rows<{ t: number | null }>('SELECT min(expires_at) AS t FROM leases WHERE pool_id = ANY($1) AND expires_at > $2', [poolIds, now]);
    return r?.t ?? undefined;
  }

  /** Takes the user's advisory lock once per unit: rule counts of one user are then exact across nodes. */
  private async lockUser(user: string): Promise<void> {
    if (this.lockedUsers.has(user)) return;
    await this.client.query("SELECT pg_advisory_xact_lock(hashtextextended('floatd:user:' || $1, 0))", [user]);
    this.lockedUsers.add(user);
  }

  ruleUsage(listener: string, user: string, now: number): RuleUsage {
    return {
      held: async (product) => {
        await this.lockUser(user);
        const sql = 'SELECT count(*) AS n FROM leases WHERE "user" = $1 AND listener = $2 AND expires_at > $3' + (product === null ? '' : ' AND product = $4');
        const [r] = await this.rows<{ n: number }>(sql, product === null ? [user, listener, now] : [user, listener, now, product]);
        return r!.n;
      },
      acquiredSince: async (sinceMs, product) => {
        await this.lockUser(user);
        const sql = "SELECT count(*) AS n FROM events WHERE \"user\" = $1 AND ts > $2 AND event = 'granted' AND listener = $3" + (product === null ? '' : ' AND product = $4');
        const [r] = await this.rows<{ n: number }>(sql, product === null ? [user, sinceMs, listener] : [user, sinceMs, listener, product]);
        return r!.n;
      },
    };
  }

  async activeBlock(user: string, instance: string, product: string, now: number): Promise<Block | undefined> {
    const [r] = await this.rows<BlockRow>(
      `SELECT * FROM blocks WHERE "user" = $1 AND product = $2 AND until > $3 AND (scope = 'user' OR instance = $4) ORDER BY until DESC LIMIT 1`,
      [user, product, now, instance],
    );
    return r && toBlock(r);
  }

  async expiredLeases(now: number, limit: number): Promise<Lease[]> {
    // Rows another node is sweeping (or renewing) now are skipped: every expiry is recorded once.
    const rows = await this.rows<LeaseRow>(`SELECT ${LEASE_COLUMNS} FROM leases WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED`, [now, limit]);
    return rows.map(toLease);
  }

  async leases(): Promise<Lease[]> {
    return (await this.rows<LeaseRow>(`SELECT ${LEASE_COLUMNS} FROM leases ORDER BY product, granted_at`, [])).map(toLease);
  }

  async apply(changes: { readonly writes: readonly LeaseWrite[]; readonly log: readonly LeaseEventInput[] }): Promise<void> {
    for (const w of changes.writes) {
      if (w.op === 'insert') {
        const l = w.lease;
        await this.client.query(
          `INSERT INTO leases (${LEASE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
          [l.id, l.poolId, l.product, l.user, l.host, l.instance, l.remote, l.listener, l.grantedAt, l.renewedAt, l.expiresAt, l.leaseMs, l.secretHash ?? null, this.nodeId],
        );
      } else if (w.op === 'extend') {
        await this.client.query('UPDATE leases SET renewed_at = $1, expires_at = $2, node = $3 WHERE id = $4', [w.renewedAt, w.expiresAt, this.nodeId, w.leaseId]);
      } else {
        const [gone] = await this.rows<LeaseRow>(`DELETE FROM leases WHERE id = $1 RETURNING ${LEASE_COLUMNS}`, [w.leaseId]);
        const holderNode = gone?.node;
        if (gone !== undefined && holderNode !== undefined && holderNode !== this.nodeId && holderNode !== '') {
          const entry = changes.log.find((e) => e.leaseId === w.leaseId);
          const kind = entry?.event === 'released' || entry?.event === 'expired' ? entry.event : 'revoked';
          this.ended.push({ lease: toLease(gone), node: holderNode, kind, reason: entry?.reason ?? null });
        }
      }
    }
    await this.appendAll(changes.log);
  }

  private async appendAll(events: readonly LeaseEventInput[]): Promise<void> {
    if (events.length === 0) return;
    const { text, values } = insertEntries(this.chain.chain(events));
    await this.client.query(text, values);
  }

  async shiftExpiries(deltaMs: number): Promise<number> {
    return (await this.client.query('UPDATE leases SET renewed_at = renewed_at + $1, expires_at = expires_at + $1', [deltaMs])).rowCount ?? 0;
  }

  async recordDenial(event: LeaseEventInput, window: DenialWindow): Promise<void> {
    const remote = event.remote ?? '';
    const same = async (e: LeaseEventInput): Promise<number | undefined> => {
      const [r] = await this.rows<{ id: number }>(
        `SELECT id FROM events WHERE event = 'denied' AND remote = $1 AND ts >= $2 AND listener IS NOT DISTINCT FROM $3 AND "user" IS NOT DISTINCT FROM $4
           AND host IS NOT DISTINCT FROM $5 AND instance IS NOT DISTINCT FROM $6 AND product IS NOT DISTINCT FROM $7 AND pool_id IS NOT DISTINCT FROM $8
           AND code IS NOT DISTINCT FROM $9 AND reason IS NOT DISTINCT FROM $10 ORDER BY id DESC LIMIT 1`,
        [remote, window.sinceMs, e.listener ?? null, e.user ?? null, e.host ?? null, e.instance ?? null, e.product ?? null, e.poolId ?? null, e.code ?? null, e.reason ?? null],
      );
      return r?.id;
    };
    const count = (id: number) => this.client.query('UPDATE events SET count = count + 1 WHERE id = $1', [id]);
    const sameId = await same(event);
    if (sameId !== undefined) {
      await count(sameId);
      return;
    }
    const [entries] = await this.rows<{ n: number }>("SELECT count(*) AS n FROM events WHERE event = 'denied' AND remote = $1 AND ts >= $2", [remote, window.sinceMs]);
    if (entries!.n < window.perAddress) {
      await this.appendAll([{ ...event, remote }]);
      return;
    }
    const overflow: LeaseEventInput = { ts: event.ts, event: 'denied', remote, listener: event.listener ?? null, message: window.overflowMessage };
    const catchAll = await same(overflow);
    if (catchAll !== undefined) await count(catchAll);
    else await this.appendAll([overflow]);
  }

  async insertBlock(block: Block): Promise<void> {
    // Ended blocks are of no more use: the lease log keeps their story.
    await this.client.query('DELETE FROM blocks WHERE until <= $1', [block.createdAt]);
    await this.client.query(
      `INSERT INTO blocks (id, scope, "user", instance, product, created_at, until, reason, actor, lease_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [block.id, block.scope, block.user, block.instance, block.product, block.createdAt, block.until, block.reason, block.actor, block.leaseId],
    );
  }

  async deleteBlock(id: string): Promise<Block | undefined> {
    const [r] = await this.rows<BlockRow>('DELETE FROM blocks WHERE id = $1 RETURNING *', [id]);
    return r && toBlock(r);
  }

  appendEvent(event: LeaseEventInput): Promise<void> {
    return this.appendAll([event]);
  }

  publish(fn: () => void): void {
    this.publishes.push(fn);
  }

  onRollback(fn: () => void): void {
    this.rollbacks.push(fn);
  }

  /** What the unit published, to run after its commit. */
  takePublished(): Array<() => void> {
    return this.publishes.splice(0);
  }

  /** What to undo in memory after a rollback, newest first. */
  takeRollbacks(): Array<() => void> {
    return this.rollbacks.splice(0).reverse();
  }
}
