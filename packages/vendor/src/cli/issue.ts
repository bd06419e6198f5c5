import { resolve } from 'node:path';
import type { JWK } from 'jose';
import { SystemClock } from '../../../../src/adapters/clock/system-clock.js';
import { intFlag, parse, type Io } from '../../../../src/adapters/console/command-line.js';
import { readJwkFile } from '../../../../src/adapters/crypto/keys.js';
import { issueLicenseKey } from '../../../../src/adapters/crypto/license-keys.js';
import { FloatdError } from '../../../../src/domain/errors.js';
import { PRIVATE_KEY_META, VendorStore } from '../store/vendor-store.js';

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

const ISSUE_FLAGS = {
  'data-dir': { type: 'string' },
  activation: { type: 'string' },
  activations: { type: 'string' },
  'activation-url': { type: 'string' },
  'container-binding': { type: 'boolean' },
  'evaluation-extension': { type: 'boolean' },
  days: { type: 'string' },
  'private-key': { type: 'string' },
  licensee: { type: 'string' },
  product: { type: 'string' },
  seats: { type: 'string' },
  expires: { type: 'string' },
  'not-before': { type: 'string' },
  'max-lease-seconds': { type: 'string' },
  feature: { type: 'string', multiple: true },
} as const;

type IssueValues = ReturnType<typeof parse<typeof ISSUE_FLAGS>>['values'];

/** What a vendor issue command line asks for, checked: every refusal names the flag to change. */
interface IssueRequest {
  readonly values: IssueValues;
  readonly jwk: JWK;
  readonly extension: boolean;
  readonly extensionDays: number | undefined;
  readonly seats: number;
  readonly expires: Date | undefined;
  readonly notBefore: Date | undefined;
  readonly needsActivation: boolean;
  readonly limit: number | undefined;
  readonly url: string | undefined;
  readonly now: number;
}

function extensionFlags(values: IssueValues): boolean {
  const extension = values['evaluation-extension'] === true;
  if (extension) {
    if (values.days === undefined) throw new FloatdError('USAGE', 'vendor issue --evaluation-extension needs --days N: how many days it adds to the evaluation');
    if (values.activation !== undefined) throw new FloatdError('USAGE', '--evaluation-extension keys need no activation');
    values.product ??= 'evaluation';
  } else if (values.days !== undefined) {
    throw new FloatdError('USAGE', '--days goes with --evaluation-extension (a license key\'s own dates are --expires and --not-before)');
  }
  for (const required of (extension ? ['private-key', 'licensee'] : ['private-key', 'licensee', 'product', 'seats']) as Array<'private-key' | 'licensee' | 'product' | 'seats'>) {
    if (values[required] === undefined) throw new FloatdError('USAGE', `vendor issue needs --${required}`);
  }
  return extension;
}

function activationFlags(values: IssueValues): { needsActivation: boolean; limit: number | undefined; url: string | undefined } {
  const needsActivation = values.activation !== undefined;
  if (needsActivation && values.activation !== 'required') throw new FloatdError('USAGE', `--activation takes "required"; got "${values.activation}"`);
  if (!needsActivation && (values.activations !== undefined || values['activation-url'] !== undefined || values['container-binding'])) {
    throw new FloatdError('USAGE', '--activations, --activation-url and --container-binding go with --activation required');
  }
  if (needsActivation && values.activations === undefined) throw new FloatdError('USAGE', '--activation required needs --activations N: on how many servers at once the key may be activated');
  if (needsActivation && values['data-dir'] === undefined) throw new FloatdError('USAGE', '--activation required needs --data-dir VDIR: the activation database that will answer for the key');
  const limit = intFlag(values.activations, 'activations', 1);
  if (limit !== undefined && limit > 100_000) throw new FloatdError('USAGE', `--activations must be a whole number from 1 to 100000; got "${values.activations}"`);
  const url = values['activation-url'];
  if (url !== undefined && !/^https?:\/\/[^\s]+$/i.test(url)) throw new FloatdError('USAGE', `--activation-url must be an http(s) URL such as https://activate.example.com; got "${url}"`);
  return { needsActivation, limit, url };
}

