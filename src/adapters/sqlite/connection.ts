import type Database from 'better-sqlite3';
import type { LeaseEventInput } from '../../domain/events.js';
import type { LogChainAppender } from './log-chain-appender.js';
import { guardStorage } from './storage-fault.js';

/**
 * The store's connection as its parts outside the lease path use it
 * (licenses, activations, admin tokens): storage faults become UNAVAILABLE,
 * and each change is one IMMEDIATE transaction with its lease-log entry.
 */
export class SqliteConnection {
  constructor(
    readonly db: Database.Database,
    readonly file: string,
    private readonly chain: LogChainAppender,
  ) {}

  /** Runs `fn`, turning a storage fault into UNAVAILABLE; other errors pass unchanged. */
  guard<T>(fn: () => T): T {
    return guardStorage(this.file, fn);
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction (a savepoint inside another), in
   * which `appendEvent` adds to the hash chain: if it fails or does not
   * commit, the chain's cached head is forgotten with what it appended.
   */
  write<T>(fn: () => T): T {
    return this.guard(() => this.chain.committing(() => this.db.transaction(() => this.chain.guarded(fn)).immediate()));
  }

  /** Appends an entry to the lease log; inside `write`. */
  appendEvent(event: LeaseEventInput): void {
    this.chain.append(event);
  }
}
