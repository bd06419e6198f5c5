/**
 * Which signed checkpoints a lease log must have, given what the server
 * promises to sign: one of its `server-started` entry at every start, one of
 * its `server-stopped` entry at every clean stop, and one at least every
 * `everyEntries` entries and every `everyMs` of entry time while it runs.
 * Pure: the facts come from the log (already checked as a hash chain), the
 * judgement is made here.
 */

/** How often the server that wrote a run signs checkpoints. */
export interface CheckpointPolicy {
  readonly everyEntries: number;
  readonly everyMs: number;
}

/**
 * A `server-started` entry carries the server's checkpoint policy in its
 * message: it is the mark of a run whose start the server signed, and the
 * interval its tail is judged by (covered by that start's own signature).
 */
export function policyNote(p: CheckpointPolicy): string {
  return `lease-log checkpoints at start, at stop, every ${p.everyEntries} entries and every ${Math.round(p.everyMs / 60_000)} min`;
}

export function policyOf(message: string | null): CheckpointPolicy | null {
  const m = message === null ? null : /lease-log checkpoints at start, at stop, every (\d+) entries and every (\d+) min/.exec(message);
  return m ? { everyEntries: Number(m[1]), everyMs: Number(m[2]) * 60_000 } : null;
}

/** Slack on the time interval: the server looks once a second, a busy one a little later. */
export const INTERVAL_GRACE_MS = 60_000;

export interface RunMark {
  readonly id: number;
  readonly ts: number;
  readonly event: 'server-started' | 'server-stopped';
  readonly message: string | null;
}

export interface AnchorFacts {
  /** Entries in the log (0: empty) and the newest one. */
  readonly entries: number;
  readonly last: { readonly id: number; readonly ts: number } | null;
  /** The verified checkpoints' entries and head hashes, oldest first. */
  readonly checkpoints: ReadonlyArray<{ readonly eventId: number; readonly headHash: string }>;
  /** `server-started` and `server-stopped` entries, oldest first. */
  readonly marks: readonly RunMark[];
  /** Entries after the newest checkpoint: how many, the first and last one's time. */
  readonly tail: { readonly entries: number; readonly fromTs: number | null; readonly toTs: number | null };
  /** Whether a server holds the data directory now. */
  readonly running: boolean;
  /** The policy to judge by where no run recorded one (the settings the verifier reads). */
  readonly fallback: CheckpointPolicy;
  /** An anchor held outside the database: the head hash of a checkpoint the log must still have. */
  readonly anchor?: string;
}

export interface AnchorProblem {
  readonly kind: 'unanchored' | 'anchor-not-found';
  readonly id: number | null;
  readonly ts: number | null;
  readonly detail: string;
}

/** A run that ended without a clean stop (kill -9, a crash, power loss): not tampering, but reported. */
export interface UncleanStop {
  readonly startedId: number;
  readonly startedTs: number;
  /** The run's last entry: the one before the next start, or the newest entry. */
  readonly lastId: number;
  /** The next start, whose checkpoint covers the run's last entries; null when none came yet. */
  readonly restarted: { readonly id: number; readonly ts: number } | null;
}

export interface AnchorReport {
  readonly problem: AnchorProblem | null;
  readonly uncleanStops: readonly UncleanStop[];
  /** The run in progress, when a server runs now. */
  readonly runningSince: { readonly id: number; readonly ts: number } | null;
  readonly policy: CheckpointPolicy;
  /** The checkpoint `anchor` named, when found. */
  readonly anchor: { readonly eventId: number; readonly headHash: string } | null;
}

const at = (id: number, ts: number) => `#${id} (${new Date(ts).toISOString()})`;
const minutes = (ms: number) => `${Math.round(ms / 6_000) / 10} min`;

export function judgeAnchoring(f: AnchorFacts): AnchorReport {
  const signed = new Set(f.checkpoints.map((c) => c.eventId));
  const lastCp = f.checkpoints.at(-1) ?? null;
  const uncleanStops: UncleanStop[] = [];
  let policy = f.fallback;
  let runningSince: AnchorReport['runningSince'] = null;
  const result = (problem: AnchorProblem | null, anchor: AnchorReport['anchor'] = null): AnchorReport => ({ problem, uncleanStops, runningSince, policy, anchor });

  if (f.entries > 0 && lastCp === null) {
    return result({
      kind: 'unanchored',
      id: f.last?.id ?? null,
      ts: f.last?.ts ?? null,
      detail: `the log holds ${f.entries} entries and no signed checkpoint: the server signs one at every start and stop, so they were removed (a data directory no server has started on yet is signed at its first start)`,
    });
  }

  // Runs the server marked as signed: each has its start checkpoint, a clean stop has its stop checkpoint.
  let open: RunMark | null = null;
  const closeCrashed = (lastId: number, restarted: UncleanStop['restarted']) => {
    if (open !== null) uncleanStops.push({ startedId: open.id, startedTs: open.ts, lastId, restarted });
    open = null;
  };
  for (const m of f.marks) {
    if (m.event === 'server-started') {
      const p = policyOf(m.message);
      closeCrashed(m.id - 1, { id: m.id, ts: m.ts });
      if (p !== null) {
        if (!signed.has(m.id)) {
          return result({ kind: 'unanchored', id: m.id, ts: m.ts, detail: `the server started at ${at(m.id, m.ts)} and signed a checkpoint of that entry, which is no longer in the log: checkpoints were removed` });
        }
        if (lastCp !== null && m.id <= lastCp.eventId) policy = p;
        open = m;
      }
    } else if (open !== null) {
      if (!signed.has(m.id)) {
        return result({ kind: 'unanchored', id: m.id, ts: m.ts, detail: `the server stopped at ${at(m.id, m.ts)} and signed a checkpoint of that entry, which is no longer in the log: checkpoints were removed` });
      }
      open = null;
    }
  }
  if (open !== null && f.last !== null) {
    const run: RunMark = open;
    if (f.running) runningSince = { id: run.id, ts: run.ts };
    else closeCrashed(f.last.id, null);
  }

  // The tail: what no signature covers yet is at most one interval long.
  const span = f.tail.fromTs !== null && f.tail.toTs !== null ? f.tail.toTs - f.tail.fromTs : 0;
  if (lastCp !== null && (f.tail.entries > policy.everyEntries || span > policy.everyMs + INTERVAL_GRACE_MS)) {
    const after = f.last!;
    return result({
      kind: 'unanchored',
      id: lastCp.eventId + 1,
      ts: f.tail.fromTs,
      detail:
        `${f.tail.entries} entries after the last signed checkpoint (#${lastCp.eventId}), up to ${at(after.id, after.ts)}, recorded over ${minutes(span)}: ` +
        `more than one checkpoint interval (${policy.everyEntries} entries or ${minutes(policy.everyMs)}), after which the server always signs one${f.running ? ' while it runs' : ''}: checkpoints were removed, or the entries after #${lastCp.eventId} rewritten`,
    });
  }

  if (f.anchor !== undefined) {
    const found = f.checkpoints.find((c) => c.headHash === f.anchor);
    if (found === undefined) {
      return result({
        kind: 'anchor-not-found',
        id: null,
        ts: null,
        detail: `no signed checkpoint in the log has the hash ${f.anchor}: the entries up to that checkpoint were rewritten or cut off since it was recorded (or retention pruned them, if it is older than the log's first entry)`,
      });
    }
    return result(null, found);
  }
  return result(null);
}

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
