import type pg from 'pg';
import type { Cluster } from '../../domain/ports.js';

/** A node of the cluster as its row in `nodes` says. */
export interface ClusterNode {
  readonly id: string;
  readonly listeners: readonly string[];
  readonly version: string;
  readonly pid: number;
  readonly startedAt: number;
  readonly lastSeen: number;
  /** When it stopped cleanly; null while it runs (or if it died). */
  readonly stoppedAt: number | null;
}

interface NodeRow {
  id: string;
  listeners: string[];
  version: string;
  pid: number;
  started_at: number;
  last_seen: number;
  stopped_at: number | null;
}

/**
 * The nodes sharing one database. Each node writes its row at start and at
 * every heartbeat; a job that must run once per cluster runs under a session
 * advisory lock, so while one node runs it the others skip it (a node that
 * dies mid-job drops its connection, and the lock with it).
 */
export class PgCluster implements Cluster {
  constructor(
    private readonly pool: pg.Pool,
    readonly nodeId: string,
  ) {}

  async runOnce(job: string, fn: () => Promise<void> | void): Promise<boolean> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // Held while the job runs: a dropped connection ends the lock with it, and is not an unhandled error.
    const dropped = (err: Error) => {
      broken = err;
    };
    client.on('error', dropped);
    try {
      const { rows } = await client.query<{ got: boolean }>("SELECT pg_try_advisory_lock(hashtextextended('floatd:job:' || $1, 0)) AS got", [job]);
      if (rows[0]?.got !== true) return false;
      try {
        await fn();
      } finally {
        await client.query("SELECT pg_advisory_unlock(hashtextextended('floatd:job:' || $1, 0))", [job]).catch((err: Error) => {
          broken = err;
        });
      }
      return true;
    } catch (err) {
      broken ??= err as Error;
      throw err;
    } finally {
      client.off('error', dropped);
      client.release(broken);
    }
  }

  /** Writes this node's row: at start (with its listeners) and at every heartbeat. Returns the database's clock (epoch ms). */
  async heartbeat(node: { listeners: readonly string[]; version: string; startedAt: number }): Promise<number> {
    const { rows } = await this.pool.query<{ now: number }>(
      `INSERT INTO nodes (id, listeners, version, pid, started_at, last_seen, stopped_at)
       VALUES ($1, $2, $3, $4, $5, floatd_now_ms(), NULL)
       ON CONFLICT (id) DO UPDATE SET listeners = EXCLUDED.listeners, version = EXCLUDED.version, pid = EXCLUDED.pid,
         started_at = EXCLUDED.started_at, last_seen = EXCLUDED.last_seen, stopped_at = NULL
       RETURNING last_seen AS now`,
      [this.nodeId, JSON.stringify(node.listeners), node.version, process.pid, node.startedAt],
    );
    return rows[0]!.now;
  }

  /** Marks this node stopped (a clean stop). */
  async stopped(): Promise<void> {
    await this.pool.query('UPDATE nodes SET stopped_at = floatd_now_ms() WHERE id = $1', [this.nodeId]);
  }

  async nodes(): Promise<ClusterNode[]> {
    const { rows } = await this.pool.query<NodeRow>('SELECT id, listeners, version, pid, started_at, last_seen, stopped_at FROM nodes ORDER BY id');
    return rows.map((r) => ({ id: r.id, listeners: r.listeners, version: r.version, pid: r.pid, startedAt: r.started_at, lastSeen: r.last_seen, stoppedAt: r.stopped_at }));
  }
}
