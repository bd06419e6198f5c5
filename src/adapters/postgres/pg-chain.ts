import type { LeaseEventInput } from '../../domain/events.js';
import { chainHash, CHAIN_VERSION, GENESIS } from '../sqlite/log-chain.js';

/**
 * The lease log's hash chains on PostgreSQL: one per writer, so nodes never
 * wait on a cluster-wide chain head.
 *
 * A writer is one database connection of one node process, named
 * `node:epoch` (the epoch from the database sequence writer_epochs, taken when
 * the connection first writes): its transactions run one after another, so its
 * chain is extended in commit order, and no two processes ever extend one
 * chain. An entry's encoding is the SQLite chain's version-1 array with the
 * writer's sequence number in place of the row id, and the writer as a
 * trailing ["writer", name] pair:
 *   [1, seq, ts, event, pool_id, product, lease_id, user, host, instance, remote,
 *    listener, seats_in_use, seats_total, code, reason, message, actor, ["writer", writer]]
 *   hash = lowercase hex SHA-256(UTF-8(prev_hash ‖ encoding)), prev_hash of seq 1 = 64 zeros.
 * The table's `id` is the cluster's merged order; within a writer, ids rise with seq.
 */
export function writerEncoding(writer: string, seq: number, e: LeaseEventInput): string {
  const values = [
    seq, e.ts, e.event, e.poolId ?? null, e.product ?? null, e.leaseId ?? null, e.user ?? null, e.host ?? null, e.instance ?? null,
    e.remote ?? null, e.listener ?? null, e.seatsInUse ?? null, e.seatsTotal ?? null, e.code ?? null, e.reason ?? null, e.message ?? null, e.actor ?? null,
  ];
  const text = JSON.stringify(values);
  return `[${CHAIN_VERSION},${text.slice(1, -1)},${JSON.stringify(['writer', writer])}]`;
}

/** One entry as the chain stores it. */
export interface ChainedEntry {
  readonly event: LeaseEventInput;
  readonly writer: string;
  readonly seq: number;
  readonly prevHash: string;
  readonly hash: string;
}

/**
 * The head of one writer's chain. A unit extends a tentative head; the commit
 * makes it the head, a rollback returns to the last committed one.
 */
export class WriterChain {
  private seq = 0;
  private head = GENESIS;
  private tentativeSeq = 0;
  private tentativeHead = GENESIS;

  constructor(readonly writer: string) {}

  chain(events: readonly LeaseEventInput[]): ChainedEntry[] {
    return events.map((event) => {
      const seq = ++this.tentativeSeq;
      const prevHash = this.tentativeHead;
      const hash = chainHash(prevHash, writerEncoding(this.writer, seq, event));
      this.tentativeHead = hash;
      return { event, writer: this.writer, seq, prevHash, hash };
    });
  }

  committed(): void {
    this.seq = this.tentativeSeq;
    this.head = this.tentativeHead;
  }

  rolledBack(): void {
    this.tentativeSeq = this.seq;
    this.tentativeHead = this.head;
  }
}

const EVENT_COLUMNS = [
  'ts', 'event', 'pool_id', 'product', 'lease_id', '"user"', 'host', 'instance', 'remote', 'listener', 'seats_in_use', 'seats_total',
  'code', 'reason', 'message', 'actor', 'writer', 'seq', 'prev_hash', 'hash',
] as const;

/** One multi-row INSERT of chained entries: its text and parameters. */
export function insertEntries(entries: readonly ChainedEntry[]): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const rows = entries.map((c) => {
    const e = c.event;
    const base = values.length;
    values.push(
      e.ts, e.event, e.poolId ?? null, e.product ?? null, e.leaseId ?? null, e.user ?? null, e.host ?? null, e.instance ?? null, e.remote ?? null,
      e.listener ?? null, e.seatsInUse ?? null, e.seatsTotal ?? null, e.code ?? null, e.reason ?? null, e.message ?? null, e.actor ?? null,
      c.writer, c.seq, c.prevHash, c.hash,
    );
    return `(${EVENT_COLUMNS.map((_, i) => `$${base + i + 1}`).join(', ')})`;
  });
  return { text: `INSERT INTO events (${EVENT_COLUMNS.join(', ')}) VALUES ${rows.join(', ')}`, values };
}
