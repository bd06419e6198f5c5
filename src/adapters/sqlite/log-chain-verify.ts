// Verifying the lease log's hash chain, as log-chain.ts defines it: one walk, or ranges in worker threads.
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { LogVerifier } from '../crypto/log-signer.js';
import {
  CHAIN_COLUMNS, GENESIS, chainHash, checkpointPayload, encodingFromJson, presentExtensions, toCheckpoint,
  type ChainProblem, type ChainReport, type CheckpointRow,
} from './log-chain.js';

/** The id a log-pruned entry names as the first one kept ("entries before #N"). */
export function prunedBeforeOf(message: string | null): number | null {
  const m = message ? /before #(\d+)/.exec(message) : null;
  return m ? Number(m[1]) : null;
}

/** " #id (time)" of an entry, for problem descriptions. */
function at(id: number | null, ts: number | null): string {
  return id === null ? '' : ` #${id} (${ts === null ? '?' : new Date(ts).toISOString()})`;
}

/** How many recent hashes a walk remembers, to tell an inserted entry from a changed one. */
const RECENT_HASHES = 4096;

/** One walk of the log by verifyChain: what it has seen so far, and the checks of each step. */
class ChainWalk {
  private entries = 0;
  private first: { id: number; ts: number } | null = null;
  private last: { id: number; ts: number; hash: string } | null = null;
  private checked = 0;
  private lastCp: CheckpointRow | null = null;
  private lastCpEntries = 0;
  private cpIndex = 0;
  /** Recent hashes, to tell an inserted entry (the next entry links to an earlier one) from a changed one. */
  private readonly recent = new Map<string, number>();
  private readonly recentOrder: string[] = [];
  private readonly cps: CheckpointRow[];
  private readonly prunedBefore: number | null;
  private readonly prevOf: Database.Statement<[number], { prev_hash: string | null }>;

  constructor(
    private readonly db: Database.Database,
    private readonly verifier: LogVerifier,
    private readonly chainStart: number | null,
  ) {
    this.cps = db.prepare<[], CheckpointRow>('SELECT * FROM log_checkpoints ORDER BY event_id').all();
    const prunedRow = db.prepare<[], { message: string | null }>("SELECT message FROM events WHERE event = 'log-pruned' ORDER BY id DESC LIMIT 1").get();
    this.prunedBefore = prunedBeforeOf(prunedRow?.message ?? null);
    this.prevOf = db.prepare<[number], { prev_hash: string | null }>('SELECT prev_hash FROM events WHERE id = ?');
  }

  /** Walks the log; the first problem found, or null. */
  run(): ChainProblem | null {
    // Signatures first: a checkpoint that is not the server's proves nothing.
    return this.checkSignatures() ?? this.walkEntries() ?? this.checkEnd();
  }

  report(problem: ChainProblem | null): ChainReport {
    const { entries, last, lastCp } = this;
    return {
      ok: problem === null,
      entries,
      first: this.first,
      last: last && { id: last.id, ts: last.ts },
      prunedBefore: this.prunedBefore,
      checkpoints: this.checked,
      lastCheckpoint: lastCp && toCheckpoint(lastCp),
      unsigned: lastCp ? entries - this.lastCpEntries : entries,
      keyId: this.verifier.kid,
      problem,
    };
  }

  private checkSignatures(): ChainProblem | null {
    const { verifier } = this;
    for (const cp of this.cps) {
      if (cp.kid !== verifier.kid || !verifier.verify(checkpointPayload(cp.event_id, cp.count, cp.ts, cp.head_hash), cp.signature)) {
        const e = this.db.prepare<[number], { ts: number }>('SELECT ts FROM events WHERE id = ?').get(cp.event_id);
        return {
          kind: 'checkpoint',
          id: cp.event_id,
          ts: e?.ts ?? cp.ts,
          detail: cp.kid !== verifier.kid
            ? `the checkpoint at entry #${cp.event_id} was signed by key ${cp.kid}, not by the server key ${verifier.kid}`
            : `the checkpoint at entry #${cp.event_id} has a signature that does not verify with the server key ${verifier.kid}: the checkpoint was changed`,
        };
      }
    }
    return null;
  }

