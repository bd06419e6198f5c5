import { CompactSign, compactVerify, decodeProtectedHeader, type JWK } from 'jose';
import { HOST_COMPONENTS, type Activation, type HostComponent } from '../../domain/activation.js';
import { FloatdError } from '../../domain/errors.js';
import { importEd25519, publicPart, thumbprint } from './keys.js';
import type { TrustedVendorKey } from './license-keys.js';

/** The JWS types of the activation flow: each statement says what it is, so one can never pass for another. */
export const TOKEN_TYPES = {
  request: 'floatd-activation-request+jwt',
  revalidation: 'floatd-revalidation+jwt',
  deactivation: 'floatd-deactivation+jwt',
  activation: 'floatd-activation+jwt',
  receipt: 'floatd-deactivation-receipt+jwt',
  product: 'floatd-product+jwt',
  evaluationRequest: 'floatd-evaluation-request+jwt',
  evaluation: 'floatd-evaluation+jwt',
} as const;
type TokenType = (typeof TOKEN_TYPES)[keyof typeof TOKEN_TYPES];

const JWS_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

function invalid(what: string, why: string): FloatdError {
  return new FloatdError('ACTIVATION_FILE_INVALID', `${what} ${why}`);
}

/** Signs `payload` (a JSON object) as a compact EdDSA JWS of type `typ`. */
export async function signStatement(privateJwk: JWK, typ: TokenType, payload: Record<string, unknown>): Promise<string> {
  const kid = privateJwk.kid ?? (await thumbprint(privateJwk));
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: 'EdDSA', typ, kid })
    .sign(await importEd25519(privateJwk));
}

/** The header and payload of a JWS, unverified, checking its form and type. */
export function readStatement(token: unknown, typ: TokenType, what: string): { kid: string | undefined; payload: Record<string, unknown> } {
  if (typeof token !== 'string' || !JWS_RE.test(token.trim())) throw invalid(what, 'is not a compact JWS (three base64url parts separated by dots)');
  let header;
  try {
    header = decodeProtectedHeader(token.trim());
  } catch {
    throw invalid(what, 'has a header that is not base64url JSON');
  }
  if (header.alg !== 'EdDSA') throw invalid(what, `uses algorithm ${String(header.alg)}; only EdDSA is accepted`);
  if (header.typ !== typ) throw invalid(what, `is of type ${String(header.typ)}; expected ${typ}`);
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(token.trim().split('.')[1]!, 'base64url').toString('utf8'));
  } catch {
    throw invalid(what, 'has a payload that is not JSON');
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw invalid(what, 'has a payload that is not a JSON object');
  return { kid: typeof header.kid === 'string' ? header.kid : undefined, payload: payload as Record<string, unknown> };
}

/** Verifies a JWS with one public key; a signature that fails says the statement was altered. */
export async function verifyStatement(token: string, typ: TokenType, jwk: JWK, what: string): Promise<Record<string, unknown>> {
  const { payload } = readStatement(token, typ, what);
  try {
    await compactVerify(token.trim(), await importEd25519(publicPart(jwk)), { algorithms: ['EdDSA'] });
  } catch {
    throw new FloatdError('ACTIVATION_FILE_INVALID', `${what}: the signature does not verify: it was altered, or signed by another key`);
  }
  return payload;
}

/** A public Ed25519 JWK taken from a statement, or an error naming the field. */
export function publicKeyField(value: unknown, what: string): JWK {
  const jwk = value as JWK;
  if (typeof jwk !== 'object' || jwk === null || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || jwk.d !== undefined) {
    throw invalid(what, 'field "serverKey" must be the server\'s public Ed25519 key (a JWK)');
  }
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
}

/** A fingerprint field: known components mapped to their hashes. */
export function bindingField(value: unknown, what: string): Partial<Record<HostComponent, string>> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(what, 'field "fingerprint" must be an object of component hashes');
  const out: Partial<Record<HostComponent, string>> = {};
  for (const [name, hash] of Object.entries(value as Record<string, unknown>)) {
    if (!(HOST_COMPONENTS as readonly string[]).includes(name)) throw invalid(what, `field "fingerprint" names an unknown component "${name}"`);
    if (typeof hash !== 'string' || !/^[A-Za-z0-9_-]{16,128}$/.test(hash)) throw invalid(what, `field "fingerprint.${name}" must be a component hash`);
    out[name as HostComponent] = hash;
  }
  return out;
}

export function stringField(payload: Record<string, unknown>, field: string, what: string): string {
  const v = payload[field];
  if (typeof v !== 'string' || v === '' || v.length > 256) throw invalid(what, `field "${field}" must be a non-empty string`);
  return v;
}

export function timeField(payload: Record<string, unknown>, field: string, what: string): number {
  const v = payload[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw invalid(what, `field "${field}" must be a time in milliseconds since 1970`);
  return v;
}

export interface ActivationGrant {
  readonly id: string;
  readonly keyId: string;
  readonly serverKey: JWK;
  readonly binding: Partial<Record<HostComponent, string>>;
  readonly container: boolean;
  readonly nonce: string;
  readonly now: number;
}

/** Vendor side: the signed activation naming the key, the server's key and the host binding. */
export async function issueActivation(vendorPrivateJwk: JWK, g: ActivationGrant): Promise<string> {
  return signStatement(vendorPrivateJwk, TOKEN_TYPES.activation, {
    jti: g.id,
    key: g.keyId,
    server: await thumbprint(g.serverKey),
    serverKey: publicPart(g.serverKey),
    fingerprint: g.binding,
    container: g.container,
    nonce: g.nonce,
    iat: g.now,
  });
}

/** Server side: checks an activation's form, vendor and signature, and returns what it says. */
export async function verifyActivation(token: string, trusted: readonly TrustedVendorKey[], what = 'the activation'): Promise<Activation & { serverKey: JWK }> {
  const { kid } = readStatement(token, TOKEN_TYPES.activation, what);
  const vendor = trusted.find((t) => t.kid === kid);
  if (vendor === undefined) {
    throw new FloatdError('ACTIVATION_FOREIGN', `${what} is signed by vendor key ${String(kid)}, which this server does not trust (${trusted.map((t) => t.kid).join(', ') || 'none configured'})`);
  }
  const p = await verifyStatement(token, TOKEN_TYPES.activation, vendor.jwk, what);
  const serverKey = publicKeyField(p['serverKey'], what);
  const serverKid = stringField(p, 'server', what);
  if ((await thumbprint(serverKey)) !== serverKid) throw invalid(what, 'names a server key whose thumbprint is not its "server" field');
  return {
    id: stringField(p, 'jti', what),
    keyId: stringField(p, 'key', what),
    serverKid,
    serverKey,
    binding: bindingField(p['fingerprint'], what),
    container: p['container'] === true,
    issuedAt: timeField(p, 'iat', what),
    nonce: stringField(p, 'nonce', what),
  };
}
