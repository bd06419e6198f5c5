import { openExisting } from '../app/inspect.js';
import { resolveId } from '../app/licensing.js';
import { CSV_HEADER, csvRow, eventJson, exportEvents, exportFormatOf, verifyLeaseLog } from '../app/lease-log.js';
import { EVALUATION_POOL_ID } from '../domain/pool.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import type { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import type { ChainReport } from '../adapters/sqlite/log-chain.js';
import { FloatdError } from '../domain/errors.js';
import { LEASE_EVENTS, type EventFilter, type LeaseEvent } from '../domain/events.js';
import { CONFIG_FLAGS, configFrom, intFlag, parse, timeFlag, type Io } from './common.js';
import { humanTime, LogTable, printable } from './log-format.js';
import { plural } from '../domain/wording.js';

const FILTERS_USAGE = `[--since TIME] [--until TIME] [--user U] [--host H] [--instance I] [--product P] [--pool ID]
           [--event KIND]... [--lease ID] [--listener NAME] [--actor WHO]`;

export const LOG_USAGE = `floatd log ${FILTERS_USAGE}
           [--limit N] [--json | --csv] [--utc] [--follow] [--config FILE] [--data-dir DIR]
  TIME is an ISO date/time (2026-11-21, 2026-11-21T09:00Z) or a span ago (90s, 30m, 12h, 7d, 2w).
  KIND: ${LEASE_EVENTS.join(', ')}
floatd log export ${FILTERS_USAGE.replace('[--until TIME]', '--until TIME')} FILE
  writes the entries to FILE (mode 0600): JSON lines for .jsonl/.ndjson/.json, CSV for .csv
floatd log verify [--json] [--public-key FILE]
  checks the hash chain and the signed checkpoints (with the server key, or the public key in FILE)`;

const FILTER_FLAGS = {
  since: { type: 'string' },
  until: { type: 'string' },
  user: { type: 'string' },
  host: { type: 'string' },
  instance: { type: 'string' },
  product: { type: 'string' },
  pool: { type: 'string' },
  event: { type: 'string', multiple: true },
  lease: { type: 'string' },
  listener: { type: 'string' },
  actor: { type: 'string' },
} as const;

type FilterValues = { [K in keyof typeof FILTER_FLAGS]?: (typeof FILTER_FLAGS)[K] extends { multiple: true } ? string[] : string };

type MutableFilter = { -readonly [K in keyof EventFilter]: EventFilter[K] };

/** A name filter must name something: an empty or control-character value is a mistake, not a query. */
function nameFlag(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (value === '') throw new FloatdError('USAGE', `--${name} must not be empty`);
  return value;
}

/** The filter the flags describe; each bad value is a USAGE error naming its flag. */
export function filterFrom(values: FilterValues, now: number): MutableFilter {
  const events = values.event?.flatMap((e) => e.split(',')).map((e) => e.trim());
  for (const e of events ?? []) {
    if (!(LEASE_EVENTS as readonly string[]).includes(e)) throw new FloatdError('USAGE', `--event: unknown event "${printable(e)}" (events: ${LEASE_EVENTS.join(', ')})`);
  }
  const filter: MutableFilter = {
    sinceMs: timeFlag(values.since, 'since', now),
    untilMs: timeFlag(values.until, 'until', now),
    user: nameFlag(values.user, 'user'),
    host: nameFlag(values.host, 'host'),
    instance: nameFlag(values.instance, 'instance'),
    product: nameFlag(values.product, 'product'),
    leaseId: nameFlag(values.lease, 'lease'),
    listener: nameFlag(values.listener, 'listener'),
    actor: nameFlag(values.actor, 'actor'),
    events,
  };
  if (filter.sinceMs !== undefined && filter.untilMs !== undefined && filter.sinceMs >= filter.untilMs) {
    throw new FloatdError('USAGE', `--since (${new Date(filter.sinceMs).toISOString()}) must be before --until (${new Date(filter.untilMs).toISOString()})`);
  }
  return filter;
}

/** A pool is named by its key id or a unique prefix of it; an id no longer installed is taken as given. */
function resolvePool(store: SqliteLeaseStore, pool: string | undefined): string | undefined {
  if (pool === undefined) return undefined;
  const ids = [EVALUATION_POOL_ID, ...store.listLicenses().map((l) => l.id)];
  try {
    return resolveId(pool, ids, 'license key', 'USAGE');
  } catch (err) {
    if (!ids.some((id) => id.startsWith(pool))) return pool;
    throw err;
  }
}

const yieldTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** How many entries are read (and printed) at a time, so a long log never sits in memory whole. */
const SLICE = 5000;

