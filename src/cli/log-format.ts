import type { LeaseEvent } from '../domain/events.js';

/**
 * Text for a terminal from values clients chose (user, host, instance,
 * product, messages): control characters (C0, DEL, C1, line and paragraph
 * separators) and bidirectional overrides are shown escaped, never raw, and a
 * backslash is doubled so an escape cannot be faked. One entry stays one line.
 */
export function printable(text: string): string {
  return text.replace(/[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    if (c === '\\') return '\\\\';
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** A time as people read it: local time of this machine (TZ), or UTC. */
export function humanTime(ms: number, utc = false): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (utc) return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

const HEADERS = ['TIME', 'EVENT', 'PRODUCT', 'WHO', 'SEATS', 'LEASE', 'REMOTE', 'CODE', 'BY', 'MESSAGE'] as const;

/** The cells of one entry in the table, every client-chosen value made printable. */
function cells(e: LeaseEvent, utc: boolean): string[] {
  const who = e.user ? `${e.user}@${e.host ?? '?'}${e.instance ? `/${e.instance}` : ''}` : '';
  const seats = e.seatsInUse !== null && e.seatsInUse !== undefined ? `${e.seatsInUse}/${e.seatsTotal ?? '?'}` : '';
  const code = e.code ? `${e.code}${e.reason ? `(${e.reason})` : ''}` : '';
  // An entry that stands for repeated identical denials says how many.
  const event = (e.count ?? 1) > 1 ? `${e.event} x${e.count}` : e.event;
  return [humanTime(e.ts, utc), event, e.product ?? '', who, seats, e.leaseId ? e.leaseId.slice(0, 8) : '', e.remote ?? '', code, e.actor ?? '', e.message ?? ''].map(printable);
}

/**
 * Columns at least this wide whatever the first entries hold, so the rows
 * `--follow` prints later line up with the header printed before them: the
 * time exactly, the rest wide enough for what they usually hold.
 */
const MIN_WIDTHS: Readonly<Record<(typeof HEADERS)[number], number>> = {
  TIME: 19,
  EVENT: 14,
  PRODUCT: 10,
  WHO: 28,
  SEATS: 5,
  LEASE: 8,
  REMOTE: 15,
  CODE: 14,
  BY: 10,
  MESSAGE: 0,
};

/**
 * The table `floatd log` prints for people: a header row and columns as wide
 * as the entries they are first given need, and at least MIN_WIDTHS. A later
 * cell that is wider is not cut: it pushes the rest of its line out, and the
 * next columns move back under their headers as soon as there is room.
 */
export class LogTable {
  private widths: number[] | null = null;

  constructor(private readonly utc = false) {}

  /** The lines for `events`: the header with the first batch. */
  lines(events: readonly LeaseEvent[]): string[] {
    const rows = events.map((e) => cells(e, this.utc));
    const out: string[] = [];
    if (this.widths === null) {
      this.widths = HEADERS.map((h, i) => Math.min(60, Math.max(h.length, MIN_WIDTHS[h], ...rows.map((r) => r[i]!.length))));
      if (this.utc) this.widths[0] = Math.max(this.widths[0]!, 20);
      out.push(this.format([...HEADERS]));
    }
    for (const r of rows) out.push(this.format(r));
    return out;
  }

  private format(row: string[]): string {
    const w = this.widths!;
    let line = '';
    let start = 0;
    row.forEach((cell, i) => {
      // Each cell starts under its header, or two spaces after a wider cell before it.
      if (i > 0) line += ' '.repeat(Math.max(2, start - line.length));
      line += cell;
      start += w[i]! + 2;
    });
    return line.trimEnd();
  }
}
