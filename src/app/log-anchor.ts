import type { Config } from '../config/config.js';
import type { CheckpointPolicy } from '../domain/log-anchoring.js';
import type { Checkpoint } from '../adapters/sqlite/log-chain.js';

/**
 * The lease log's anchor: the newest signed checkpoint, as operators keep it
 * outside the database (from the start and stop log lines, `floatd status`,
 * the dashboard) to prove later, with `floatd log verify --anchor HASH`, that
 * the log still holds it.
 */
export interface LogAnchor {
  /** The entry the checkpoint covers. */
  readonly entry: number;
  /** Its head hash: the hash of that entry, which covers every entry before it. */
  readonly hash: string;
  /** When it was signed (ISO 8601). */
  readonly signedAt: string;
}

export function logAnchorOf(cp: Checkpoint | undefined): LogAnchor | null {
  return cp === undefined ? null : { entry: cp.eventId, hash: cp.headHash, signedAt: new Date(cp.ts).toISOString() };
}

/** The fields the start and stop log lines carry: the checkpoint's head hash and the entry it covers. */
export function anchorFields(cp: Checkpoint): { logAnchor: string; logAnchorEntry: number } {
  return { logAnchor: cp.headHash, logAnchorEntry: cp.eventId };
}

/** How often the server signs checkpoints, from its settings. */
export function checkpointPolicy(config: Config): CheckpointPolicy {
  return { everyEntries: config.leaseLog.checkpointEntries, everyMs: config.leaseLog.checkpointMinutes * 60_000 };
}