  private walkEntries(): ChainProblem | null {
    const extensions = presentExtensions(this.db);
    // Read in slices of plain rows (much faster than a row-at-a-time cursor); prev_hash only where a link breaks.
    const columns = ['id', 'ts', `json_array(${CHAIN_COLUMNS.map((c) => `"${c}"`).join(', ')})`, ...extensions.map((c) => `"${c}"`), 'hash'];
    const slice = this.db.prepare(`SELECT ${columns.join(', ')} FROM events WHERE id > ? ORDER BY id LIMIT 20000`).raw(true);
    const nExt = extensions.length;
    const noExt: unknown[] = [];
    let afterId = -Infinity;
    for (;;) {
      const rows = slice.all(afterId) as unknown[][];
      if (rows.length === 0) return null;
      afterId = rows.at(-1)![0] as number;
      for (const raw of rows) {
        const id = raw[0] as number;
        const ts = raw[1] as number;
        const hash = raw[3 + nExt] as string | null;
        const encoding = encodingFromJson(raw[2] as string, nExt > 0 ? raw.slice(3, 3 + nExt) : noExt);
        const problem = this.step(id, ts, encoding, hash);
        if (problem !== null) return problem;
      }
    }
  }

  /** One entry: its hash, its link to the entry before, and the checkpoint at it. */
  private step(id: number, ts: number, encoding: string, hash: string | null): ChainProblem | null {
    if (hash === null) return { kind: 'inserted', id, ts, detail: `entry${at(id, ts)} carries no hash: it was added to the log outside floatd` };
    const last = this.last;
    const linkProblem = last === null ? this.checkStart(id, ts, encoding, hash) : chainHash(last.hash, encoding) !== hash ? this.brokenLink(last, id, ts, encoding, hash) : null;
    if (linkProblem !== null) return linkProblem;
    this.entries++;
    const cpProblem = this.checkCheckpoint(id, ts, hash);
    if (cpProblem !== null) return cpProblem;
    this.recent.set(hash, id);
    this.recentOrder.push(hash);
    if (this.recentOrder.length > RECENT_HASHES) for (const old of this.recentOrder.splice(0, 1024)) this.recent.delete(old);
    this.last = { id, ts, hash };
    return null;
  }

  /** The first entry of the log: where the chain begins, or where pruning left it. */
  private checkStart(id: number, ts: number, encoding: string, hash: string): ChainProblem | null {
    const { cps, prunedBefore } = this;
    // Checkpoints of entries that were pruned anchor nothing any more.
    while (this.cpIndex < cps.length && cps[this.cpIndex]!.event_id < id) this.cpIndex++;
    this.first = { id, ts };
    const prev = this.prevOf.get(id)?.prev_hash ?? null;
    if (prev === null || chainHash(prev, encoding) !== hash) {
      return { kind: 'changed', id, ts, detail: `entry${at(id, ts)} was changed: its content no longer matches its hash` };
    }
    if (prev !== GENESIS) {
      if (prunedBefore === null || id > prunedBefore) {
        return {
          kind: 'removed',
          id,
          ts,
          detail: `the log begins at entry${at(id, ts)}, but the entries before it were not pruned by retention (${prunedBefore === null ? 'no pruning is recorded' : `pruning kept entries from #${prunedBefore} on`}): entries were removed`,
        };
      }
    } else if (this.chainStart !== null && id !== this.chainStart) {
      return { kind: 'inserted', id, ts, detail: `entry${at(id, ts)} starts a new chain; the chain began at #${this.chainStart}` };
    }
    return null;
  }

