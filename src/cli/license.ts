import { existsSync, readFileSync } from 'node:fs';
import { withLicensing } from '../app/inspect.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { licenseValidity } from '../domain/license.js';
import { FloatdError } from '../domain/errors.js';
import { CONFIG_FLAGS, configFrom, parse, table, type Io } from './common.js';

export const LICENSE_USAGE = `floatd license add KEY|FILE|-   install a license key (the key itself, a file holding it, or - for stdin)
floatd license list [--json]     list installed keys
floatd license remove ID         remove a key (its leases are revoked)
  each takes [--config FILE] [--data-dir DIR] [--vendor-public-key FILE]...`;

function readKeyArg(arg: string): string {
  if (arg === '-') return readFileSync(0, 'utf8').trim();
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(arg) && existsSync(arg)) return readFileSync(arg, 'utf8').trim();
  return arg.trim();
}

export async function license(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parse(rest, { ...CONFIG_FLAGS, json: { type: 'boolean' } }, true);
  const config = configFrom(io, values);
  const clock = new SystemClock();
  switch (sub) {
    case 'add': {
      if (positionals.length !== 1) throw new FloatdError('USAGE', 'license add takes exactly one KEY (or a file, or - for stdin)');
      const key = await withLicensing(config, clock, (l) => l.add(readKeyArg(positionals[0]!)));
      io.out(`installed license key ${key.id}: ${key.seats} seat(s) of ${key.product} for ${key.licensee}, ${key.expiresAt ? `expires ${new Date(key.expiresAt).toISOString()}` : 'does not expire'}`);
      return 0;
    }
    case 'remove': {
      if (positionals.length !== 1) throw new FloatdError('USAGE', 'license remove takes exactly one key ID (see floatd license list)');
      await withLicensing(config, clock, async (l) => l.remove(positionals[0]!));
      io.out(`removed license key ${positionals[0]}`);
      return 0;
    }
    case 'list': {
      if (positionals.length !== 0) throw new FloatdError('USAGE', 'license list takes no arguments');
      const rows = (await withLicensing(config, clock, (l) => l.inspect())).map(({ id, addedAt, key, error }) => ({
        id,
        licensee: key?.licensee ?? null,
        product: key?.product ?? null,
        seats: key?.seats ?? null,
        notBefore: key?.notBefore ?? null,
        expires: key?.expiresAt ?? null,
        state: key === null ? 'rejected' : licenseValidity(key, clock.now()).state,
        addedAt,
        error: error === null ? null : `${error.code}: ${error.message}`,
      }));
      if (values.json) {
        io.out(JSON.stringify(rows.map((r) => ({ ...r, notBefore: r.notBefore && new Date(r.notBefore).toISOString(), expires: r.expires && new Date(r.expires).toISOString(), addedAt: new Date(r.addedAt).toISOString() })), null, 2));
      } else if (rows.length === 0) {
        io.out('no license key installed (the server runs in evaluation mode)');
      } else {
        io.out(table(rows.map((r) => [r.id, r.licensee ?? '-', r.product ?? '-', String(r.seats ?? '-'), r.expires ? new Date(r.expires).toISOString() : 'never', r.error ?? r.state]), ['ID', 'LICENSEE', 'PRODUCT', 'SEATS', 'EXPIRES', 'STATE']));
      }
      return 0;
    }
    default:
      throw new FloatdError('USAGE', `license: unknown subcommand "${sub ?? ''}"\n${LICENSE_USAGE}`);
  }
}
