import type { Config } from '../config/config.js';
import type { CheckpointPolicy, LogAnchor } from '../domain/log-anchoring.js';
import type { Checkpoint } from '../adapters/sqlite/log-chain.js';

export type { LogAnchor } from '../domain/log-anchoring.js';

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