export async function log(args: string[], io: Io, signal?: AbortSignal): Promise<number> {
  if (args[0] === 'verify') return verify(args.slice(1), io);
  if (args[0] === 'export') return exportLog(args.slice(1), io);
  const { values } = parse(args, {
    ...CONFIG_FLAGS,
    ...FILTER_FLAGS,
    limit: { type: 'string' },
    json: { type: 'boolean' },
    csv: { type: 'boolean' },
    utc: { type: 'boolean' },
    follow: { type: 'boolean', short: 'f' },
  });
  if (values.json && values.csv) throw new FloatdError('USAGE', 'choose one of --json and --csv');
  const filter = filterFrom(values, new SystemClock().now());
  const limit = intFlag(values.limit, 'limit', 1);
  const store = openExisting(configFrom(io, values));
  try {
    filter.pool = resolvePool(store, values.pool);
    const table = new LogTable(values.utc ?? false);
    let headed = false;
    const print = (events: readonly LeaseEvent[]) => {
      if (values.json) {
        for (const e of events) io.out(JSON.stringify(eventJson(e)));
      } else if (values.csv) {
        if (!headed) io.out(CSV_HEADER);
        for (const e of events) io.out(csvRow(e));
      } else if (events.length > 0 || !headed) {
        for (const line of table.lines(events)) io.out(line);
      }
      headed = true;
    };
    let last = 0;
    if (limit !== undefined) {
      const events = store.queryEvents({ ...filter, limit });
      print(events);
      last = events.at(-1)?.id ?? 0;
    } else {
      for (;;) {
        const events = store.queryEvents({ ...filter, afterId: last, first: SLICE });
        print(events);
        if (events.length < SLICE) {
          last = events.at(-1)?.id ?? last;
          break;
        }
        last = events.at(-1)!.id;
        // A reader that went away (`| head`) is noticed between slices.
        await yieldTurn();
      }
    }
    if (!values.follow) return 0;
    last = Math.max(last, store.queryEvents({ limit: 1 }).at(-1)?.id ?? 0);
    await new Promise<void>((resolve) => {
      const stop = () => {
        clearInterval(timer);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      const timer = setInterval(() => {
        const events = store.queryEvents({ ...filter, afterId: last });
        if (events.length === 0) return;
        print(events);
        last = events.at(-1)!.id;
      }, 250);
      if (signal?.aborted) stop();
      signal?.addEventListener('abort', stop);
      // Ctrl-C ends following: a quiet, successful end.
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    return 0;
  } finally {
    store.close();
  }
}

async function exportLog(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { ...CONFIG_FLAGS, ...FILTER_FLAGS }, true);
  if (positionals.length !== 1) throw new FloatdError('USAGE', `floatd log export needs one FILE to write (.jsonl or .csv)${positionals.length > 1 ? `; got ${positionals.length}` : ''}`);
  if (values.until === undefined) throw new FloatdError('USAGE', '--until is required: the export takes the entries recorded before it (the ones retention would prune first)');
  const file = positionals[0]!;
  exportFormatOf(file);
  const filter = filterFrom(values, new SystemClock().now());
  const store = openExisting(configFrom(io, values));
  try {
    filter.pool = resolvePool(store, values.pool);
    const done = await exportEvents(store, file, filter);
    if (done.entries === 0) io.out(`no entries matched; ${file} holds none`);
    else io.out(`${plural(done.entries, 'entry', 'entries')} exported to ${file} (#${done.first!.id} ${humanTime(done.first!.ts)} to #${done.last!.id} ${humanTime(done.last!.ts)})`);
    return 0;
  } finally {
    store.close();
  }
}

function describe(r: ChainReport): string[] {
  const at = (e: { id: number; ts: number } | null) => (e === null ? '' : `#${e.id} (${humanTime(e.ts)})`);
  const lines = [
    r.entries === 0 ? 'the lease log is empty' : `${r.entries} entries, ${at(r.first)} to ${at(r.last)}: every hash and link checks`,
    r.prunedBefore !== null ? `entries before #${r.prunedBefore} were pruned by retention; the log begins at #${r.first?.id ?? r.prunedBefore}` : 'the log is whole since its first entry',
    r.lastCheckpoint === null
      ? 'no signed checkpoint yet: the entries are chained but not signed'
      : `${r.checkpoints} signed checkpoint(s) verified with server key ${r.keyId}; the newest covers #${r.lastCheckpoint.eventId} (${humanTime(r.lastCheckpoint.ts)}, ${r.lastCheckpoint.count} entries since the chain began)`,
  ];
  if (r.unsigned > 0) lines.push(`${r.unsigned} newer entries are chained but not yet covered by a signed checkpoint`);
  return lines;
}

async function verify(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { ...CONFIG_FLAGS, json: { type: 'boolean' }, 'public-key': { type: 'string' } });
  const report = await verifyLeaseLog(configFrom(io, values), values['public-key']);
  if (values.json) {
    io.out(JSON.stringify({ ...report, first: report.first && { ...report.first, ts: new Date(report.first.ts).toISOString() }, last: report.last && { ...report.last, ts: new Date(report.last.ts).toISOString() }, lastCheckpoint: report.lastCheckpoint && { ...report.lastCheckpoint, ts: new Date(report.lastCheckpoint.ts).toISOString() }, problem: report.problem && { ...report.problem, ts: report.problem.ts === null ? null : new Date(report.problem.ts).toISOString() } }));
    return report.ok ? 0 : 1;
  }
  if (report.problem !== null) throw new FloatdError('LOG_TAMPERED', `${report.problem.kind}: ${report.problem.detail}`);
  io.out(`OK: ${describe(report).join('\n    ')}`);
  return 0;
}
