import { closeSync, existsSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import type { JWK } from 'jose';
import type { Config } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import { FloatdError } from '../domain/errors.js';
import type { EventFilter, LeaseEvent, LeaseEventInput } from '../domain/events.js';
import { judgeAnchoring, type AnchorProblem, type AnchorReport } from '../domain/log-anchoring.js';
import type { Logger } from '../adapters/log/logger.js';
import { publicPart, readJwkFile, thumbprint } from '../adapters/crypto/keys.js';
import { logSigner, logVerifier } from '../adapters/crypto/log-signer.js';
import type { ChainProblem, ChainReport } from '../adapters/sqlite/log-chain.js';
import type { LogChainOptions } from '../adapters/sqlite/sqlite-lease-store.js';
import type { LeaseStore } from '../domain/ports.js';
import { runningServerPid } from './data-dir.js';
import { openStore } from './stores.js';
import { checkpointPolicy } from './log-anchor.js';
import { createPrivateDir } from '../adapters/fs/private-files.js';
import { plural } from '../domain/wording.js';

const DAY_MS = 86_400_000;

/** The fields of an entry as `floatd log --json`, `--csv` and exports give them, in this order. */
export const LOG_FIELDS = ['id', 'ts', 'event', 'product', 'poolId', 'leaseId', 'user', 'host', 'instance', 'remote', 'listener', 'seatsInUse', 'seatsTotal', 'code', 'reason', 'message', 'actor', 'count'] as const;

/** An entry as one JSON object: ISO time, absent fields left out. */
export function eventJson(e: LeaseEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of LOG_FIELDS) {
    const v = f === 'ts' ? new Date(e.ts).toISOString() : e[f];
    if (v !== null && v !== undefined) out[f] = v;
  }
  return out;
}

/**
 * One CSV cell (RFC 4180 quoting). A value a spreadsheet would take for a
 * formula (starting with = + - @, a tab or a carriage return) is prefixed
 * with a single quote, as OWASP advises against CSV injection; numbers stay numbers.
 */
export function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return String(v);
  // Control characters other than tab and line breaks (terminal escapes, NUL) are written as \uXXXX.
  let s = String(v).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const CSV_HEADER = LOG_FIELDS.join(',');

export function csvRow(e: LeaseEvent): string {
  const j = eventJson(e);
  return LOG_FIELDS.map((f) => csvCell(j[f])).join(',');
}

/** The format of an export file, by its extension. */
export function exportFormatOf(file: string): 'jsonl' | 'csv' {
  const ext = extname(file).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.jsonl' || ext === '.ndjson' || ext === '.json') return 'jsonl';
  throw new FloatdError('USAGE', `${file}: the export format follows the file name: .jsonl (JSON lines; also .ndjson, .json) or .csv`);
}

const yieldTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Writes the entries matching `filter` to `file` (JSON lines or CSV by its
 * extension), mode 0600, in slices that leave the event loop free between
 * them. Written to FILE.partial and renamed when complete, so a file with the
 * final name is always whole. An existing file is never overwritten.
 */
export async function exportEvents(store: Pick<LeaseStore, 'queryEvents'>, file: string, filter: EventFilter, slice = 2000): Promise<{ entries: number; first: LeaseEvent | null; last: LeaseEvent | null }> {
  const format = exportFormatOf(file);
  if (existsSync(file)) throw new FloatdError('EXPORT_FAILED', `${file} exists: an export never overwrites a file; choose another name or move it away`);
  const partial = `${file}.partial`;
  let fd: number;
  try {
    fd = openSync(partial, 'wx', 0o600);
  } catch (err) {
    throw new FloatdError('EXPORT_FAILED', `cannot write ${partial}: ${(err as Error).message}`);
  }
  let entries = 0;
  let first: LeaseEvent | null = null;
  let last: LeaseEvent | null = null;
  try {
    if (format === 'csv') writeSync(fd, `${CSV_HEADER}\n`);
    let afterId = filter.afterId ?? 0;
    for (;;) {
      const rows = await store.queryEvents({ ...filter, afterId, first: slice, limit: undefined });
      if (rows.length === 0) break;
      writeSync(fd, rows.map((e) => (format === 'csv' ? csvRow(e) : JSON.stringify(eventJson(e)))).join('\n') + '\n');
      entries += rows.length;
      first ??= rows[0]!;
      last = rows.at(-1)!;
      afterId = last.id;
      if (rows.length < slice) break;
      await yieldTurn();
    }
    fsyncSync(fd);
    closeSync(fd);
    renameSync(partial, file);
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(partial, { force: true });
    if (err instanceof FloatdError) throw err;
    throw new FloatdError('EXPORT_FAILED', `cannot write ${file}: ${(err as Error).message}`);
  }
  return { entries, first, last };
}

