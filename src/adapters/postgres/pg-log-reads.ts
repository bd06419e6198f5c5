import type { EventFilter, LeaseEvent, ReportEvent, ReportEventQuery } from '../../domain/events.js';
import { toEvent, type EventRow } from './pg-rows.js';

/** Runs one query and returns its rows. */
export type Rows<R> = (text: string, values: unknown[]) => Promise<R[]>;

/** Entries a report reads per query. */
const REPORT_PAGE = 20_000;

/** The lease-log entries that match a filter, oldest first (the newest `limit`, or the first `first`). */
export async function queryEvents(rows: Rows<EventRow>, filter: EventFilter): Promise<LeaseEvent[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (filter.afterId !== undefined) add('id > ?', filter.afterId);
  if (filter.beforeId !== undefined) add('id < ?', filter.beforeId);
  if (filter.sinceMs !== undefined) add('ts >= ?', filter.sinceMs);
  if (filter.untilMs !== undefined) add('ts < ?', filter.untilMs);
  if (filter.user !== undefined) add('"user" = ?', filter.user);
  if (filter.host !== undefined) add('host = ?', filter.host);
  if (filter.instance !== undefined) add('instance = ?', filter.instance);
  if (filter.leaseId !== undefined) add('starts_with(lease_id, ?)', filter.leaseId);
  if (filter.listener !== undefined) add('listener = ?', filter.listener);
  if (filter.actor !== undefined) add('actor = ?', filter.actor);
  if (filter.product !== undefined) add('product = ?', filter.product);
  if (filter.pool !== undefined) add('pool_id = ?', filter.pool);
  if (filter.events !== undefined && filter.events.length > 0) add('event = ANY(?)', [...filter.events]);
  let sql = `SELECT * FROM events${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`;
  if (filter.first !== undefined) {
    params.push(filter.first);
    sql += ` ORDER BY id LIMIT $${params.length}`;
  } else if (filter.limit !== undefined) {
    params.push(filter.limit);
    sql = `SELECT * FROM (${sql} ORDER BY id DESC LIMIT $${params.length}) newest ORDER BY id`;
  } else {
    sql += ' ORDER BY id';
  }
  return (await rows(sql, params)).map(toEvent);
}

/** The columns of an entry that reports read. */
type ReportRow = Pick<EventRow, 'id' | 'ts' | 'event' | 'pool_id' | 'product' | 'lease_id' | 'user' | 'instance' | 'seats_total' | 'code' | 'reason' | 'count'>;

/**
 * The entries reports read, oldest first, a page at a time (keyset on id):
 * a report over millions of entries holds one page, and the node serves
 * leases between pages.
 */
export async function* reportEvents(rows: Rows<ReportRow>, query: ReportEventQuery): AsyncIterableIterator<ReportEvent> {
  const kinds = ['granted', 'released', 'expired', 'revoked', 'denied', 'key-added', 'key-removed', 'key-expired', 'activation-changed'];
  const params: unknown[] = [query.untilMs, kinds];
  let where = 'ts < $2 AND event = ANY($3)';
  if (query.product !== undefined) {
    params.push(query.product);
    where += " AND (product = $4 OR event = 'key-removed')";
  }
  for (let after = 0; ; ) {
    const page = await rows(
      `SELECT id, ts, event, pool_id, product, lease_id, "user", instance, seats_total, code, reason, count FROM events WHERE id > $1 AND ${where} ORDER BY id LIMIT ${REPORT_PAGE}`,
      [after, ...params],
    );
    if (page.length === 0) return;
    after = page.at(-1)!.id;
    for (const r of page) {
      yield { ts: r.ts, event: r.event, poolId: r.pool_id, product: query.product ?? r.product, leaseId: r.lease_id, user: r.user, instance: r.instance, seatsTotal: r.seats_total, code: r.code, reason: r.reason, count: r.count };
    }
  }
}
