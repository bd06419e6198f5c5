import type Database from 'better-sqlite3';
import type { EventFilter, LeaseEvent, ReportEvent, ReportEventQuery } from '../../domain/events.js';
import { toEvent, type EventRow } from '../store/rows.js';

/** How many entries a report reads at a time. */
const REPORT_CHUNK = 20_000;
/** The entries reports read, by the number the report query gives each kind. */
const REPORT_EVENT_KINDS = ['', 'granted', 'released', 'expired', 'revoked', 'denied', 'key-added', 'key-removed', 'key-expired', 'activation-changed'] as const;

/** The lease-log entries that match a filter, oldest first (the newest `limit`, or the first `first`). */
export function queryEvents(db: Database.Database, filter: EventFilter): LeaseEvent[] {
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
  return db.prepare<unknown[], EventRow>(sql).all(...params).map(toEvent);
}

/**
 * Streams the entries reports read, in the order written, one row at a time (a
 * report over millions of entries holds only what is still open). Entries
 * that stand for several requests (counted denials) count as such.
 */
export function* reportEvents(db: Database.Database, query: ReportEventQuery): IterableIterator<ReportEvent> {
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
  const chunk = db
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
