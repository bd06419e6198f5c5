import { parseActivationClaim, type ActivationTerms } from './activation.js';
import { FloatdError } from './errors.js';

/** The verified content of a vendor-signed license key. Times are epoch ms. */
export interface LicenseKey {
  readonly id: string;
  readonly licensee: string;
  readonly product: string;
  readonly seats: number;
  readonly issuedAt: number | null;
  readonly notBefore: number | null;
  readonly expiresAt: number | null;
  readonly maxLeaseSeconds: number | null;
  readonly features: readonly string[];
  /** Terms of server activation; absent or null: the key works on any server, as keys always did. */
  readonly activation?: ActivationTerms | null;
  /** An evaluation extension key: it adds days (and may raise seats) to the evaluation instead of granting seats of its own. */
  readonly evaluationExtension?: { readonly days: number; readonly seats: number | null } | null;
  /** The id of the vendor key that signed it (set once its signature is verified). */
  readonly vendorKid?: string;
}

/** The JWS `typ` header every floatd license key carries. */
export const LICENSE_KEY_TYPE = 'floatd-license+jwt';

const NAME_RE = /^[\p{L}\p{N}][\p{L}\p{N} ._@:+\/-]{0,127}$/u;

function badClaim(field: string, why: string): FloatdError {
  return new FloatdError('LICENSE_KEY_BAD_CLAIMS', `license key claim "${field}" ${why}`, { field });
}

function requireString(payload: Record<string, unknown>, field: string): string {
  const value = payload[field];
  if (typeof value !== 'string' || value.trim() === '') throw badClaim(field, 'must be a non-empty string');
  return value;
}

function optionalSeconds(payload: Record<string, unknown>, field: string): number | null {
  const value = payload[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw badClaim(field, 'must be a whole number of seconds since 1970');
  }
  return value * 1000;
}

/** Checks the claims of a key whose signature is already verified. Throws naming the bad claim. */
export function parseLicenseClaims(payload: Record<string, unknown>): LicenseKey {
  const id = requireString(payload, 'jti');
  const licensee = requireString(payload, 'licensee');
  const product = requireString(payload, 'product');
  if (!NAME_RE.test(product)) throw badClaim('product', 'must be a product name (letters, digits, . _ - @ : + /)');
  const seats = payload['seats'];
  if (typeof seats !== 'number' || !Number.isInteger(seats) || seats < 1 || seats > 1_000_000) {
    throw badClaim('seats', 'must be a whole number from 1 to 1000000');
  }
  const maxLease = payload['maxLeaseSeconds'];
  if (maxLease !== undefined && maxLease !== null && (typeof maxLease !== 'number' || !Number.isInteger(maxLease) || maxLease < 30)) {
    throw badClaim('maxLeaseSeconds', 'must be a whole number of at least 30');
  }
  const features = payload['features'] ?? [];
  if (!Array.isArray(features) || !features.every((f) => typeof f === 'string')) {
    throw badClaim('features', 'must be a list of strings');
  }
  const notBefore = optionalSeconds(payload, 'nbf');
  const expiresAt = optionalSeconds(payload, 'exp');
  if (notBefore !== null && expiresAt !== null && expiresAt <= notBefore) {
    throw badClaim('exp', 'must be later than "nbf"');
  }
  return {
    id,
    licensee,
    product,
    seats,
    issuedAt: optionalSeconds(payload, 'iat'),
    notBefore,
    expiresAt,
    maxLeaseSeconds: typeof maxLease === 'number' ? maxLease : null,
    features: [...features] as string[],
    activation: parseActivationClaim(payload['activation']),
    evaluationExtension: parseExtensionClaim(payload['evaluationExtension']),
  };
}

function parseExtensionClaim(value: unknown): { days: number; seats: number | null } | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) throw badClaim('evaluationExtension', 'must be an object');
  const v = value as Record<string, unknown>;
  const days = v['days'];
  if (typeof days !== 'number' || !Number.isInteger(days) || days < 1 || days > 3650) throw badClaim('evaluationExtension', '"days" must be a whole number from 1 to 3650');
  const seats = v['seats'] ?? null;
  if (seats !== null && (typeof seats !== 'number' || !Number.isInteger(seats) || seats < 1 || seats > 1_000_000)) {
    throw badClaim('evaluationExtension', '"seats" must be a whole number from 1 to 1000000');
  }
  return { days, seats: seats as number | null };
}

export type LicenseValidity =
  | { readonly state: 'valid' }
  | { readonly state: 'expired' | 'not-yet-valid'; readonly message: string };

/** Whether a key may grant seats at `now`. */
export function licenseValidity(key: LicenseKey, now: number): LicenseValidity {
  if (key.notBefore !== null && now < key.notBefore) {
    return { state: 'not-yet-valid', message: `license key ${key.id} is not valid before ${new Date(key.notBefore).toISOString()}` };
  }
  if (key.expiresAt !== null && now >= key.expiresAt) {
    return { state: 'expired', message: `license key ${key.id} expired at ${new Date(key.expiresAt).toISOString()}` };
  }
  return { state: 'valid' };
}

/** Throws the precise FloatdError when a key cannot be used at `now`. */
export function assertLicenseUsable(key: LicenseKey, now: number): void {
  const validity = licenseValidity(key, now);
  if (validity.state === 'expired') throw new FloatdError('LICENSE_KEY_EXPIRED', validity.message);
  if (validity.state === 'not-yet-valid') throw new FloatdError('LICENSE_KEY_NOT_YET_VALID', validity.message);
}