/** How the server checkpoints the lease log, with its own key. */
export async function logChainOptions(config: Config, privateJwk: JWK): Promise<LogChainOptions> {
  const kid = await thumbprint(privateJwk);
  return {
    signer: logSigner({ ...privateJwk, kid }),
    everyEntries: config.leaseLog.checkpointEntries,
    everyMs: config.leaseLog.checkpointMinutes * 60_000,
  };
}

/**
 * Appends entries to a data directory's lease log as the server would (hash
 * chain and signed checkpoints): for building large logs in benchmarks.
 */
export async function openLogWriter(config: Config): Promise<{ append(events: readonly LeaseEventInput[]): void; close(): void }> {
  const store = openStore(config, 'write');
  store.enableLogCheckpoints(await logChainOptions(config, readJwkFile(config.serverKeyFile, 'private')));
  let lastTs = 0;
  return {
    append(events) {
      store.transact((tx) => {
        for (const e of events) tx.appendEvent(e);
      });
      lastTs = events.at(-1)?.ts ?? lastTs;
    },
    close() {
      store.checkpointLogIfDue(lastTs, true);
      store.close();
    },
  };
}

/** What `floatd log verify` found: the hash chain's report, and whether every checkpoint the server must have written is there. */
export interface LogVerification extends Omit<ChainReport, 'problem'> {
  readonly problem: ChainProblem | AnchorProblem | null;
  /** LOG_TAMPERED: the chain or a checkpoint does not check; LOG_UNANCHORED: a checkpoint the server must have signed, or the anchor asked for, is missing. */
  readonly code: 'LOG_TAMPERED' | 'LOG_UNANCHORED' | null;
  /** Whether a server holds the data directory now (its newest entries may not be signed yet). */
  readonly running: boolean;
  readonly runningSince: AnchorReport['runningSince'];
  readonly uncleanStops: AnchorReport['uncleanStops'];
  /** The checkpoint `--anchor` named, once found. */
  readonly anchor: AnchorReport['anchor'];
}

/**
 * Checks a data directory's lease log: the hash chain and every checkpoint,
 * against the server's public key (from its key file, or `publicKeyFile`);
 * then that the checkpoints the server signs at every start, clean stop and
 * interval are all there, and (with `anchor`) that the checkpoint with that
 * head hash still is.
 */
export async function verifyLeaseLog(config: Config, publicKeyFile?: string, anchor?: string): Promise<LogVerification> {
  let jwk: JWK;
  try {
    jwk = publicKeyFile !== undefined ? readJwkFile(publicKeyFile, 'public') : publicPart(readJwkFile(config.serverKeyFile, 'private'));
  } catch (err) {
    throw new FloatdError('USAGE', (err as Error).message);
  }
  const kid = await thumbprint(jwk);
  const store = openStore(config, 'read');
  try {
    const verifier = logVerifier({ ...jwk, kid });
    const chain = await store.verifyLogInParallel(verifier);
    const running = runningServerPid(config) !== null;
    if (!chain.ok) return { ...chain, code: 'LOG_TAMPERED', running, runningSince: null, uncleanStops: [], anchor: null };
    const judged = judgeAnchoring({
      entries: chain.entries,
      last: chain.last,
      ...store.logAnchorFacts(chain.last?.id ?? null, verifier, chain.lastCheckpoint?.eventId ?? 0),
      running,
      fallback: checkpointPolicy(config),
      ...(anchor !== undefined ? { anchor } : {}),
    });
    return {
      ...chain,
      ok: judged.problem === null,
      problem: judged.problem,
      code: judged.problem === null ? null : 'LOG_UNANCHORED',
      running,
      runningSince: judged.runningSince,
      uncleanStops: judged.uncleanStops,
      anchor: judged.anchor,
    };
  } finally {
    store.close();
  }
}

export interface RetentionSettings {
  readonly retentionDays: number;
  readonly exportDir: string | null;
}

/**
 * Retention without stalls: entries older than `retentionDays` are removed in
 * small slices (one short transaction each, the event loop free between
 * them), so lease operations never wait behind a large delete. The cut is
 * recorded first as a `log-pruned` entry naming the first entry kept, which is
 * what lets `floatd log verify` tell pruning from removal. With `exportDir`,
 * the entries are exported there first, and nothing is pruned unless the
 * export succeeded.
 */
