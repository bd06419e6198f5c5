import type Database from 'better-sqlite3';
import type { CommitQueue } from '../../domain/commit-queue.js';
import { FloatdError } from '../../domain/errors.js';
import type { Lease } from '../../domain/lease.js';
import type { LeaseTx, LeaseUnit } from '../../domain/ports.js';
import type { BatchRunner, Settled } from '../store/group-commit.js';
import { TxUnit } from '../store/tx-unit.js';
import { storageFault } from './storage-fault.js';

/** What the units of work need of the SQLite store: its connection and the state that follows its transactions. */
export interface SqliteTransactionState {
  readonly db: Database.Database;
  readonly file: string;
  readonly tx: LeaseTx;
  readonly commits: CommitQueue;
  readonly seats: {
    sync(): void;
    mark(): number;
    rollback(mark: number): void;
    committed(): void;
    reloadNextTime(): void;
  };
  /** The lease log's hash chain, whose cached head follows the transactions. */
  readonly chain: {
    /** A write transaction begins (the chain head is checked once in it) or ends. */
    opened(): void;
    closed(): void;
    /** Something rolled back: the cached chain head may not be the stored one. */
    forgetHead(): void;
  };
  allLeases(): Lease[];
  /** Just before COMMIT; what it throws fails the batch. */
  beforeCommit(): void;
}

function safely(fns: ReadonlyArray<() => void>): void {
  for (const fn of fns) {
    try {
      fn();
    } catch {
      // Undoing in-memory state must not stop the rest from being undone.
    }
  }
}

/**
 * The SQLite units of work: a batch of units is one IMMEDIATE transaction,
 * each unit a savepoint of its own. better-sqlite3 answers at once, so a
 * batch runs from BEGIN to COMMIT without the event loop taking a turn: no
 * other code sees or joins its transaction.
 */
export class SqliteUnits implements BatchRunner<LeaseUnit> {
  /** BEGIN, SAVEPOINT, RELEASE, COMMIT: prepared once each (parsing them per unit costs a few microseconds). */
  private readonly statements = new Map<string, Database.Statement>();

  private readonly allLeases: () => Lease[];
  private readonly publish: (fn: () => void) => void;

  constructor(private readonly s: SqliteTransactionState) {
    this.allLeases = () => s.allLeases();
    this.publish = (fn) => s.commits.afterCommit(fn);
  }

  async runBatch(works: ReadonlyArray<(u: LeaseUnit) => Promise<unknown>>, more: () => boolean): Promise<{ results: Settled[]; failure: unknown }> {
    const { s } = this;
    const results: Settled[] = [];
    const undo: Array<() => void> = [];
    const fault: { first: FloatdError | null } = { first: null };
    const mark = s.seats.mark();
    s.commits.begin();
    s.chain.opened();
    try {
      this.exec('BEGIN IMMEDIATE');
      // Inside the transaction, so no other process can commit between the check and the work.
      s.seats.sync();
      for (const work of works) {
        if (results.length > 0 && !more()) break;
        results.push(await this.runUnit(work, undo, fault));
        // A fault SQLite answered by rolling back the whole transaction: the batch is lost, say why.
        if (!s.db.inTransaction) {
          throw fault.first ?? new FloatdError('UNAVAILABLE', `storage unavailable: the transaction was rolled back by SQLite (${s.file})`, { reason: 'io-error' });
        }
      }
      s.beforeCommit();
      this.exec('COMMIT');
    } catch (err) {
      if (s.db.inTransaction) {
        try {
          s.db.exec('ROLLBACK');
        } catch {
          // Rolled back already, or the connection is gone: nothing of the batch is kept either way.
        }
      }
      s.chain.forgetHead();
      s.seats.rollback(mark);
      // A failed transaction (a storage fault, perhaps): count again from the table next time.
      s.seats.reloadNextTime();
      s.commits.end(false);
      safely(undo.reverse());
      return { results, failure: storageFault(err, s.file) ?? err };
    } finally {
      s.chain.closed();
    }
    s.seats.committed();
    s.commits.end(true);
    return { results, failure: null };
  }

  /** One unit in a savepoint: its writes and what it published are kept only if it returns. */
  private async runUnit(work: (u: LeaseUnit) => Promise<unknown>, undo: Array<() => void>, fault: { first: FloatdError | null }): Promise<Settled> {
    const { s } = this;
    const mark = s.seats.mark();
    const rollbacks: Array<() => void> = [];
    s.commits.begin();
    try {
      this.exec('SAVEPOINT unit');
    } catch (err) {
      s.commits.end(false);
      throw err;
    }
    try {
      const value = await work(new TxUnit({ tx: s.tx, leases: this.allLeases, publish: this.publish, onRollback: (fn) => rollbacks.push(fn) }));
      this.exec('RELEASE unit');
      s.commits.end(true);
      undo.push(...rollbacks);
      return { ok: true, value };
    } catch (err) {
      s.commits.end(false);
      s.chain.forgetHead();
      s.seats.rollback(mark);
      if (s.db.inTransaction) {
        try {
          this.exec('ROLLBACK TO unit');
          this.exec('RELEASE unit');
        } catch {
          // The whole transaction is gone: the batch fails after this unit.
        }
      }
      safely(rollbacks.reverse());
      const asFault = storageFault(err, s.file);
      if (asFault !== null) fault.first ??= asFault;
      return { ok: false, err: asFault ?? err };
    }
  }

  private exec(sql: string): void {
    try {
      let statement = this.statements.get(sql);
      if (statement === undefined) this.statements.set(sql, (statement = this.s.db.prepare(sql)));
      statement.run();
    } catch (err) {
      throw storageFault(err, this.s.file) ?? err;
    }
  }
}
