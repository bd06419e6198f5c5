import type Database from 'better-sqlite3';
import type { AnchorFacts, RunMark } from '../../domain/log-anchoring.js';

/**
 * What `judgeAnchoring` needs from the log, read after the hash chain and the
 * checkpoints were verified up to the entry `lastId` (entries a running server
 * appended since are left out).
 */
export function readAnchorFacts(db: Database.Database, lastId: number | null): Pick<AnchorFacts, 'checkpoints' | 'marks' | 'tail'> {
  if (lastId === null) return { checkpoints: [], marks: [], tail: { entries: 0, fromTs: null, toTs: null } };
  const checkpoints = db
    .prepare<[number], { eventId: number; headHash: string }>('SELECT event_id AS eventId, head_hash AS headHash FROM log_checkpoints WHERE event_id <= ? ORDER BY event_id')
    .all(lastId);
  const marks = db
    .prepare<[number], RunMark>("SELECT id, ts, event, message FROM events WHERE event IN ('server-started', 'server-stopped') AND id <= ? ORDER BY id")
    .all(lastId);
  const after = checkpoints.at(-1)?.eventId ?? 0;
  const count = db.prepare<[number, number], { n: number }>('SELECT COUNT(*) AS n FROM events WHERE id > ? AND id <= ?').get(after, lastId)!.n;
  const tsAt = db.prepare<[number, number], { ts: number }>('SELECT ts FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT 1');
  const tail = { entries: count, fromTs: count === 0 ? null : tsAt.get(after, lastId)?.ts ?? null, toTs: count === 0 ? null : tsAt.get(lastId - 1, lastId)?.ts ?? null };
  return { checkpoints, marks, tail };
}
