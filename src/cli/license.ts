import { existsSync, readFileSync } from 'node:fs';
import { offlineStatus, withLicensing } from '../app/inspect.js';
import { keyStateLabel } from '../app/key-state.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { licenseValidity } from '../domain/license.js';
import { FloatdError } from '../domain/errors.js';
import { formatTimeLeft } from '../domain/wording.js';
import { CONFIG_FLAGS, configFrom, parse, refuseVendorKeyFlag, table, type Io } from './common.js';

export const LICENSE_USAGE = `floatd license add KEY|FILE|-   install a license key (the key itself, a file holding it, or - for stdin)
floatd license list [--json]     list installed keys
floatd license remove ID         remove a key (its leases are revoked); a unique prefix of the id will do
  each takes [--config FILE] [--data-dir DIR]; keys are judged with the vendor keys the server trusts`;

/** The key itself, a file holding it, or - for stdin; a path that names no file is said to be one. */
function readKeyArg(arg: string): string {
  if (arg === '-') return readFileSync(0, 'utf8').trim();
  if (/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(arg.trim())) return arg.trim();
  if (!existsSync(arg)) {
    throw new FloatdError('INPUT_INVALID', `"${arg}" is neither a license key (three base64url parts separated by dots) nor a file that exists`);
  }
  try {
    return readFileSync(arg, 'utf8').trim();
  } catch (err) {
    throw new FloatdError('INPUT_INVALID', `cannot read the license key file ${arg}: ${(err as NodeJS.ErrnoException).code === 'EACCES' ? 'permission denied' : (err as Error).message}`);
  }
}

export async function license(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  refuseVendorKeyFlag(rest, 'floatd license');
  const { values, positionals } = parse(rest, { ...CONFIG_FLAGS, json: { type: 'boolean' } }, true);
  const config = configFrom(io, values);
  const clock = new SystemClock();
  switch (sub) {
    case 'add': {
      if (positionals.length !== 1) throw new FloatdError('USAGE', 'license add takes exactly one KEY (or a file, or - for stdin)');
      const key = await withLicensing(config, clock, (l) => l.add(readKeyArg(positionals[0]!)));
      const pending = key.notBefore !== null && key.notBefore > clock.now();
      io.out(
        `installed license key ${key.id}: ${key.seats} seat(s) of ${key.product} for ${key.licensee}, ` +
          `${pending ? `pending: grants from ${new Date(key.notBefore!).toISOString()}, ` : ''}` +
          `${key.expiresAt ? `expires ${new Date(key.expiresAt).toISOString()}` : 'does not expire'}`,
      );
      return 0;
    }
    case 'remove': {
      if (positionals.length !== 1) throw new FloatdError('USAGE', 'license remove takes exactly one key ID (see floatd license list)');
      const id = await withLicensing(config, clock, async (l) => l.remove(positionals[0]!));
      io.out(`removed license key ${id}`);
      return 0;
    }
    case 'list': {
      if (positionals.length !== 0) throw new FloatdError('USAGE', 'license list takes no arguments');
      const inspected = await withLicensing(config, clock, (l) => l.inspect());
      // A key that needs an activation it lacks is not valid here: its state is the activation's, as in floatd status.
      const activation = new Map((await offlineStatus(config, clock)).keys.map((k) => [k.id, k]));
      const rows = inspected.map(({ id, addedAt, key, error }) => ({
        id,
        licensee: key?.licensee ?? null,
        product: key?.product ?? null,
        seats: key?.seats ?? null,
        notBefore: key?.notBefore ?? null,
        expires: key?.expiresAt ?? null,
        timeLeft: key?.expiresAt == null ? null : formatTimeLeft(key.expiresAt - clock.now()),
        state: key === null ? ('rejected' as const) : (activation.get(id)?.state ?? licenseValidity(key, clock.now()).state),
        action: activation.get(id)?.action ?? null,
        features: key?.features ?? [],
        addedAt,
        error: error === null ? null : `${error.code}: ${error.message}`,
      }));
      if (values.json) {
        io.out(JSON.stringify(rows.map((r) => ({ ...r, notBefore: r.notBefore && new Date(r.notBefore).toISOString(), expires: r.expires && new Date(r.expires).toISOString(), addedAt: new Date(r.addedAt).toISOString() })), null, 2));
      } else if (rows.length === 0) {
        io.out('no license key installed');
      } else {
        io.out(table(rows.map((r) => [r.id, r.licensee ?? '-', r.product ?? '-', String(r.seats ?? '-'), r.expires ? new Date(r.expires).toISOString() : 'never', r.timeLeft ?? '-', r.error ?? (r.state === 'rejected' ? r.state : keyStateLabel(r.state, r.id, r.notBefore === null ? null : new Date(r.notBefore).toISOString())), r.features.join(',') || '-']), ['ID', 'LICENSEE', 'PRODUCT', 'SEATS', 'EXPIRES', 'TIME LEFT', 'STATE', 'FEATURES']));
      }
      return 0;
    }
    default:
      throw new FloatdError('USAGE', `license: unknown subcommand "${sub ?? ''}"\n${LICENSE_USAGE}`);
  }
}
