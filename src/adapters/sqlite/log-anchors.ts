import type Database from 'better-sqlite3';
import type { AnchorFacts, RunMark } from '../../domain/log-anchoring.js';
import type { LogVerifier } from '../crypto/log-signer.js';
import { checkpointPayload } from './log-chain.js';

/**
 * What `judgeAnchoring` needs from the log, read after the hash chain was
 * verified up to the entry `lastId` and its checkpoints up to `verifiedUpTo`
 * (entries a running server appended since are left out).
 */
export function readAnchorFacts(db: Database.Database, lastId: number | null, verifier: LogVerifier, verifiedUpTo: number): Pick<AnchorFacts, 'checkpoints' | 'marks' | 'tail'> {
  if (lastId === null) return { checkpoints: [], marks: [], tail: { entries: 0, fromTs: null, toTs: null } };
  // Checkpoints a running server signed after the chain was checked are counted only with a good signature.
  const checkpoints = db
    .prepare<[number], { event_id: number; head_hash: string; count: number; ts: number; kid: string; signature: string }>('SELECT * FROM log_checkpoints WHERE event_id <= ? ORDER BY event_id')
    .all(lastId)
    .filter((c) => c.event_id <= verifiedUpTo || (c.kid === verifier.kid && verifier.verify(checkpointPayload(c.event_id, c.count, c.ts, c.head_hash), c.signature)))
    .map((c) => ({ eventId: c.event_id, headHash: c.head_hash }));
  const marks = db
    .prepare<[number], RunMark>("SELECT id, ts, event, message FROM events WHERE event IN ('server-started', 'server-stopped') AND id <= ? ORDER BY id")
    .all(lastId);
  const after = checkpoints.at(-1)?.eventId ?? 0;
  const count = db.prepare<[number, number], { n: number }>('SELECT COUNT(*) AS n FROM events WHERE id > ? AND id <= ?').get(after, lastId)!.n;
  const tsAt = db.prepare<[number, number], { ts: number }>('SELECT ts FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT 1');
  const tail = { entries: count, fromTs: count === 0 ? null : tsAt.get(after, lastId)?.ts ?? null, toTs: count === 0 ? null : tsAt.get(lastId - 1, lastId)?.ts ?? null };
  return { checkpoints, marks, tail };
}
