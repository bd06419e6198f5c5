import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { LogSigner, LogVerifier } from '../crypto/log-signer.js';

/**
 * The lease log's hash chain.
 *
 * Canonical encoding, version 1: the JSON array
 *   [1, id, ts, event, pool_id, product, lease_id, user, host, instance, remote,
 *    listener, seats_in_use, seats_total, code, reason, message, actor, ...extensions]
 * (absent values as null, numbers as JSON integers, strings JSON-escaped), and
 *   hash = SHA-256(prev_hash ‖ UTF-8(encoding))
 * where prev_hash is the 32-byte hash of the entry before (32 zero bytes for
 * the first entry of the chain).
 *
 * Columns added to `events` later are encoded only by being listed in
 * CHAIN_EXTENSIONS, each as a trailing ["name", value] pair that appears only
 * when the entry carries something there, so entries written before the column
 * existed keep their hash. An entry is final once written: a later UPDATE of
 * any encoded column is, by design, reported as a change.
 */
export const CHAIN_VERSION = 1;
export const GENESIS = Buffer.alloc(32);

/** The version-1 columns, in encoding order. */
export const CHAIN_COLUMNS = [
  'id', 'ts', 'event', 'pool_id', 'product', 'lease_id', 'user', 'host', 'instance', 'remote',
  'listener', 'seats_in_use', 'seats_total', 'code', 'reason', 'message', 'actor',
] as const;

/**
 * Columns encoded after version 1, in order, when present on the table and
 * carrying a value. `count` (repeated identical denials recorded as one entry)
 * is encoded only when above 1, so a single entry encodes the same with or
 * without the column.
 */
export const CHAIN_EXTENSIONS: ReadonlyArray<{ readonly column: string; readonly carries: (v: unknown) => boolean }> = [
  { column: 'count', carries: (v) => v !== null && v !== undefined && v !== 1 },
];

/** The hash of one entry, from its version-1 values (in CHAIN_COLUMNS order), its extension values and the hash before it. */
export function entryHash(values: readonly unknown[], extensions: readonly unknown[], prev: Uint8Array): Buffer {
  let text = JSON.stringify(values);
  if (extensions.length > 0) {
    const extra: unknown[] = [];
    CHAIN_EXTENSIONS.forEach((x, i) => {
      if (i < extensions.length && x.carries(extensions[i])) extra.push([x.column, extensions[i]]);
    });
    if (extra.length > 0) text = `${text.slice(0, -1)},${JSON.stringify(extra).slice(1)}`;
  }
  return createHash('sha256').update(prev).update(`[${CHAIN_VERSION},${text.slice(1)}`).digest();
}

/** What a checkpoint signs. */
export function checkpointPayload(eventId: number, count: number, ts: number, head: Uint8Array): string {
  return `floatd-log-checkpoint v${CHAIN_VERSION} event=${eventId} count=${count} ts=${ts} head=${Buffer.from(head).toString('hex')}`;
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
  head_hash: Buffer;
  count: number;
  ts: number;
  kid: string;
  signature: string;
}

export function toCheckpoint(r: CheckpointRow): Checkpoint {
  return { eventId: r.event_id, headHash: r.head_hash.toString('hex'), count: r.count, ts: r.ts, kid: r.kid, signature: r.signature };
}

/** Which extension columns the events table has, in CHAIN_EXTENSIONS order (a prefix that may have holes is kept in order). */
export function presentExtensions(db: Database.Database): string[] {
  const columns = new Set((db.pragma('table_info(events)') as Array<{ name: string }>).map((c) => c.name));
  return CHAIN_EXTENSIONS.map((x) => x.column).filter((c) => columns.has(c));
}

/** Signs and stores a checkpoint of the entry `eventId` (already in the table). */
export function writeCheckpoint(db: Database.Database, signer: LogSigner, eventId: number, head: Uint8Array, count: number, ts: number): void {
  db.prepare('INSERT OR IGNORE INTO log_checkpoints (event_id, head_hash, count, ts, kid, signature) VALUES (?, ?, ?, ?, ?, ?)').run(
    eventId, Buffer.from(head), count, ts, signer.kid, signer.sign(checkpointPayload(eventId, count, ts, head)),
  );
}

