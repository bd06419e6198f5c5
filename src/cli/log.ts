import { openExisting } from '../app/inspect.js';
import { resolveId } from '../app/licensing.js';
import { CSV_HEADER, csvRow, eventJson, exportEvents, exportFormatOf, verifyLeaseLog, type LogVerification } from '../app/lease-log.js';
import { EVALUATION_POOL_ID } from '../domain/pool.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import type { LeaseStore } from '../domain/ports.js';
import { FloatdError } from '../domain/errors.js';
import { LEASE_EVENTS, type EventFilter, type LeaseEvent } from '../domain/events.js';
import { CONFIG_FLAGS, configFrom, intFlag, parse, timeFlag, type Io } from './common.js';
import { humanTime, LogTable, printable } from './log-format.js';
import { plural } from '../domain/wording.js';
import { closeCommandStore, openCommandStore } from '../app/stores.js';
import type { Config } from '../config/config.js';

const FILTERS_USAGE = `[--since TIME] [--until TIME] [--user U] [--host H] [--instance I] [--product P] [--pool ID]
           [--event KIND]... [--lease ID] [--listener NAME] [--actor WHO]`;

export const LOG_USAGE = `floatd log ${FILTERS_USAGE}
           [--limit N] [--json | --csv] [--utc] [--follow] [--config FILE] [--data-dir DIR]
  TIME is an ISO date/time (2026-11-21, 2026-11-21T09:00Z) or a span ago (90s, 30m, 12h, 7d, 2w).
  KIND: ${LEASE_EVENTS.join(', ')}
floatd log export ${FILTERS_USAGE.replace('[--until TIME]', '--until TIME')} FILE
  writes the entries to FILE (mode 0600): JSON lines for .jsonl/.ndjson/.json, CSV for .csv
floatd log verify [--json] [--public-key FILE] [--anchor HASH]
  checks the hash chain and the signed checkpoints (with the server key, or the public key in FILE),
  that every start, clean stop and interval has its checkpoint, and that the checkpoint HASH is still there`;

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
async function resolvePool(store: Pick<LeaseStore, 'listLicenses'>, pool: string | undefined): Promise<string | undefined> {
  if (pool === undefined) return undefined;
  const ids = [EVALUATION_POOL_ID, ...(await store.listLicenses()).map((l) => l.id)];
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
    filter.pool = await resolvePool(store, values.pool);
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
      const events = await store.queryEvents({ ...filter, limit });
      print(events);
      last = events.at(-1)?.id ?? 0;
    } else {
      for (;;) {
        const events = await store.queryEvents({ ...filter, afterId: last, first: SLICE });
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
    last = Math.max(last, (await store.queryEvents({ limit: 1 })).at(-1)?.id ?? 0);
    await new Promise<void>((resolve, reject) => {
      let stopped = false;
      /** A look in progress: the next tick waits for it rather than print its entries twice. */
      let looking = false;
      const end = () => {
        stopped = true;
        clearInterval(timer);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      };
      const stop = () => {
        end();
        resolve();
      };
      const look = async () => {
        const events = await store.queryEvents({ ...filter, afterId: last });
        if (stopped || events.length === 0) return;
        print(events);
        last = events.at(-1)!.id;
      };
      const timer = setInterval(() => {
        if (looking) return;
        looking = true;
        look().then(
          () => (looking = false),
          (err: unknown) => {
            end();
            reject(err);
          },
        );
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
    filter.pool = await resolvePool(store, values.pool);
    const done = await exportEvents(store, file, filter);
    if (done.entries === 0) io.out(`no entries matched; ${file} holds none`);
    else io.out(`${plural(done.entries, 'entry', 'entries')} exported to ${file} (#${done.first!.id} ${humanTime(done.first!.ts)} to #${done.last!.id} ${humanTime(done.last!.ts)})`);
    return 0;
  } finally {
    store.close();
  }
}

function describe(r: LogVerification): string[] {
  const at = (e: { id: number; ts: number } | null) => (e === null ? '' : `#${e.id} (${humanTime(e.ts)})`);
  const lines = [
    r.entries === 0 ? 'the lease log is empty' : `${plural(r.entries, 'entry', 'entries')}, ${at(r.first)} to ${at(r.last)}: every hash and link checks`,
    r.prunedBefore !== null ? `entries before #${r.prunedBefore} were pruned by retention; the log begins at #${r.first?.id ?? r.prunedBefore}` : 'the log is whole since its first entry',
    r.lastCheckpoint === null
      ? 'no signed checkpoint yet: the entries are chained but not signed'
      : `${r.checkpoints} signed checkpoint(s) verified with server key ${r.keyId}; the newest covers #${r.lastCheckpoint.eventId} (${humanTime(r.lastCheckpoint.ts)}, ${plural(r.lastCheckpoint.count, 'entry', 'entries')} since the chain began)`,
  ];
  if (r.unsigned > 0) {
    lines.push(
      `${r.unsigned === 1 ? '1 newer entry is' : `${r.unsigned} newer entries are`} chained but not yet covered by a signed checkpoint` +
        (r.runningSince !== null ? ' (the running server signs them within one interval)' : r.uncleanStops.some((u) => u.restarted === null) ? ' (the server did not stop cleanly; its next start signs them)' : ' (recorded while no server ran; its next start signs them)'),
    );
  }
  for (const u of r.uncleanStops) {
    lines.push(
      `the run started at ${at({ id: u.startedId, ts: u.startedTs })} ended without a clean stop (a crash, kill -9 or power loss), after entry #${u.lastId}; ` +
        (u.restarted === null ? 'no start has signed its last entries yet' : `its last entries are signed by the next start's checkpoint at ${at(u.restarted)}`),
    );
  }
  if (r.anchor !== null) lines.push(`anchor ${r.anchor.headHash} found: the checkpoint of #${r.anchor.eventId}; the log up to it is as it was when that anchor was taken`);
  if (r.lastCheckpoint !== null) lines.push(`newest anchor: ${r.lastCheckpoint.headHash} (#${r.lastCheckpoint.eventId}); kept outside this machine, floatd log verify --anchor HASH proves the log still holds it`);
  return lines;
}

const HASH = /^[0-9a-f]{64}$/;

/** floatd log verify on a cluster: every writer's chain and the merged order. */
async function verifyCluster(config: Config, json: boolean, io: Io): Promise<number> {
  const store = await openCommandStore(config, 'read');
  try {
    if (store.kind !== 'postgres') throw new FloatdError('INTERNAL', 'not a cluster store');
    const r = await store.verifyLog();
    if (json) {
      io.out(JSON.stringify(r));
      return r.ok ? 0 : 1;
    }
    if (!r.ok) {
      const p = r.problems[0]!;
      const more = r.problems.length > 1 ? ` (and ${r.problems.length - 1} more problem(s): floatd log verify --json lists them)` : '';
      throw new FloatdError('LOG_TAMPERED', `${p.kind}: ${p.detail}${more}`);
    }
    const at = (e: { id: number; ts: number } | null) => (e === null ? '' : `#${e.id} (${humanTime(e.ts)})`);
    const lines = [
      r.entries === 0 ? 'the lease log is empty' : `${plural(r.entries, 'entry', 'entries')}, ${at(r.first)} to ${at(r.last)}, from ${plural(r.writers.length, 'writer', 'writers')}: every writer's chain and the merged order check`,
      ...r.writers.filter((w) => w.pruned).map((w) => `${w.writer}: entries before #${w.firstSeq} were pruned by retention; its chain is checked from there`),
      'a cluster\'s chains are not signed at checkpoints (that is the SQLite log\'s): keep the database\'s backups and WAL archive as the record',
    ];
    io.out(`OK: ${lines.join('\n    ')}`);
    return 0;
  } finally {
    await closeCommandStore(store);
  }
}

async function verify(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { ...CONFIG_FLAGS, json: { type: 'boolean' }, 'public-key': { type: 'string' }, anchor: { type: 'string' } });
  const anchor = values.anchor?.trim().toLowerCase();
  if (anchor !== undefined && !HASH.test(anchor)) throw new FloatdError('USAGE', `--anchor takes the 64 hexadecimal characters of a checkpoint's hash (from the server's start or stop log line, floatd status or floatd log verify); got "${printable(values.anchor!)}"`);
  const config = configFrom(io, values);
  if (config.store.kind === 'postgres') return verifyCluster(config, values.json === true, io);
  const report = await verifyLeaseLog(config, values['public-key'], anchor);
  if (values.json) {
    const iso = (t: number) => new Date(t).toISOString();
    io.out(
      JSON.stringify({
        ...report,
        first: report.first && { ...report.first, ts: iso(report.first.ts) },
        last: report.last && { ...report.last, ts: iso(report.last.ts) },
        lastCheckpoint: report.lastCheckpoint && { ...report.lastCheckpoint, ts: iso(report.lastCheckpoint.ts) },
        runningSince: report.runningSince && { ...report.runningSince, ts: iso(report.runningSince.ts) },
        uncleanStops: report.uncleanStops.map((u) => ({ ...u, startedTs: iso(u.startedTs), restarted: u.restarted && { ...u.restarted, ts: iso(u.restarted.ts) } })),
        problem: report.problem && { ...report.problem, ts: report.problem.ts === null ? null : iso(report.problem.ts) },
      }),
    );
    return report.ok ? 0 : 1;
  }
  if (report.problem !== null) throw new FloatdError(report.code ?? 'LOG_TAMPERED', `${report.problem.kind}: ${report.problem.detail}`);
  io.out(`OK: ${describe(report).join('\n    ')}`);
  return 0;
}
