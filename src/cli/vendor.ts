import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { newEd25519KeyPair, readJwkFile, writeSecretFile } from '../adapters/crypto/keys.js';
import { issueLicenseKey } from '../adapters/crypto/license-keys.js';
import { FloatdError } from '../domain/errors.js';
import { intFlag, parse, type Io } from './common.js';

export const VENDOR_USAGE = `floatd vendor keygen --out DIR [--force]
floatd vendor issue --private-key FILE --licensee NAME --product NAME --seats N
                    [--expires ISO-DATE] [--not-before ISO-DATE] [--max-lease-seconds N] [--feature NAME]...
  A date alone is a whole day in UTC (--expires: its end; --not-before: its start); without --expires the key never expires.`;

const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * A calendar date or a date-time with its zone, checked strictly (2027-02-30 is
 * an error, not 2 March). A date alone means the start of that day (UTC) for
 * --not-before and the end of that day (UTC) for --expires, so a key "valid
 * until 2027-12-31" still works all of that day.
 */
export function dateFlag(value: string | undefined, name: string, edge: 'start' | 'end'): Date | undefined {
  if (value === undefined) return undefined;
  const usage = () =>
    new FloatdError('USAGE', `--${name} must be a date such as 2027-12-31 or a date-time with its zone such as 2027-12-31T18:00:00Z; got "${value}"`);
  const m = DATE_ONLY.exec(value) ?? DATE_TIME.exec(value);
  if (m === null) throw usage();
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const probe = new Date(Date.UTC(year, month - 1, day));
  if (probe.getUTCFullYear() !== year || probe.getUTCMonth() !== month - 1 || probe.getUTCDate() !== day) {
    throw new FloatdError('USAGE', `--${name}: ${value.slice(0, 10)} is not a date on the calendar`);
  }
  if (m.length === 4 || m[4] === undefined) return new Date(probe.getTime() + (edge === 'end' ? 86_400_000 : 0));
  const [hour, minute, second] = [Number(m[4]), Number(m[5]), Number(m[6] ?? 0)];
  if (hour > 23 || minute > 59 || second > 59) throw new FloatdError('USAGE', `--${name}: ${value} is not a time of day`);
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw usage();
  return new Date(t);
}

export async function vendor(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'keygen') {
    const { values } = parse(rest, { out: { type: 'string' }, force: { type: 'boolean' } });
    if (values.out === undefined) throw new FloatdError('USAGE', 'vendor keygen needs --out DIR');
    const privateFile = join(values.out, 'vendor-private.jwk');
    const publicFile = join(values.out, 'vendor-public.jwk');
    if (!values.force && (existsSync(privateFile) || existsSync(publicFile))) {
      throw new FloatdError('USAGE', `${privateFile} or ${publicFile} already exists; pass --force to replace the vendor key pair (keys issued with the old one stop verifying)`);
    }
    const pair = await newEd25519KeyPair();
    writeSecretFile(privateFile, `${JSON.stringify(pair.privateJwk, null, 2)}\n`);
    writeFileSync(publicFile, `${JSON.stringify(pair.publicJwk, null, 2)}\n`, { mode: 0o644 });
    io.out(`wrote ${privateFile} (keep it secret) and ${publicFile} (give it to customers' servers); key id ${pair.publicJwk.kid}`);
    return 0;
  }
  if (sub === 'issue') {
    const { values } = parse(rest, {
      'private-key': { type: 'string' },
      licensee: { type: 'string' },
      product: { type: 'string' },
      seats: { type: 'string' },
      expires: { type: 'string' },
      'not-before': { type: 'string' },
      'max-lease-seconds': { type: 'string' },
      feature: { type: 'string', multiple: true },
    });
    for (const required of ['private-key', 'licensee', 'product', 'seats'] as const) {
      if (values[required] === undefined) throw new FloatdError('USAGE', `vendor issue needs --${required}`);
    }
    let jwk;
    try {
      jwk = readJwkFile(values['private-key']!, 'private');
    } catch (err) {
      throw new FloatdError('USAGE', `--private-key: ${(err as Error).message}`);
    }
    const now = new SystemClock().now();
    const expires = dateFlag(values.expires, 'expires', 'end');
    const notBefore = dateFlag(values['not-before'], 'not-before', 'start');
    if (expires !== undefined && expires.getTime() <= now) {
      throw new FloatdError('USAGE', `--expires ${values.expires} is in the past (${expires.toISOString()}); a key issued with it could never be installed`);
    }
    if (expires !== undefined && notBefore !== undefined && expires <= notBefore) {
      throw new FloatdError('USAGE', `--expires ${values.expires} (${expires.toISOString()}) must be later than --not-before ${values['not-before']} (${notBefore.toISOString()})`);
    }
    const seats = intFlag(values.seats, 'seats', 1)!;
    if (seats > 1_000_000) throw new FloatdError('USAGE', `--seats must be a whole number from 1 to 1000000; got "${values.seats}"`);
    const token = await issueLicenseKey(jwk, {
      licensee: values.licensee!,
      product: values.product!,
      seats,
      expires,
      notBefore,
      maxLeaseSeconds: intFlag(values['max-lease-seconds'], 'max-lease-seconds', 30),
      features: values.feature,
      now,
    });
    io.out(token);
    // The key alone goes to stdout (for pipes); what it means goes to stderr for the person issuing it.
    const from = notBefore === undefined ? 'now' : notBefore.toISOString();
    const until = expires === undefined ? 'never expires (no --expires)' : `expires at ${expires.toISOString()}${DATE_ONLY.test(values.expires!) ? ` (the end of ${values.expires} UTC)` : ''}`;
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string };
    const extras = [
      values['max-lease-seconds'] !== undefined ? `leases of at most ${values['max-lease-seconds']} s` : null,
      values.feature && values.feature.length > 0 ? `features ${values.feature.join(', ')}` : null,
    ].filter((x) => x !== null);
    io.err(`license key ${claims.jti} for ${values.licensee}: ${seats} seat(s) of ${values.product}, valid from ${from}; ${until}${extras.length > 0 ? `; ${extras.join('; ')}` : ''}`);
    return 0;
  }
  throw new FloatdError('USAGE', `vendor: unknown subcommand "${sub ?? ''}"\n${VENDOR_USAGE}`);
}