export class LogRetention {
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly store: LeaseStore,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly settings: RetentionSettings,
    private readonly sliceRows = 500,
  ) {}

  /** Starts a pruning run in the background, unless one is under way or retention is off. */
  start(): void {
    if (this.running !== null || this.stopped || this.settings.retentionDays <= 0) return;
    this.running = this.run()
      .then(() => undefined, (err: unknown) => {
        if (err instanceof FloatdError) this.logger.error({ code: err.code }, `lease-log pruning skipped, to be tried again in an hour: ${err.message}`);
        else this.logger.error({ err }, 'lease-log pruning failed');
      })
      .finally(() => {
        this.running = null;
      });
  }

  /** Resolves when no pruning run is under way. */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  /** Ends a run after its current slice. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  /** One pruning run: returns how many entries went (and where they were exported). */
  async run(): Promise<{ pruned: number; exported: string | null }> {
    const now = this.clock.now();
    const cutoff = now - this.settings.retentionDays * DAY_MS;
    const [oldest] = await this.store.queryEvents({ first: 1 });
    if (oldest === undefined || oldest.ts >= cutoff) return { pruned: 0, exported: null };
    const newest = (await this.store.queryEvents({ limit: 1 }))[0]!;
    const boundary = (await this.store.pruneBoundary(cutoff)) ?? newest.id + 1;
    if (oldest.id >= boundary) return { pruned: 0, exported: null };
    let exported: string | null = null;
    if (this.settings.exportDir !== null) exported = await this.exportBefore(this.settings.exportDir, oldest, boundary);
    if (this.stopped) return { pruned: 0, exported };
    await this.store.appendEvent({
      ts: now,
      event: 'log-pruned',
      message: `entries before #${boundary} (recorded before ${new Date(cutoff).toISOString()}) pruned: leaseLog.retentionDays is ${this.settings.retentionDays}${exported ? `; exported to ${exported}` : ''}`,
    });
    let pruned = 0;
    while (!this.stopped) {
      const n = await this.store.pruneEvents(boundary, this.sliceRows);
      pruned += n;
      if (n < this.sliceRows) break;
      await yieldTurn();
    }
    if (pruned > 0) this.logger.info({ pruned, firstKept: boundary }, `${plural(pruned, 'lease-log entry', 'lease-log entries')} older than ${plural(this.settings.retentionDays, 'day')} pruned`);
    return { pruned, exported };
  }

  /**
   * Exports the entries from `oldest` up to `boundary` (not included) into `dir`, once: each file
   * is named by the id range it holds and appears whole (written under a temporary name, then
   * renamed), so entries a complete file already holds — exported by a run that was killed before
   * or while it pruned — are not written again; only the rest of the range is. Returns the file
   * the range is in (the newest one written or found).
   */
  private async exportBefore(dir: string, oldest: LeaseEvent, boundary: number): Promise<string> {
    try {
      createPrivateDir(dir);
    } catch (err) {
      throw new FloatdError('EXPORT_FAILED', `cannot create the export folder ${dir} (leaseLog.exportDir): ${(err as Error).message}; nothing was pruned`);
    }
    const ranges = exportedRanges(dir);
    let from = oldest.id;
    let holder: string | null = null;
    for (let moved = true; moved; ) {
      moved = false;
      for (const r of ranges) {
        if (r.first <= from && from <= r.last) {
          from = r.last + 1;
          holder = r.file;
          moved = true;
        }
      }
    }
    if (from >= boundary) {
      this.logger.info({ file: holder }, `lease-log entries #${oldest.id} to #${boundary - 1} are exported already (${basename(holder!)}); not written again`);
      return join(dir, holder!);
    }
    const first = from === oldest.id ? oldest : ((await this.store.queryEvents({ afterId: from - 1, first: 1 }))[0] ?? oldest);
    const stamp = new Date(first.ts).toISOString().replace(/[:]/g, '').replace(/\.\d+Z$/, 'Z');
    const file = join(dir, `floatd-log-${stamp}-${from}-${boundary - 1}.jsonl`);
    // A run killed while it wrote this very range left its temporary file: it is not the export.
    rmSync(`${file}.partial`, { force: true });
    const done = await exportEvents(this.store, file, { afterId: from - 1, beforeId: boundary });
    this.logger.info({ file, entries: done.entries }, `lease-log entries #${from} to #${boundary - 1} exported to ${basename(file)} before pruning`);
    return file;
  }
}

/** The id ranges complete export files in `dir` hold, from their names (…-FIRSTID-LASTID.jsonl). */
function exportedRanges(dir: string): Array<{ file: string; first: number; last: number }> {
  const out: Array<{ file: string; first: number; last: number }> = [];
  for (const name of readdirSync(dir)) {
    const m = /^floatd-log-.*-(\d+)-(\d+)\.jsonl$/.exec(name);
    if (m !== null) out.push({ file: name, first: Number(m[1]), last: Number(m[2]) });
  }
  return out;
}