function issueRequest(args: string[]): IssueRequest {
  const { values } = parse(args, ISSUE_FLAGS);
  const extension = extensionFlags(values);
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
  const seats = intFlag(values.seats ?? (extension ? '1' : undefined), 'seats', 1)!;
  const extensionDays = intFlag(values.days, 'days', 1);
  if (extensionDays !== undefined && extensionDays > 3650) throw new FloatdError('USAGE', `--days must be a whole number from 1 to 3650; got "${values.days}"`);
  if (seats > 1_000_000) throw new FloatdError('USAGE', `--seats must be a whole number from 1 to 1000000; got "${values.seats}"`);
  return { values, jwk, extension, extensionDays, seats, expires, notBefore, ...activationFlags(values), now };
}

/** What the key means, for the person issuing it. */
function describeKey(r: IssueRequest, token: string): string {
  const { values, seats, expires, notBefore } = r;
  const from = notBefore === undefined ? 'now' : notBefore.toISOString();
  const until = expires === undefined ? 'never expires (no --expires)' : `expires at ${expires.toISOString()}${DATE_ONLY.test(values.expires!) ? ` (the end of ${values.expires} UTC)` : ''}`;
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string };
  const extras = [
    values['max-lease-seconds'] !== undefined ? `leases of at most ${values['max-lease-seconds']} s` : null,
    values.feature && values.feature.length > 0 ? `features ${values.feature.join(', ')}` : null,
    r.extension ? `EVALUATION EXTENSION: adds ${r.extensionDays} day(s) to the evaluation${values.seats !== undefined ? ` and raises it to ${seats} seat(s)` : ''} (floatd license add)` : null,
    r.needsActivation ? `needs activation on at most ${r.limit} server(s)${r.url ? ` at ${r.url}` : ' (offline only: no --activation-url)'}${values['container-binding'] ? ', container binding allowed' : ''}` : null,
  ].filter((x) => x !== null);
  return `license key ${claims.jti} for ${values.licensee}: ${seats} seat(s) of ${values.product}, valid from ${from}; ${until}${extras.length > 0 ? `; ${extras.join('; ')}` : ''}`;
}

/** floatd-vendor issue: signs a license key; with --data-dir, records it in the activation database too. */
export async function vendorIssue(args: string[], io: Io): Promise<number> {
  const r = issueRequest(args);
  const { values, seats, limit, url, now } = r;
  const token = await issueLicenseKey(r.jwk, {
    evaluationExtension: r.extension ? { days: r.extensionDays!, ...(values.seats !== undefined ? { seats } : {}) } : undefined,
    activation: r.needsActivation ? { limit: limit!, url, containerBinding: values['container-binding'] ?? false } : undefined,
    licensee: values.licensee!,
    product: values.product!,
    seats,
    expires: r.expires,
    notBefore: r.notBefore,
    maxLeaseSeconds: intFlag(values['max-lease-seconds'], 'max-lease-seconds', 30),
    features: values.feature,
    now,
  });
  if (values['data-dir'] !== undefined) {
    const c = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string; exp?: number };
    const store = VendorStore.open(values['data-dir']);
    try {
      store.recordKey({ id: c.jti, licensee: values.licensee!, product: values.product!, seats, activationLimit: limit ?? null, containerBinding: values['container-binding'] ?? false, activationUrl: url ?? null, expiresAt: c.exp === undefined ? null : c.exp * 1000, issuedAt: now, token });
      store.setMeta(PRIVATE_KEY_META, resolve(values['private-key']!));
    } finally {
      store.close();
    }
  }
  io.out(token);
  // The key alone goes to stdout (for pipes); what it means goes to stderr for the person issuing it.
  io.err(describeKey(r, token));
  return 0;
}
