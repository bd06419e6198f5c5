import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfig, type Config } from '../config/config.js';
import { FloatdError } from '../domain/errors.js';
import { didYouMean } from '../domain/suggest.js';

export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly env: Record<string, string | undefined>;
  readonly cwd: string;
  /** Ends the process at once (a stop that hangs); absent where commands run inside another program. */
  readonly exit?: (code: number) => void;
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => void process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
  env: process.env,
  cwd: process.cwd(),
  exit: (code) => process.exit(code),
};

type Options = NonNullable<ParseArgsConfig['options']>;

/** The flags every command that reads the data directory takes, as `serve` spells them. */
export const CONFIG_FLAGS = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
} as const satisfies Options;

/**
 * Commands other than `serve` judge license keys with the vendor keys the
 * server itself trusts (recorded in its data directory), never with their own.
 */
export function refuseVendorKeyFlag(args: readonly string[], command: string): void {
  if (args.some((a) => a === '--vendor-public-key' || a.startsWith('--vendor-public-key='))) {
    throw new FloatdError(
      'USAGE',
      `${command} judges license keys with the vendor keys the server trusts (its vendorPublicKeys, recorded in the data directory at each start), ` +
        'so it takes no --vendor-public-key: set vendorPublicKeys (or --vendor-public-key) for floatd serve and restart the server',
    );
  }
}

export function parse<O extends Options>(args: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    const message = (err as Error).message.replace(/\. To specify a positional.*$/, '');
    // A mistyped flag: name the one that was probably meant.
    const unknown = /^Unknown option '--([^'=]+)'/.exec(message)?.[1];
    throw new FloatdError('USAGE', unknown === undefined ? message : `${message}${didYouMean(unknown, Object.keys(options)).replace(/"([^"]+)"/, '"--$1"')}`);
  }
}

export function configFrom(io: Io, values: Record<string, unknown>, extra: Record<string, unknown> = {}): Config {
  return loadConfig({
    configFile: values['config'] as string | undefined,
    env: io.env,
    cwd: io.cwd,
    flags: {
      dataDir: values['data-dir'],
      ...extra,
    },
  });
}

export function intFlag(value: unknown, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value) || Number(value) < min) {
    throw new FloatdError('USAGE', `--${name} must be a whole number of at least ${min}; got "${String(value)}"`);
  }
  return Number(value);
}

/**
 * An ISO date/time, `now`, or a time relative to now: `90s`, `30m`, `12h`, `7d`, `2w` ago.
 * A date alone (2026-11-21) is midnight local time, as is a date and time without
 * a zone (ECMAScript reads the former as UTC; people mean their own midnight).
 */
export function timeFlag(value: unknown, name: string, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  if (text.toLowerCase() === 'now') return now;
  const rel = /^(\d+)([smhdw])$/.exec(text);
  if (rel) return now - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }[rel[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  const t = day ? new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3])).getTime() : /^\d{4}-\d{2}-\d{2}[T ]\d/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(t)) {
    const shown = JSON.stringify(text).slice(1, -1);
    throw new FloatdError('USAGE', `--${name} must be an ISO date/time (2026-11-21T09:00Z, 2026-11-21T09:00 local, or a date alone: 2026-11-21), now, or a span ago (90s, 30m, 12h, 7d, 2w); got "${shown}"`);
  }
  return t;
}

export function table(rows: readonly (readonly string[])[], headers: readonly string[]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
