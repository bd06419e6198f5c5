import type { ParseArgsConfig } from 'node:util';
import { loadConfig, type Config } from '../config/config.js';
import { FloatdError } from '../domain/errors.js';
import { type Io } from '../adapters/console/command-line.js';

// The command-line helpers the vendor's tools use too live in the console adapter.
export { intFlag, parse, processIo, table, type Io } from '../adapters/console/command-line.js';

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
