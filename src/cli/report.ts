import { openExisting } from '../app/inspect.js';
import { GRANULARITIES, usageReport, usageReportJson, usersReport, usersReportJson, type Granularity, type UsageReport, type UsageRow, type UsersReport } from '../app/reports.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { FloatdError } from '../domain/errors.js';
import { CONFIG_FLAGS, configFrom, intFlag, parse, table, timeFlag, type Io } from './common.js';

export const REPORT_USAGE = `floatd report usage [--from TIME] [--to TIME] [--by hour|day|week|month] [--product P] [--user U]
           [--true-denial-minutes N] [--utc] [--table | --csv | --json] [--config FILE] [--data-dir DIR]
floatd report users [--from TIME] [--to TIME] [--product P] [--user U] [--top N] [--true-denial-minutes N]
           [--table | --csv | --json] [--config FILE] [--data-dir DIR]
  Computed from the lease log. TIME is an ISO date/time or a span ago (30m, 12h, 7d); the range is
  the last 7 days up to now unless given. Buckets start on local hours, midnights, Mondays and
  first days of the month (--utc: in UTC). See docs/lease-log.md for the definitions.`;

const DAY_MS = 86_400_000;

/** A cell for a spreadsheet: quoted when needed, and never taken for a formula. */
export function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  let s = String(v);
  if (/^[=+\-@\t\r]/.test(s) && !/^-?\d+(\.\d+)?$/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Client-supplied names never reach a terminal raw. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/** Local time for people: 2026-11-21 09:00. */
function localTime(t: number): string {
  const d = new Date(t);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

const iso = (t: number) => new Date(t).toISOString();

function denialsText(row: UsageRow): string {
  return row.denialsBy.map((d) => `${d.code}${d.reason ? `/${d.reason}` : ''}:${d.count}`).join(' ');
}

const USAGE_COLUMNS = ['start', 'end', 'peak', 'average', 'poolSize', 'utilisationPercent', 'grants', 'denials', 'trueDenials', 'uniqueUsers', 'denialsBy', 'ungrantableSeats'] as const;

function usageCells(row: UsageRow, time: (t: number) => string): string[] {
  return [
    time(row.start),
    time(row.end),
    String(row.peak),
    row.average.toFixed(2),
    String(row.poolSize),
    row.utilisationPercent === null ? '' : row.utilisationPercent.toFixed(1),
    String(row.grants),
    String(row.denials),
    String(row.trueDenials),
    String(row.uniqueUsers),
    denialsText(row),
    String(row.ungrantableSeats),
  ];
}

export function renderUsage(report: UsageReport, format: 'table' | 'csv' | 'json'): string {
  if (format === 'json') return JSON.stringify(usageReportJson(report), null, 2);
  if (format === 'csv') {
    return [USAGE_COLUMNS.join(','), ...report.buckets.map((r) => usageCells(r, iso).map(csvCell).join(',')), ['total', ...usageCells(report.total, iso).slice(1)].map(csvCell).join(',')].join('\n');
  }
  const scope = [report.product === null ? 'all products' : `product ${printable(report.product)}`, report.user === null ? null : `user ${printable(report.user)}`].filter((s) => s !== null).join(', ');
  const head = `usage by ${report.by}, ${localTime(report.from)} to ${localTime(report.to)} (local time), ${scope}; true denial: no grant within ${report.trueDenialMinutes} min`;
  const rows = [...report.buckets.map((r) => usageCells(r, localTime)), ['TOTAL', ...usageCells(report.total, localTime).slice(1)]].map((cells) => [
    cells[0]!,
    ...cells.slice(2, 4),
    cells[11] === '0' ? cells[4]! : `${cells[4]} (+${cells[11]} not grantable)`,
    cells[5] === '' ? '-' : `${cells[5]}%`,
    ...cells.slice(6, 10),
    printable(cells[10]!),
  ]);
  const idle = report.total.ungrantableSeats;
  const note = idle === 0 ? '' : `\nup to ${idle} seat(s) of installed keys could not be granted in this range (their key lacked its activation): SEATS and UTIL count only seats that could be granted`;
  return `${head}\n${table(rows, ['START', 'PEAK', 'AVERAGE', 'SEATS', 'UTIL', 'GRANTS', 'DENIALS', 'TRUE', 'USERS', 'DENIALS BY CODE/REASON'])}${note}`;
}

const USER_COLUMNS = ['user', 'usageHours', 'peakConcurrent', 'grants', 'denials', 'trueDenials'] as const;

export function renderUsers(report: UsersReport, format: 'table' | 'csv' | 'json'): string {
  if (format === 'json') return JSON.stringify(usersReportJson(report), null, 2);
  const cells = report.users.map((u) => [u.user, u.usageHours.toFixed(2), String(u.peakConcurrent), String(u.grants), String(u.denials), String(u.trueDenials)]);
  if (format === 'csv') return [USER_COLUMNS.join(','), ...cells.map((c) => c.map(csvCell).join(','))].join('\n');
  const head = `users, ${localTime(report.from)} to ${localTime(report.to)} (local time), ${report.product === null ? 'all products' : `product ${printable(report.product)}`}`;
  return `${head}\n${table(cells.map((c) => [printable(c[0]!), ...c.slice(1)]), ['USER', 'HOURS', 'PEAK', 'GRANTS', 'DENIALS', 'TRUE'])}`;
}

export async function report(args: string[], io: Io): Promise<number> {
  const [kind, ...rest] = args;
  if (kind !== 'usage' && kind !== 'users') throw new FloatdError('USAGE', `floatd report takes "usage" or "users"${kind === undefined ? '' : `, not "${kind}"`}\n${REPORT_USAGE}`);
  const { values } = parse(rest, {
    ...CONFIG_FLAGS,
    from: { type: 'string' },
    to: { type: 'string' },
    by: { type: 'string' },
    product: { type: 'string' },
    user: { type: 'string' },
    top: { type: 'string' },
    'true-denial-minutes': { type: 'string' },
    utc: { type: 'boolean' },
    table: { type: 'boolean' },
    csv: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const formats = (['table', 'csv', 'json'] as const).filter((f) => values[f]);
  if (formats.length > 1) throw new FloatdError('USAGE', 'choose one of --table, --csv and --json');
  const format = formats[0] ?? 'table';
  if (values.by !== undefined && !(GRANULARITIES as readonly string[]).includes(values.by)) throw new FloatdError('USAGE', `--by must be one of ${GRANULARITIES.join(', ')}; got "${values.by}"`);
  if (kind === 'users' && values.by !== undefined) throw new FloatdError('USAGE', '--by is for floatd report usage');
  if (kind === 'usage' && values.top !== undefined) throw new FloatdError('USAGE', '--top is for floatd report users');
  const nowMs = new SystemClock().now();
  const toMs = timeFlag(values.to, 'to', nowMs) ?? nowMs;
  const fromMs = timeFlag(values.from, 'from', nowMs) ?? toMs - 7 * DAY_MS;
  const trueDenialMs = (intFlag(values['true-denial-minutes'], 'true-denial-minutes', 0) ?? 5) * 60_000;
  const query = { fromMs, toMs, product: values.product, user: values.user, trueDenialMs, utc: values.utc ?? false, nowMs };
  if (!(toMs > fromMs)) throw new FloatdError('USAGE', `the report's end (--to ${new Date(toMs).toISOString()}) must come after its start (--from ${new Date(fromMs).toISOString()})`);
  const store = openExisting(configFrom(io, values));
  try {
    if (kind === 'usage') io.out(renderUsage(usageReport(store, { ...query, by: (values.by as Granularity | undefined) ?? 'day' }), format));
    else io.out(renderUsers(usersReport(store, { ...query, top: intFlag(values.top, 'top', 1) }), format));
    return 0;
  } finally {
    store.close();
  }
}
