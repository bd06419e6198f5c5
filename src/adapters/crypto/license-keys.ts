import { randomUUID } from 'node:crypto';
import { SignJWT, compactVerify, decodeProtectedHeader, errors as joseErrors, type JWK } from 'jose';
import { FloatdError } from '../../domain/errors.js';
import { LICENSE_KEY_TYPE, parseLicenseClaims, type LicenseKey } from '../../domain/license.js';
import { importEd25519, thumbprint } from './keys.js';

export interface IssueOptions {
  readonly licensee: string;
  readonly product: string;
  readonly seats: number;
  readonly notBefore?: Date;
  readonly expires?: Date;
  readonly maxLeaseSeconds?: number;
  readonly features?: readonly string[];
  /** Server activation: the key grants only on servers it is activated on. */
  readonly activation?: { readonly limit: number; readonly url?: string; readonly containerBinding?: boolean };
  /** An evaluation extension key: adds `days` to the evaluation and raises its seats to `seats`. */
  readonly evaluationExtension?: { readonly days: number; readonly seats?: number };
  readonly now: number;
}

/** Vendor side: signs a license key (compact JWS, EdDSA). */
export async function issueLicenseKey(vendorPrivateJwk: JWK, opts: IssueOptions): Promise<string> {
  const kid = vendorPrivateJwk.kid ?? (await thumbprint(vendorPrivateJwk));
  const claims: Record<string, unknown> = {
    licensee: opts.licensee,
    product: opts.product,
    seats: opts.seats,
  };
  if (opts.maxLeaseSeconds !== undefined) claims['maxLeaseSeconds'] = opts.maxLeaseSeconds;
  if (opts.features !== undefined && opts.features.length > 0) claims['features'] = [...opts.features];
  if (opts.evaluationExtension !== undefined) {
    claims['evaluationExtension'] = { days: opts.evaluationExtension.days, ...(opts.evaluationExtension.seats !== undefined ? { seats: opts.evaluationExtension.seats } : {}) };
  }
  if (opts.activation !== undefined) {
    claims['activation'] = { required: true, limit: opts.activation.limit, ...(opts.activation.url ? { url: opts.activation.url } : {}), containerBinding: opts.activation.containerBinding ?? false };
  }
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', typ: LICENSE_KEY_TYPE, kid })
    .setJti(randomUUID())
    .setIssuedAt(Math.floor(opts.now / 1000));
  if (opts.notBefore !== undefined) jwt = jwt.setNotBefore(Math.floor(opts.notBefore.getTime() / 1000));
  if (opts.expires !== undefined) jwt = jwt.setExpirationTime(Math.floor(opts.expires.getTime() / 1000));
  const token = await jwt.sign(await importEd25519(vendorPrivateJwk));
  // Refuse to print a key the server would refuse.
  parseLicenseClaims(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>);
  return token;
}

export interface TrustedVendorKey {
  readonly kid: string;
  readonly jwk: JWK;
}

export async function trustVendorKeys(jwks: readonly JWK[]): Promise<TrustedVendorKey[]> {
  return Promise.all(jwks.map(async (jwk) => ({ kid: await thumbprint(jwk), jwk })));
}

/**
 * Server side: checks a key's form, vendor, signature and claims (not its
 * dates; see licenseValidity), naming precisely what is wrong.
 */
export async function verifyLicenseKey(token: string, trusted: readonly TrustedVendorKey[]): Promise<LicenseKey> {
  const text = token.trim();
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(text)) {
    throw new FloatdError('LICENSE_KEY_MALFORMED', 'license key is not a compact JWS (three base64url parts separated by dots)');
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(text);
  } catch {
    throw new FloatdError('LICENSE_KEY_MALFORMED', 'license key header is not valid base64url JSON');
  }
  if (header.alg !== 'EdDSA') {
    throw new FloatdError('LICENSE_KEY_MALFORMED', `license key uses algorithm ${String(header.alg)}; only EdDSA is accepted`);
  }
  if (header.typ !== LICENSE_KEY_TYPE) {
    throw new FloatdError('LICENSE_KEY_MALFORMED', `license key type is ${String(header.typ)}; expected ${LICENSE_KEY_TYPE}`);
  }
  if (trusted.length === 0) {
    throw new FloatdError('NO_VENDOR_KEYS', 'no trusted vendor public key is configured (set vendorPublicKeys or --vendor-public-key)');
  }
  const candidates = header.kid === undefined ? trusted : trusted.filter((t) => t.kid === header.kid);
  if (candidates.length === 0) {
    throw new FloatdError(
      'LICENSE_KEY_UNKNOWN_VENDOR',
      `license key is signed by vendor key ${String(header.kid)}, which is not among the trusted vendor keys (${trusted.map((t) => t.kid).join(', ')})`,
    );
  }
  let payloadBytes: Uint8Array | undefined;
  let signer: string | undefined;
  for (const candidate of candidates) {
    try {
      ({ payload: payloadBytes } = await compactVerify(text, await importEd25519(candidate.jwk), { algorithms: ['EdDSA'] }));
      signer = candidate.kid;
      break;
    } catch (err) {
      if (!(err instanceof joseErrors.JWSSignatureVerificationFailed)) {
        throw new FloatdError('LICENSE_KEY_MALFORMED', `license key cannot be read: ${(err as Error).message}`);
      }
    }
  }
  if (payloadBytes === undefined) {
    throw new FloatdError('LICENSE_KEY_BAD_SIGNATURE', 'license key signature does not verify: the key was altered or not signed by the trusted vendor');
  }
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(payloadBytes).toString('utf8'));
  } catch {
    throw new FloatdError('LICENSE_KEY_MALFORMED', 'license key payload is not JSON');
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new FloatdError('LICENSE_KEY_MALFORMED', 'license key payload is not a JSON object');
  }
  return { ...parseLicenseClaims(payload as Record<string, unknown>), vendorKid: signer };
}