  /** An entry that does not link to the one before it: finds out what differs. */
  private brokenLink(last: { id: number; ts: number; hash: string }, id: number, ts: number, encoding: string, hash: string): ChainProblem {
    const prev = this.prevOf.get(id)?.prev_hash ?? null;
    if (prev === last.hash) {
      return { kind: 'changed', id, ts, detail: `entry${at(id, ts)} was changed: its content no longer matches its hash` };
    }
    const earlier = prev === null ? undefined : this.recent.get(prev);
    const ownOk = prev !== null && chainHash(prev, encoding) === hash;
    if (id !== last.id + 1 || (!ownOk && earlier === undefined)) {
      return { kind: 'removed', id, ts, detail: `entries between #${last.id} (${new Date(last.ts).toISOString()}) and${at(id, ts)} were removed: #${id} links to an entry that is no longer in the log` };
    }
    if (earlier !== undefined) {
      const insertedTs = this.db.prepare<[number], { ts: number }>('SELECT ts FROM events WHERE id = ?').get(earlier + 1)?.ts ?? null;
      return {
        kind: 'inserted',
        id: earlier + 1,
        ts: insertedTs,
        detail: `entry${at(earlier + 1, insertedTs)} was inserted${earlier + 1 < last.id ? ` (with the entries after it up to #${last.id})` : ''}: entry${at(id, ts)} links to #${earlier}, the entry before it`,
      };
    }
    return { kind: 'changed', id: last.id, ts: last.ts, detail: `entry${at(last.id, last.ts)} was changed (and given a new hash): the entry after it recorded a different one` };
  }

  /** The signed checkpoint due at this entry, if any: it must name this entry's hash and count the entries since the one before. */
  private checkCheckpoint(id: number, ts: number, hash: string): ChainProblem | null {
    const cp = this.cpIndex < this.cps.length ? this.cps[this.cpIndex]! : undefined;
    if (cp === undefined || cp.event_id > id) return null;
    // A checkpoint whose entry was skipped: that entry is gone.
    if (cp.event_id < id) {
      return { kind: 'removed', id, ts, detail: `the signed checkpoint at entry #${cp.event_id} names an entry that is no longer in the log (the next one is${at(id, ts)})` };
    }
    if (cp.head_hash !== hash) {
      return { kind: 'changed', id, ts, detail: `entry${at(id, ts)} is not the entry the signed checkpoint covers: it or the entries before it were rewritten` };
    }
    const { lastCp, entries } = this;
    if (lastCp !== null && cp.count - lastCp.count !== entries - this.lastCpEntries) {
      return { kind: 'removed', id, ts, detail: `the signed checkpoints at #${lastCp.event_id} and #${cp.event_id} count ${cp.count - lastCp.count} entries between them, the log holds ${entries - this.lastCpEntries}` };
    }
    this.lastCp = cp;
    this.lastCpEntries = entries;
    this.checked++;
    this.cpIndex++;
    return null;
  }

  /** A checkpoint beyond the last entry: the newest entries are gone. */
  private checkEnd(): ChainProblem | null {
    if (this.cpIndex >= this.cps.length) return null;
    const cp = this.cps[this.cpIndex]!;
    return {
      kind: 'removed',
      id: cp.event_id,
      ts: cp.ts,
      detail: `the log ends at entry #${this.last?.id ?? '?'}, but a signed checkpoint covers entries up to #${cp.event_id} (${new Date(cp.ts).toISOString()}): the newest entries were removed`,
    };
  }
}

/**
 * Walks the whole log once, oldest first: recomputes every hash, checks every
 * link, every checkpoint's signature, head and count, and where the log begins.
 * Stops at the first problem and locates it.
 */
export function verifyChain(db: Database.Database, verifier: LogVerifier, chainStart: number | null): ChainReport {
  const walk = new ChainWalk(db, verifier, chainStart);
  return walk.report(walk.run());
}

/** Below this many entries one thread is quicker than starting workers. */
const PARALLEL_MIN_ENTRIES = 100_000;

/**
 * The same check as verifyChain, with the hashing spread over worker threads
 * (one per core, up to four) when the log is long. Each worker checks one
 * range of entries; the seams between ranges, the start of the log and the
 * checkpoints' signatures and counts are checked here. Any doubt falls back to
 * the sequential walk, which then locates the first problem.
 */
export async function verifyChainParallel(db: Database.Database, file: string, verifier: LogVerifier, chainStart: number | null): Promise<ChainReport> {
  const workerFile = fileURLToPath(new URL('./log-chain-worker.js', import.meta.url));
  const bounds = db.prepare<[], { lo: number | null; hi: number | null; n: number }>('SELECT MIN(id) AS lo, MAX(id) AS hi, COUNT(*) AS n FROM events').get()!;
  const threads = Math.min(4, availableParallelism());
  const sequential = () => verifyChain(db, verifier, chainStart);
  if (bounds.lo === null || bounds.hi === null || bounds.n < PARALLEL_MIN_ENTRIES || threads < 2 || !existsSync(workerFile)) return sequential();
  const { lo, hi } = bounds;
  if (bounds.n !== hi - lo + 1 || chainStart === null) return sequential();
  const cps = db.prepare<[number, number], CheckpointRow>('SELECT * FROM log_checkpoints WHERE event_id >= ? AND event_id <= ? ORDER BY event_id').all(lo, hi);
  const beyond = db.prepare<[number], { n: number }>('SELECT COUNT(*) AS n FROM log_checkpoints WHERE event_id > ?').get(hi)!.n;
  if (beyond > 0) return sequential();
  for (const cp of cps) {
    if (cp.kid !== verifier.kid || !verifier.verify(checkpointPayload(cp.event_id, cp.count, cp.ts, cp.head_hash), cp.signature)) return sequential();
    if (cp.count !== cp.event_id - chainStart + 1) return sequential();
  }
  const prunedRow = db.prepare<[], { message: string | null }>("SELECT message FROM events WHERE event = 'log-pruned' ORDER BY id DESC LIMIT 1").get();
  const prunedBefore = prunedBeforeOf(prunedRow?.message ?? null);
  const prevOf = db.prepare<[number], { prev_hash: string | null; ts: number }>('SELECT prev_hash, ts FROM events WHERE id = ?');
  const firstRow = prevOf.get(lo)!;
  if (firstRow.prev_hash === null) return sequential();
  if (firstRow.prev_hash === GENESIS ? lo !== chainStart : prunedBefore === null || lo > prunedBefore) return sequential();
  const extensions = presentExtensions(db);
  const size = Math.ceil((hi - lo + 1) / threads);
  const tasks = [];
  for (let from = lo; from <= hi; from += size) {
    const to = Math.min(hi, from + size - 1);
    const seed = prevOf.get(from)?.prev_hash ?? null;
    if (seed === null) return sequential();
    tasks.push({ file, from, to, seed, extensions, checkpoints: cps.filter((c) => c.event_id >= from && c.event_id <= to).map((c) => [c.event_id, c.head_hash] as const) });
  }
  const results = await Promise.all(
    tasks.map(
      (task) =>
        new Promise<{ ok: boolean; entries: number; lastHash: string | null }>((resolve) => {
          const worker = new Worker(workerFile, { workerData: task });
          worker.once('message', (r: { ok: boolean; entries: number; lastHash: string | null }) => resolve(r));
          worker.once('error', () => resolve({ ok: false, entries: 0, lastHash: null }));
          worker.once('exit', () => resolve({ ok: false, entries: 0, lastHash: null }));
        }),
    ),
  );
  // Every range whole, and each one links to the end of the one before.
  for (let i = 0; i < results.length; i++) {
    if (!results[i]!.ok || (i > 0 && results[i - 1]!.lastHash !== tasks[i]!.seed)) return sequential();
  }
  const lastTs = prevOf.get(hi)!.ts;
  const lastCp = cps.at(-1) ?? null;
  return {
    ok: true,
    entries: hi - lo + 1,
    first: { id: lo, ts: firstRow.ts },
    last: { id: hi, ts: lastTs },
    prunedBefore,
    checkpoints: cps.length,
    lastCheckpoint: lastCp && toCheckpoint(lastCp),
    unsigned: lastCp ? hi - lastCp.event_id : hi - lo + 1,
    keyId: verifier.kid,
    problem: null,
  };
}
