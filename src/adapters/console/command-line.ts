import { parseArgs, type ParseArgsConfig } from 'node:util';
import { FloatdError } from '../../domain/errors.js';
import { didYouMean } from '../../domain/suggest.js';

/*
 * What every command line needs, floatd's own and the vendor's (packages/vendor):
 * its output, environment and working directory, strict flag parsing that names
 * the flag probably meant, whole-number flags, plain-text tables.
 */

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

export function intFlag(value: unknown, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value) || Number(value) < min) {
    throw new FloatdError('USAGE', `--${name} must be a whole number of at least ${min}; got "${String(value)}"`);
  }
  return Number(value);
}

export function table(rows: readonly (readonly string[])[], headers: readonly string[]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
