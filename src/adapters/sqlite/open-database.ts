import Database from 'better-sqlite3';
import { migrate } from './migrate.js';
import { guardStorage } from './storage-fault.js';

/**
 * How long a statement waits for another process's lock before giving up
 * with SQLITE_BUSY, by default. The server passes its own, much shorter, bound:
 * better-sqlite3 waits on the event loop's thread.
 */
const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/** A file that is not a usable floatd database (empty, another program's, or damaged); `why` says which. */
export class DatabaseUnusable extends Error {
  constructor(readonly why: string) {
    super(why);
    this.name = 'DatabaseUnusable';
  }
}

export interface OpenOptions {
  readonly readonly?: boolean;
  /**
   * The file must already be a floatd database: one without floatd's schema
   * (an empty file, another program's database) is refused with
   * DatabaseUnusable, never made into a fresh one.
   */
  readonly existing?: boolean;
  /** Checks every page of the database before use (PRAGMA quick_check; about a second per 500 MB). */
  readonly verify?: boolean;
  /** How long to wait for a lock another process holds (PRAGMA busy_timeout); 5000 ms by default. */
  readonly busyTimeoutMs?: number;
}

/**
 * Opens the database file and, unless read-only, migrates it: WAL mode keeps
 * readers (status, log) off the writer's back, and synchronous=NORMAL makes
 * each commit survive a process crash (kill -9): the WAL is in the OS before
 * the commit returns. Storage faults come out as UNAVAILABLE; the connection
 * is closed on any failure.
 */
export function openDatabase(file: string, options: OpenOptions): Database.Database {
  const db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  try {
    guardStorage(file, () => {
      db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS}`);
      if (options.existing) checkExisting(db, options.verify ?? false);
      if (!options.readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
        // The server checkpoints every second (small, predictable pauses); this is only the safety net.
        db.pragma('wal_autocheckpoint = 10000');
        db.pragma('foreign_keys = ON');
        migrate(db);
      }
    });
  } catch (err) {
    if (db.open) db.close();
    throw err;
  }
  return db;
}

function checkExisting(db: Database.Database, verify: boolean): void {
  if ((db.pragma('user_version', { simple: true }) as number) === 0) {
    const tables = db.prepare<[], { n: number }>("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table'").get()!.n;
    throw new DatabaseUnusable(tables === 0 ? 'it is empty: it holds no floatd data' : 'it is not a floatd database: it holds tables of another program');
  }
  if (verify) {
    const rows = (db.pragma('quick_check(5)') as Array<{ quick_check: string }>).map((r) => r.quick_check);
    if (rows.join() !== 'ok') {
      const problems = rows.flatMap((r) => r.split('\n')).filter((p) => p.trim() !== '' && !p.startsWith('*** in database'));
      throw new DatabaseUnusable(`it is damaged (PRAGMA quick_check: ${problems[0] ?? rows[0]}${problems.length > 1 ? `, and more` : ''})`);
    }
  }
}
