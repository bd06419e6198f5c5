import { hash as digest } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { LogSigner, LogVerifier } from '../crypto/log-signer.js';

/**
 * The lease log's hash chain.
 *
 * Canonical encoding, version 1: the JSON array
 *   [1, id, ts, event, pool_id, product, lease_id, user, host, instance, remote,
 *    listener, seats_in_use, seats_total, code, reason, message, actor, ...extensions]
 * (absent values as null, numbers as JSON integers, strings JSON-escaped), and
 *   hash = lowercase hex of SHA-256(UTF-8(prev_hash ‖ encoding))
 * where prev_hash is the 64-character hash of the entry before (64 zeros for
 * the first entry of the chain).
 *
 * Columns added to `events` later are encoded only by being listed in
 * CHAIN_EXTENSIONS, each as a trailing ["name", value] pair that appears only
 * when the entry carries something there, so entries written before the column
 * existed keep their hash. An entry is final once written: a later UPDATE of
 * any encoded column is, by design, reported as a change.
 */
export const CHAIN_VERSION = 1;
export const GENESIS = '0'.repeat(64);

/** The version-1 columns, in encoding order. */
export const CHAIN_COLUMNS = [
  'id', 'ts', 'event', 'pool_id', 'product', 'lease_id', 'user', 'host', 'instance', 'remote',
  'listener', 'seats_in_use', 'seats_total', 'code', 'reason', 'message', 'actor',
] as const;

/**
 * Columns encoded after version 1, in order, when present on the table and
 * carrying a value (none yet). A column is listed here only if an entry's value
 * in it is final once written.
 *
 * `count` (repeated identical denials recorded as one entry per minute,
 * migration 003) is deliberately not encoded: it is raised in place while its
 * minute lasts, after the entry was chained, so covering it would report every
 * aggregated denial as a change. The chain therefore does not protect an
 * entry's count (docs/lease-log.md says so). To cover it, the aggregate would
 * have to be written once its minute is over; then add
 *   { column: 'count', carries: (v) => v !== null && v !== undefined && v !== 1 }
 * so single entries, and those written before, keep their hashes.
 */
export const CHAIN_EXTENSIONS: ReadonlyArray<{ readonly column: string; readonly carries: (v: unknown) => boolean }> = [];

/** The canonical encoding of one entry, from its version-1 values (in CHAIN_COLUMNS order) and its extension values. */
export function entryEncoding(values: readonly unknown[], extensions: readonly unknown[]): string {
  return encodingFromJson(JSON.stringify(values), extensions);
}

/**
 * The same from the version-1 values already as a JSON array: SQLite's
 * json_array() over the columns gives exactly JSON.stringify's text for
 * integers, null and (well-formed) strings, which lets verification read one
 * string per entry instead of seventeen values.
 */
export function encodingFromJson(text: string, extensions: readonly unknown[]): string {
  let extra = '';
  for (let i = 0; i < extensions.length && i < CHAIN_EXTENSIONS.length; i++) {
    const x = CHAIN_EXTENSIONS[i]!;
    if (x.carries(extensions[i])) extra += `,${JSON.stringify([x.column, extensions[i]])}`;
  }
  return `[${CHAIN_VERSION},${text.slice(1, -1)}${extra}]`;
}

/** The hash of an entry from its encoding and the hash before it. */
export function chainHash(prev: string, encoding: string): string {
  // One-shot crypto.hash: half the cost of createHash().update().digest() per entry.
  return digest('sha256', prev + encoding, 'hex');
}

/** The hash of one entry, given the hash of the entry before it. */
export function entryHash(values: readonly unknown[], extensions: readonly unknown[], prev: string): string {
  return chainHash(prev, entryEncoding(values, extensions));
}

/** What a checkpoint signs. */
export function checkpointPayload(eventId: number, count: number, ts: number, head: string): string {
  return `floatd-log-checkpoint v${CHAIN_VERSION} event=${eventId} count=${count} ts=${ts} head=${head}`;
}

export interface Checkpoint {
  readonly eventId: number;
  readonly headHash: string;
  readonly count: number;
  readonly ts: number;
  readonly kid: string;
  readonly signature: string;
}

export interface ChainProblem {
  /** changed: an entry's content differs from what was hashed; removed: entries are missing; inserted: entries were added; checkpoint: a signed checkpoint does not match or its signature fails. */
  readonly kind: 'changed' | 'removed' | 'inserted' | 'checkpoint';
  /** The entry where the problem shows (for removed: the first entry after the gap). */
  readonly id: number | null;
  readonly ts: number | null;
  readonly detail: string;
}

export interface ChainReport {
  readonly ok: boolean;
  readonly entries: number;
  readonly first: { readonly id: number; readonly ts: number } | null;
  readonly last: { readonly id: number; readonly ts: number } | null;
  /** Entries before `first` were pruned by retention (recorded by a log-pruned entry). */
  readonly prunedBefore: number | null;
  readonly checkpoints: number;
  readonly lastCheckpoint: Checkpoint | null;
  /** Entries after the last checkpoint: chained, not yet covered by a signature. */
  readonly unsigned: number;
  readonly keyId: string;
  readonly problem: ChainProblem | null;
}

interface CheckpointRow {
  event_id: number;
  head_hash: string;
  count: number;
  ts: number;
  kid: string;
  signature: string;
}

export function toCheckpoint(r: CheckpointRow): Checkpoint {
  return { eventId: r.event_id, headHash: r.head_hash, count: r.count, ts: r.ts, kid: r.kid, signature: r.signature };
}

/** Which extension columns the events table has, in CHAIN_EXTENSIONS order (a prefix that may have holes is kept in order). */
export function presentExtensions(db: Database.Database): string[] {
  const columns = new Set((db.pragma('table_info(events)') as Array<{ name: string }>).map((c) => c.name));
  return CHAIN_EXTENSIONS.map((x) => x.column).filter((c) => columns.has(c));
}

/** Signs and stores a checkpoint of the entry `eventId` (already in the table). */
export function writeCheckpoint(db: Database.Database, signer: LogSigner, eventId: number, head: string, count: number, ts: number): void {
  db.prepare('INSERT OR IGNORE INTO log_checkpoints (event_id, head_hash, count, ts, kid, signature) VALUES (?, ?, ?, ?, ?, ?)').run(
    eventId, head, count, ts, signer.kid, signer.sign(checkpointPayload(eventId, count, ts, head)),
  );
}

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
