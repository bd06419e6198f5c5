import { compactVerify, decodeProtectedHeader, type JWK } from 'jose';
import { FloatdError } from '../../domain/errors.js';
import { signStatement, TOKEN_TYPES } from './activation-tokens.js';
import { importEd25519, publicPart, thumbprint } from './keys.js';

/** A product file shipped beside floatd (in its package folder) is in force when none was trusted; the vendor's tools name it. */
export const SHIPPED_PRODUCT_FILE = 'floatd-product.json';

export const PRODUCT_FILE_TYPE = TOKEN_TYPES.product;

/** The vendor's terms for a product, as its signed product file states them. */
export interface ProductTerms {
  readonly vendorKey: JWK;
  readonly vendorKid: string;
  readonly products: readonly string[];
  readonly evaluation: { readonly seats: number; readonly days: number };
  readonly issuedAt: number;
  /** The evaluation must be registered with the vendor's activation service (at `url`, or by request file when null) before it grants; null when not. */
  readonly evaluationActivation: { readonly url: string | null } | null;
  /** The signed statement itself (what is kept in the data directory). */
  readonly token: string;
}

function invalid(why: string): FloatdError {
  return new FloatdError('PRODUCT_FILE_INVALID', `the product file ${why}`);
}

/** Vendor side: the product file, readable JSON carrying the same terms signed with the vendor key. */
export async function writeProductFile(
  privateJwk: JWK,
  terms: { products: readonly string[]; evaluation: { seats: number; days: number }; now: number; evaluationActivation?: { url: string | null } | null },
): Promise<string> {
  const vendorKey = publicPart(privateJwk);
  const registration = terms.evaluationActivation ?? null;
  const claim = registration === null ? {} : { evaluationActivation: 'required', ...(registration.url !== null ? { activationUrl: registration.url } : {}) };
  const payload = { vendorKey, products: [...terms.products], evaluation: terms.evaluation, ...claim, iat: terms.now };
  const token = await signStatement(privateJwk, PRODUCT_FILE_TYPE, payload);
  return `${JSON.stringify(
    {
      floatd: 'product',
      about: `The terms of ${terms.products.join(', ')} from the vendor with key ${await thumbprint(vendorKey)}. Install it once with floatd trust FILE, or ship it beside floatd as floatd-product.json.`,
      vendorKeyId: await thumbprint(vendorKey),
      products: payload.products,
      evaluation: payload.evaluation,
      ...claim,
      issuedAt: new Date(terms.now).toISOString(),
      signed: token,
    },
    null,
    2,
  )}\n`;
}

/** Verifies a product file's signed terms against the vendor key they carry, and checks its readable fields say the same. */
export async function readProductTerms(textOrToken: string): Promise<ProductTerms> {
  let token = textOrToken.trim();
  let readable: Record<string, unknown> | null = null;
  if (token.startsWith('{')) {
    try {
      readable = JSON.parse(token) as Record<string, unknown>;
    } catch (err) {
      throw invalid(`is not JSON: ${(err as Error).message}`);
    }
    if (readable['floatd'] !== 'product' || typeof readable['signed'] !== 'string') throw invalid('is not a floatd product file ("floatd": "product" with "signed")');
    token = readable['signed'];
  }
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw invalid('holds no readable signed terms');
  }
  if (header.alg !== 'EdDSA' || header.typ !== PRODUCT_FILE_TYPE) throw invalid(`is of type ${String(header.typ)}; expected ${PRODUCT_FILE_TYPE}`);
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw invalid('has signed terms that are not JSON');
  }
  const jwk = payload['vendorKey'] as JWK;
  if (typeof jwk !== 'object' || jwk === null || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string' || jwk.d !== undefined) throw invalid('names no vendor public key');
  const vendorKid = await thumbprint(jwk);
  if (header.kid !== vendorKid) throw invalid('is signed by another key than the vendor key it names');
  try {
    await compactVerify(token, await importEd25519(jwk), { algorithms: ['EdDSA'] });
  } catch {
    throw invalid('signature does not verify: it was altered');
  }
  const products = payload['products'];
  if (!Array.isArray(products) || products.length === 0 || !products.every((p) => typeof p === 'string' && p !== '')) throw invalid('names no products');
  const ev = payload['evaluation'] as Record<string, unknown> | undefined;
  const whole = (v: unknown, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
  if (typeof ev !== 'object' || ev === null || !whole(ev['seats'], 1_000_000) || !whole(ev['days'], 3650)) throw invalid('has no valid evaluation terms (seats and days)');
  const terms = { products: products as string[], evaluation: { seats: ev['seats'] as number, days: ev['days'] as number } };
  const claim = payload['evaluationActivation'];
  const url = payload['activationUrl'] ?? null;
  if (claim !== undefined && claim !== 'required') throw invalid('has "evaluationActivation" other than "required"');
  if (url !== null && (typeof url !== 'string' || !/^https?:\/\/[^\s]+$/i.test(url))) throw invalid('has an "activationUrl" that is not an http(s) URL');
  const evaluationActivation = claim === 'required' ? { url: url as string | null } : null;
  if (readable !== null) {
    const fields: Array<[string, unknown]> = [['products', terms.products], ['evaluation', terms.evaluation], ['vendorKeyId', vendorKid], ['evaluationActivation', claim], ['activationUrl', payload['activationUrl']]];
    for (const [field, signed] of fields) {
      if (JSON.stringify(readable[field] ?? null) !== JSON.stringify(signed ?? null)) throw invalid(`field "${field}" differs from what the vendor signed: the file was altered`);
    }
  }
  return { vendorKey: publicPart(jwk), vendorKid, ...terms, evaluationActivation, issuedAt: typeof payload['iat'] === 'number' ? payload['iat'] : 0, token };
}
