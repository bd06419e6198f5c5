import type pg from 'pg';
import type { LeaseEventInput } from '../../domain/events.js';
import { chainHash, GENESIS } from '../sqlite/log-chain.js';
import { writerEncoding } from './pg-chain.js';
import type { EventRow } from '../store/rows.js';

/** What is wrong with one writer's chain, where it shows first. */
export interface WriterProblem {
  readonly writer: string;
  /** changed: an entry differs from what was hashed; removed: entries are missing; inserted: an entry was added, repeated or put out of its writer's order. */
  readonly kind: 'changed' | 'removed' | 'inserted';
  readonly id: number;
  readonly seq: number;
  readonly detail: string;
}

export interface WriterChainReport {
  readonly writer: string;
  readonly entries: number;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** The chain's first entries were pruned by retention: it is checked from the first one kept. */
  readonly pruned: boolean;
}

export interface ClusterLogReport {
  readonly ok: boolean;
  readonly entries: number;
  readonly writers: readonly WriterChainReport[];
  readonly first: { readonly id: number; readonly ts: number } | null;
  readonly last: { readonly id: number; readonly ts: number } | null;
  readonly problems: readonly WriterProblem[];
}

/** An event row with its chain columns. */
interface Row extends Omit<EventRow, 'count'> {
  writer: string;
  seq: number;
  prev_hash: string;
  hash: string;
}

function entryOf(r: Row): LeaseEventInput {
  return {
    ts: r.ts, event: r.event as LeaseEventInput['event'], poolId: r.pool_id, product: r.product, leaseId: r.lease_id, user: r.user, host: r.host,
    instance: r.instance, remote: r.remote, listener: r.listener, seatsInUse: r.seats_in_use, seatsTotal: r.seats_total, code: r.code, reason: r.reason,
    message: r.message, actor: r.actor,
  };
}

interface WriterState {
  entries: number;
  firstSeq: number;
  seq: number;
  hash: string;
  lastId: number;
  pruned: boolean;
}

const CHUNK = 5000;

/**
 * Checks every writer's hash chain in the lease log of a cluster, and the
 * merged order: each entry's hash over its content and the hash before it,
 * each writer's sequence without gaps or repeats, and ids that rise with each
 * writer's sequence. Reads the log in slices by id, holding one head per
 * writer. A chain whose first entries retention pruned is checked from its
 * first kept entry (`pruned`); only the oldest chains can be in that state.
 */
export async function verifyClusterLog(db: pg.Pool | pg.ClientBase): Promise<ClusterLogReport> {
  const writers = new Map<string, WriterState>();
  const problems: WriterProblem[] = [];
  let entries = 0;
  let first: { id: number; ts: number } | null = null;
  let last: { id: number; ts: number } | null = null;
  for (let after = 0; ; ) {
    const { rows } = await db.query<Row>('SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT $2', [after, CHUNK]);
    if (rows.length === 0) break;
    for (const r of rows) {
      entries++;
      first ??= { id: r.id, ts: r.ts };
      last = { id: r.id, ts: r.ts };
      after = r.id;
      check(r, writers, problems);
    }
  }
  return {
    ok: problems.length === 0,
    entries,
    writers: [...writers].map(([writer, w]) => ({ writer, entries: w.entries, firstSeq: w.firstSeq, lastSeq: w.seq, pruned: w.pruned })),
    first,
    last,
    problems,
  };
}

function check(r: Row, writers: Map<string, WriterState>, problems: WriterProblem[]): void {
  const problem = (kind: WriterProblem['kind'], detail: string) => problems.push({ writer: r.writer, kind, id: r.id, seq: r.seq, detail });
  const hash = chainHash(r.prev_hash, writerEncoding(r.writer, r.seq, entryOf(r)));
  if (hash !== r.hash) problem('changed', `entry ${r.id} (${r.writer} #${r.seq}) differs from what was recorded: its content does not match its hash`);
  const w = writers.get(r.writer);
  if (w === undefined) {
    const pruned = r.seq !== 1 || r.prev_hash !== GENESIS;
    if (r.seq === 1 && r.prev_hash !== GENESIS) problem('changed', `entry ${r.id} is the first of ${r.writer} but does not start its chain`);
    writers.set(r.writer, { entries: 1, firstSeq: r.seq, seq: r.seq, hash: r.hash, lastId: r.id, pruned: pruned && r.seq !== 1 });
    return;
  }
  w.entries++;
  if (r.seq <= w.seq) {
    // Ids rise with each writer's sequence (its transactions run one after another): a number seen again, or out of order, was added.
    problem('inserted', `entry ${r.id} claims ${r.writer} #${r.seq}, which comes at or before #${w.seq} already in the log`);
  } else if (r.seq !== w.seq + 1) {
    problem('removed', `${r.writer} #${w.seq + 1} to #${r.seq - 1} are missing (before entry ${r.id})`);
  } else if (r.prev_hash !== w.hash) {
    problem('removed', `entry ${r.id} (${r.writer} #${r.seq}) does not follow ${r.writer} #${w.seq}: an entry between them was replaced or removed`);
  }
  if (r.seq > w.seq) {
    w.seq = r.seq;
    w.hash = r.hash;
  }
  w.lastId = r.id;
}
