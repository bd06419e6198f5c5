import type Database from 'better-sqlite3';
import type { LeaseEventInput } from '../../domain/events.js';
import type { LogSigner } from '../crypto/log-signer.js';
import { CHAIN_COLUMNS, GENESIS, entryHash, presentExtensions, toCheckpoint, writeCheckpoint, type Checkpoint } from './log-chain.js';

/** How the lease log's hash chain is checkpointed (see log-chain.ts). */
export interface LogChainOptions {
  /** Signs checkpoints; without one (commands other than `serve`), entries are chained and left for the server to checkpoint. */
  readonly signer: LogSigner;
  /** A checkpoint after this many entries… */
  readonly everyEntries: number;
  /** …or, by `checkpointLogIfDue`, after this long with new entries. */
  readonly everyMs: number;
}

/** meta key: the id of the first entry of the hash chain. */
const CHAIN_START_META = 'log.chain.start';

// String.prototype.isWellFormed (Node 20) answers natively; the replacement is rare.
const LONE_SURROGATE_G = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Text as SQLite stores it: a lone UTF-16 surrogate (not valid Unicode) becomes U+FFFD, here before hashing, so the hash covers what is kept. */
function wellFormed(v: string | null | undefined): string | null {
  if (v === null || v === undefined) return null;
  return (v as unknown as { isWellFormed(): boolean }).isWellFormed() ? v : v.replace(LONE_SURROGATE_G, '\ufffd');
}

function eventParams(e: LeaseEventInput): unknown[] {
  const w = wellFormed;
  return [
    e.ts, e.event, w(e.poolId), w(e.product), w(e.leaseId), w(e.user), w(e.host),
    w(e.instance), w(e.remote), w(e.listener), e.seatsInUse ?? null, e.seatsTotal ?? null,
    w(e.code), w(e.reason), w(e.message), w(e.actor),
  ];
}

/**
 * Writes the lease log's hash chain: appends entries, each linked to the one
 * before, and signs checkpoints of it when they are due. Keeps the newest
 * entry's id and hash in memory between appends, and so follows the store's
 * write transactions: what a transaction or savepoint that rolls back appended
 * is forgotten with it.
 */
export class LogChainAppender {
  private chain: LogChainOptions | undefined;
  /** Extension columns of the chain's encoding this database has (CHAIN_EXTENSIONS). */
  private readonly extensions: string[];
  /** The entry the newest checkpoint covers (0: none yet). */
  private lastCheckpointId = 0;
  /**
   * The newest entry's id and hash, as this connection last saw them, or null
   * when unknown: saves a lookup per entry on the lease path. Trusted only
   * while no other process has committed (PRAGMA data_version, checked once
   * per transaction under its write lock) and forgotten on any rollback.
   */
  private head: { id: number; hash: string } | null = null;
  private seenVersion = -1;
  private depth = 0;
  private versionChecked = false;

  private readonly insertEntry: Database.Statement<unknown[]>;
  private readonly chainHead: Database.Statement<[], { id: number; hash: string | null; ts: number }>;
  private readonly dataVersion: Database.Statement<[], number>;
  private readonly lastCheckpoint: Database.Statement<[], { event_id: number; ts: number }>;
  private readonly getMeta: Database.Statement<[string], { value: string }>;
  private readonly setMeta: Database.Statement<[string, string]>;

  constructor(
    private readonly db: Database.Database,
    chain: LogChainOptions | undefined,
  ) {
    this.chain = chain;
    this.extensions = presentExtensions(db);
    const extCols = this.extensions.map((c) => `, "${c}"`).join('');
    const extMarks = this.extensions.map(() => ', ?').join('');
    this.insertEntry = db.prepare(
      `INSERT INTO events (id, ts, event, pool_id, product, lease_id, user, host, instance, remote, listener, seats_in_use, seats_total, code, reason, message, actor${extCols}, prev_hash, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?${extMarks}, ?, ?)`,
    );
    this.chainHead = db.prepare<[], { id: number; hash: string | null; ts: number }>('SELECT id, hash, ts FROM events ORDER BY id DESC LIMIT 1');
    this.dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    this.lastCheckpoint = db.prepare<[], { event_id: number; ts: number }>('SELECT event_id, ts FROM log_checkpoints ORDER BY event_id DESC LIMIT 1');
    this.getMeta = db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?');
    this.setMeta = db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  }

  /** Once the database is open: chains what older versions left unchained, and finds the newest checkpoint. */
  load(): void {
    if (!this.db.readonly) this.chainLegacyEntries();
    this.lastCheckpointId = this.lastCheckpoint.get()?.event_id ?? 0;
  }

