import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CHAIN_COLUMNS, chainHash, encodingFromJson } from './log-chain.js';

/** One part of a parallel `floatd log verify`: the entries `from`..`to`, chained from `seed`. */
export interface RangeTask {
  readonly file: string;
  readonly from: number;
  readonly to: number;
  /** The hash the entry `from` must link to (its stored prev_hash; the caller checks the seam). */
  readonly seed: string;
  readonly extensions: readonly string[];
  /** Checkpoints in the range: [entry id, head hash]. */
  readonly checkpoints: ReadonlyArray<readonly [number, string]>;
}

export interface RangeResult {
  /** Every entry of the range present, in sequence, each hash and checkpoint matching. */
  readonly ok: boolean;
  readonly entries: number;
  readonly lastHash: string | null;
}

/** Checks one range without diagnosing: any doubt sends the caller to the sequential walk, which locates the problem. */
export function checkRange(task: RangeTask): RangeResult {
  const db = new Database(task.file, { readonly: true, fileMustExist: true });
  try {
    const columns = ['id', `json_array(${CHAIN_COLUMNS.map((c) => `"${c}"`).join(', ')})`, ...task.extensions.map((c) => `"${c}"`), 'hash'];
    const slice = db.prepare(`SELECT ${columns.join(', ')} FROM events WHERE id >= ? AND id <= ? ORDER BY id LIMIT 20000`).raw(true);
    const heads = new Map(task.checkpoints);
    const nExt = task.extensions.length;
    const noExt: unknown[] = [];
    let prev = task.seed;
    let next = task.from;
    let entries = 0;
    for (;;) {
      const rows = slice.all(next, task.to) as unknown[][];
      if (rows.length === 0) break;
      for (const raw of rows) {
        const id = raw[0] as number;
        const hash = raw[2 + nExt] as string | null;
        if (id !== next || hash === null) return { ok: false, entries, lastHash: null };
        if (chainHash(prev, encodingFromJson(raw[1] as string, nExt > 0 ? raw.slice(2, 2 + nExt) : noExt)) !== hash) return { ok: false, entries, lastHash: null };
        const head = heads.get(id);
        if (head !== undefined && head !== hash) return { ok: false, entries, lastHash: null };
        prev = hash;
        next = id + 1;
        entries++;
      }
    }
    return { ok: next === task.to + 1, entries, lastHash: prev };
  } finally {
    db.close();
  }
}

if (parentPort !== null && workerData !== null && typeof workerData === 'object' && 'file' in (workerData as object)) {
  parentPort.postMessage(checkRange(workerData as RangeTask));
}
