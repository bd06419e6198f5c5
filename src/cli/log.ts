import { openExisting } from '../app/inspect.js';
import { resolveId } from '../app/licensing.js';
import { EVALUATION_POOL_ID } from '../domain/pool.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { FloatdError } from '../domain/errors.js';
import { LEASE_EVENTS, type EventFilter, type LeaseEvent } from '../domain/events.js';
import { CONFIG_FLAGS, configFrom, intFlag, parse, timeFlag, type Io } from './common.js';

export const LOG_USAGE = `floatd log [--since TIME] [--until TIME] [--user U] [--host H] [--product P] [--pool ID]
           [--event KIND]... [--limit N] [--json | --csv] [--follow] [--config FILE] [--data-dir DIR]
  TIME is an ISO date/time or a span ago (30m, 12h, 7d). KIND: ${LEASE_EVENTS.join(', ')}`;

const COLUMNS = ['id', 'ts', 'event', 'product', 'poolId', 'leaseId', 'user', 'host', 'instance', 'remote', 'listener', 'seatsInUse', 'seatsTotal', 'code', 'reason', 'message', 'actor', 'count'] as const;

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function asJson(e: LeaseEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of COLUMNS) {
    const v = c === 'ts' ? new Date(e.ts).toISOString() : e[c];
    if (v !== null && v !== undefined) out[c] = v;
  }
  return out;
}

/** The table `floatd log` prints for people: fixed-width columns under a header row. */
const TEXT_COLUMNS: ReadonlyArray<readonly [string, number]> = [
  ['TIME', 24],
  ['EVENT', 18],
  ['PRODUCT', 12],
  ['WHO', 28],
  ['SEATS', 9],
  ['LEASE', 8],
  ['REMOTE', 15],
  ['CODE', 0],
];

function textRow(cells: readonly string[]): string {
  return cells
    .map((c, i) => (i < TEXT_COLUMNS.length - 1 ? c.padEnd(TEXT_COLUMNS[i]![1]) : c))
    .join(' ')
    .trimEnd();
}

export const TEXT_HEADER = `${textRow(TEXT_COLUMNS.map(([name]) => name))} MESSAGE`;

/** Control characters in client-supplied names and messages are shown escaped, never raw: one entry is one line. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => (c === '\n' ? '\\n' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

function asText(e: LeaseEvent): string {
  const who = e.user ? `${e.user}@${e.host ?? '?'}${e.instance ? `/${e.instance}` : ''}` : '';
  const seats = e.seatsInUse !== null && e.seatsInUse !== undefined ? `${e.seatsInUse}/${e.seatsTotal ?? '?'}` : '';
  const code = e.code ? `${e.code}${e.reason ? `(${e.reason})` : ''}` : '';
  const event = e.count > 1 ? `${e.event} x${e.count}` : e.event;
  const row = textRow([new Date(e.ts).toISOString(), event, printable(e.product ?? ''), printable(who), seats, e.leaseId ? e.leaseId.slice(0, 8) : '', e.remote ?? '', code]);
  return e.message ? `${row.padEnd(TEXT_HEADER.length - 'MESSAGE'.length - 1)} ${printable(e.message)}` : row;
}

export async function log(args: string[], io: Io, signal?: AbortSignal): Promise<number> {
  const { values } = parse(args, {
    ...CONFIG_FLAGS,
    since: { type: 'string' },
    until: { type: 'string' },
    user: { type: 'string' },
    host: { type: 'string' },
    product: { type: 'string' },
    pool: { type: 'string' },
    event: { type: 'string', multiple: true },
    limit: { type: 'string' },
    json: { type: 'boolean' },
    csv: { type: 'boolean' },
    follow: { type: 'boolean', short: 'f' },
  });
  if (values.json && values.csv) throw new FloatdError('USAGE', 'choose one of --json and --csv');
  const events = values.event?.flatMap((e) => e.split(',')).map((e) => e.trim());
  for (const e of events ?? []) {
    if (!(LEASE_EVENTS as readonly string[]).includes(e)) throw new FloatdError('USAGE', `--event: unknown event "${e}" (events: ${LEASE_EVENTS.join(', ')})`);
  }
  const now = new SystemClock().now();
  const filter: { -readonly [K in keyof EventFilter]: EventFilter[K] } = {
    sinceMs: timeFlag(values.since, 'since', now),
    untilMs: timeFlag(values.until, 'until', now),
    user: values.user,
    host: values.host,
    product: values.product,
    pool: undefined as string | undefined,
    events,
    limit: intFlag(values.limit, 'limit', 1),
  };
  const store = openExisting(configFrom(io, values));
  // A pool is named by its key id or a unique prefix of it; an id no longer installed is taken as given.
  if (values.pool !== undefined) {
    const ids = [EVALUATION_POOL_ID, ...store.listLicenses().map((l) => l.id)];
    try {
      filter.pool = resolveId(values.pool, ids, 'license key', 'USAGE');
    } catch (err) {
      if (!ids.some((id) => id.startsWith(values.pool!))) filter.pool = values.pool;
      else {
        store.close();
        throw err;
      }
    }
  }
  const print = (e: LeaseEvent) => io.out(values.json ? JSON.stringify(asJson(e)) : values.csv ? COLUMNS.map((c) => csvCell(asJson(e)[c])).join(',') : asText(e));
  try {
    if (values.csv) io.out(COLUMNS.join(','));
    else if (!values.json) io.out(TEXT_HEADER);
    let last = 0;
    for (const e of store.queryEvents(filter)) {
      print(e);
      last = e.id;
    }
    if (!values.follow) return 0;
    const { limit: _limit, ...live } = filter;
    if (last === 0) last = store.queryEvents({ limit: 1 }).at(-1)?.id ?? 0;
    await new Promise<void>((resolve) => {
      const stop = () => {
        clearInterval(timer);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      const timer = setInterval(() => {
        for (const e of store.queryEvents({ ...live, afterId: last })) {
          print(e);
          last = e.id;
        }
      }, 250);
      signal?.addEventListener('abort', stop);
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    return 0;
  } finally {
    store.close();
  }
}