/** The id a log-pruned entry names as the first one kept ("entries before #N"). */
export function prunedBeforeOf(message: string | null): number | null {
  const m = message ? /before #(\d+)/.exec(message) : null;
  return m ? Number(m[1]) : null;
}

/**
 * Walks the whole log once, oldest first: recomputes every hash, checks every
 * link, every checkpoint's signature, head and count, and where the log begins.
 * Stops at the first problem and locates it.
 */
export function verifyChain(db: Database.Database, verifier: LogVerifier, chainStart: number | null): ChainReport {
  const extensions = presentExtensions(db);
  const cps = db.prepare<[], CheckpointRow>('SELECT * FROM log_checkpoints ORDER BY event_id').all();
  const prunedRow = db.prepare<[], { message: string | null }>("SELECT message FROM events WHERE event = 'log-pruned' ORDER BY id DESC LIMIT 1").get();
  const prunedBefore = prunedBeforeOf(prunedRow?.message ?? null);
  let entries = 0;
  let first: { id: number; ts: number } | null = null;
  let last: { id: number; ts: number; hash: Buffer } | null = null;
  let checked = 0;
  let lastCp: CheckpointRow | null = null;
  let lastCpEntries = 0;
  let problem: ChainProblem | null = null;
  const report = (): ChainReport => ({
    ok: problem === null,
    entries,
    first,
    last: last && { id: last.id, ts: last.ts },
    prunedBefore,
    checkpoints: checked,
    lastCheckpoint: lastCp && toCheckpoint(lastCp),
    unsigned: lastCp ? entries - lastCpEntries : entries,
    keyId: verifier.kid,
    problem,
  });
  const at = (id: number | null, ts: number | null) => (id === null ? '' : ` #${id} (${ts === null ? '?' : new Date(ts).toISOString()})`);

  // Signatures first: a checkpoint that is not the server's proves nothing.
  for (const cp of cps) {
    if (cp.kid !== verifier.kid || !verifier.verify(checkpointPayload(cp.event_id, cp.count, cp.ts, cp.head_hash), cp.signature)) {
      const e = db.prepare<[number], { ts: number }>('SELECT ts FROM events WHERE id = ?').get(cp.event_id);
      problem = {
        kind: 'checkpoint',
        id: cp.event_id,
        ts: e?.ts ?? cp.ts,
        detail: cp.kid !== verifier.kid
          ? `the checkpoint at entry #${cp.event_id} was signed by key ${cp.kid}, not by the server key ${verifier.kid}`
          : `the checkpoint at entry #${cp.event_id} has a signature that does not verify with the server key ${verifier.kid}: the checkpoint was changed`,
      };
      return report();
    }
  }

  const columns = [...CHAIN_COLUMNS, ...extensions, 'prev_hash', 'hash'];
  const rows = db.prepare(`SELECT ${columns.map((c) => `"${c}"`).join(', ')} FROM events ORDER BY id`).raw(true);
  const nExt = extensions.length;
  const nV1 = CHAIN_COLUMNS.length;
  // Recent hashes, to tell an inserted entry (the next entry links to an earlier one) from a changed one.
  const recent = new Map<string, number>();
  const recentOrder: string[] = [];
  let cpIndex = 0;
  for (const raw of rows.iterate() as IterableIterator<unknown[]>) {
    const id = raw[0] as number;
    const ts = raw[1] as number;
    const prev = raw[nV1 + nExt] as Buffer | null;
    const hash = raw[nV1 + nExt + 1] as Buffer | null;
    if (hash === null || prev === null) {
      problem = { kind: 'inserted', id, ts, detail: `entry${at(id, ts)} carries no hash: it was added to the log outside floatd` };
      return report();
    }
    // Checkpoints of entries that were pruned anchor nothing any more.
    while (cpIndex < cps.length && cps[cpIndex]!.event_id < (first?.id ?? id)) cpIndex++;
    if (last === null) {
      first = { id, ts };
      if (!prev.equals(GENESIS)) {
        if (prunedBefore === null || id > prunedBefore) {
          problem = {
            kind: 'removed',
            id,
            ts,
            detail: `the log begins at entry${at(id, ts)}, but the entries before it were not pruned by retention (${prunedBefore === null ? 'no pruning is recorded' : `pruning kept entries from #${prunedBefore} on`}): entries were removed`,
          };
          return report();
        }
      } else if (chainStart !== null && id !== chainStart) {
        problem = { kind: 'inserted', id, ts, detail: `entry${at(id, ts)} starts a new chain; the chain began at #${chainStart}` };
        return report();
      }
    } else if (!prev.equals(last.hash)) {
      const earlier = recent.get(prev.toString('hex'));
      const ownOk = entryHash(raw.slice(0, nV1), nExt > 0 ? raw.slice(nV1, nV1 + nExt) : [], prev).equals(hash);
      if (id !== last.id + 1 || (!ownOk && earlier === undefined)) {
        problem = { kind: 'removed', id, ts, detail: `entries between #${last.id}${at(null, null)} and${at(id, ts)} were removed: #${id} links to an entry that is no longer in the log` };
      } else if (earlier !== undefined) {
        problem = { kind: 'inserted', id: earlier + 1, ts: null, detail: `entries #${earlier + 1} to #${last.id} were inserted: entry${at(id, ts)} links to #${earlier}` };
        const row = db.prepare<[number], { ts: number }>('SELECT ts FROM events WHERE id = ?').get(earlier + 1);
        problem = { ...problem, ts: row?.ts ?? null, detail: `entry #${earlier + 1}${row ? ` (${new Date(row.ts).toISOString()})` : ''} was inserted${earlier + 1 < last.id ? ` (with the entries after it up to #${last.id})` : ''}: entry${at(id, ts)} links to #${earlier}` };
      } else {
        problem = { kind: 'changed', id: last.id, ts: last.ts, detail: `entry${at(last.id, last.ts)} was changed (and given a new hash): the entry after it recorded a different one` };
      }
      return report();
    }
    if (!entryHash(raw.slice(0, nV1), nExt > 0 ? raw.slice(nV1, nV1 + nExt) : [], prev).equals(hash)) {
      problem = { kind: 'changed', id, ts, detail: `entry${at(id, ts)} was changed: its content no longer matches its hash` };
      return report();
    }
    entries++;
    // A checkpoint whose entry was skipped: that entry is gone.
    while (cpIndex < cps.length && cps[cpIndex]!.event_id < id) {
      const cp = cps[cpIndex]!;
      problem = { kind: 'removed', id, ts, detail: `the signed checkpoint at entry #${cp.event_id} names an entry that is no longer in the log (found${at(id, ts)} after #${last?.id ?? '?'})` };
      return report();
    }
    if (cpIndex < cps.length && cps[cpIndex]!.event_id === id) {
      const cp = cps[cpIndex]!;
      if (!cp.head_hash.equals(hash)) {
        problem = { kind: 'changed', id, ts, detail: `entry${at(id, ts)} is not the entry the signed checkpoint covers: it or the entries before it were rewritten` };
        return report();
      }
      if (lastCp !== null && cp.count - lastCp.count !== entries - lastCpEntries) {
        problem = { kind: 'removed', id, ts, detail: `the signed checkpoints at #${lastCp.event_id} and #${cp.event_id} count ${cp.count - lastCp.count} entries between them, the log holds ${entries - lastCpEntries}` };
        return report();
      }
      lastCp = cp;
      lastCpEntries = entries;
      checked++;
      cpIndex++;
    }
    const hex = hash.toString('hex');
    recent.set(hex, id);
    recentOrder.push(hex);
    if (recentOrder.length > 4096) for (const old of recentOrder.splice(0, 1024)) recent.delete(old);
    last = { id, ts, hash };
  }
  if (cpIndex < cps.length) {
    const cp = cps[cpIndex]!;
    problem = {
      kind: 'removed',
      id: cp.event_id,
      ts: cp.ts,
      detail: `the log ends at entry #${last?.id ?? '?'}, but a signed checkpoint covers entries up to #${cp.event_id} (${new Date(cp.ts).toISOString()}): the newest entries were removed`,
    };
  }
  return report();
}