  /**
   * Appends one entry to the hash chain: its id is the next after the newest
   * entry, its hash covers its content and the newest entry's hash. Runs inside
   * the caller's transaction (IMMEDIATE: no other writer can append between
   * reading the head and inserting), and signs a checkpoint there when one is due.
   */
  append(event: LeaseEventInput): void {
    if (this.depth === 0 || !this.versionChecked) {
      const version = this.dataVersion.get() as number;
      if (version !== this.seenVersion) this.head = null;
      this.seenVersion = version;
      this.versionChecked = this.depth > 0;
    }
    let head = this.head;
    if (head === null) {
      const row = this.chainHead.get();
      head = row === undefined ? null : { id: row.id, hash: row.hash ?? GENESIS };
    }
    const id = (head?.id ?? 0) + 1;
    const params = eventParams(event);
    const ext = this.extensions.map((c) => ((event as unknown as Record<string, unknown>)[c] as unknown) ?? null);
    const prev = head?.hash ?? GENESIS;
    const hash = entryHash([id, ...params], ext, prev);
    this.insertEntry.run(id, ...params, ...ext, prev, hash);
    this.head = { id, hash };
    if (head === null) this.setMeta.run(CHAIN_START_META, String(id));
    if (this.chain !== undefined && id - this.lastCheckpointId >= this.chain.everyEntries) this.signCheckpoint(id, hash, event.ts);
  }

  /**
   * Runs the body of a write transaction (or savepoint): what it appended is
   * remembered as the head only if it is kept; any failure forgets the head.
   */
  guarded<T>(fn: () => T): T {
    if (this.depth === 0) this.versionChecked = false;
    this.depth++;
    try {
      return fn();
    } catch (err) {
      this.head = null;
      throw err;
    } finally {
      this.depth--;
    }
  }

  /** A commit that fails after its body ran forgets the head too. */
  committing<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      this.head = null;
      throw err;
    }
  }

  /** A write transaction of the units of work begins: the head is checked once in it. */
  opened(): void {
    this.depth++;
    this.versionChecked = false;
  }

  closed(): void {
    this.depth--;
  }

  /** Something rolled back: the cached head may not be the stored one. */
  forgetHead(): void {
    this.head = null;
  }

  /** From now on, checkpoints are signed. */
  enableCheckpoints(options: LogChainOptions): void {
    this.chain = options;
  }

  /** Signs a checkpoint of the newest entry when one is due (or `force`); see SqliteLeaseStore.checkpointLogIfDue. */
  checkpointIfDue(now: number, force: boolean): boolean {
    if (this.chain === undefined) return false;
    const chain = this.chain;
    return this.db
      .transaction(() => {
        const head = this.chainHead.get();
        const last = this.lastCheckpoint.get();
        if (head === undefined || head.hash === null || (last !== undefined && last.event_id >= head.id)) return false;
        // A wall clock set back signs at once, so the unsigned tail never spans more than one interval of entry time.
        if (!force && last !== undefined && now - last.ts < chain.everyMs && now >= last.ts) return false;
        this.signCheckpoint(head.id, head.hash, now);
        return true;
      })
      .immediate();
  }

  /** Inside the transaction that appended it: signs a checkpoint of the newest entry and returns it, or undefined when this store does not sign. */
  anchorHead(ts: number): Checkpoint | undefined {
    if (this.chain === undefined) return undefined;
    const head = this.chainHead.get()!;
    this.signCheckpoint(head.id, head.hash!, ts);
    return this.latestCheckpoint();
  }

  /** The newest signed checkpoint, if any. */
  latestCheckpoint(): Checkpoint | undefined {
    const r = this.db.prepare('SELECT * FROM log_checkpoints ORDER BY event_id DESC LIMIT 1').get() as Parameters<typeof toCheckpoint>[0] | undefined;
    return r && toCheckpoint(r);
  }

  /** The id of the first entry of the chain, or null before it has one. */
  start(): number | null {
    const start = this.getMeta.get(CHAIN_START_META)?.value;
    return start === undefined ? null : Number(start);
  }

  private signCheckpoint(id: number, hash: string, ts: number): void {
    writeCheckpoint(this.db, this.chain!.signer, id, hash, this.chainCount(id), ts);
    this.lastCheckpointId = id;
  }

  /** How many entries the chain has had up to and including `id`, pruned ones included. */
  private chainCount(id: number): number {
    return id - Number(this.getMeta.get(CHAIN_START_META)?.value ?? 1) + 1;
  }

  /**
   * Entries recorded before the log was chained (databases older than
   * migration 004) are chained once, oldest first, at the first start after the
   * upgrade: the chain proves they are unchanged since then, not before.
   */
  private chainLegacyEntries(): void {
    if (this.getMeta.get(CHAIN_START_META) !== undefined) return;
    // Nothing to chain (a new database): no write, so opening needs no write lock.
    if (this.db.prepare('SELECT 1 FROM events WHERE hash IS NULL LIMIT 1').get() === undefined) return;
    const rows = this.db.prepare(`SELECT ${[...CHAIN_COLUMNS, ...this.extensions].map((c) => `"${c}"`).join(', ')} FROM events WHERE hash IS NULL ORDER BY id`).raw(true);
    const update = this.db.prepare<[string, string, number]>('UPDATE events SET prev_hash = ?, hash = ? WHERE id = ?');
    const n = CHAIN_COLUMNS.length;
    this.db
      .transaction(() => {
        let prev: string = GENESIS;
        let start: number | undefined;
        for (const raw of rows.all() as unknown[][]) {
          const hash = entryHash(raw.slice(0, n), raw.slice(n), prev);
          update.run(prev, hash, raw[0] as number);
          start ??= raw[0] as number;
          prev = hash;
        }
        if (start !== undefined) this.setMeta.run(CHAIN_START_META, String(start));
      })
      .immediate();
  }
}
