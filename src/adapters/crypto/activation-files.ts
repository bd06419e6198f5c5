import { FloatdError } from '../../domain/errors.js';
import { publicKeyField, readStatement, TOKEN_TYPES } from './activation-tokens.js';
import { thumbprint } from './keys.js';

/*
 * The offline activation files both sides read and write: the request and the
 * deactivation proof a customer's server writes for the vendor, the response
 * the vendor writes back. The server (src/app/activation.ts) and the vendor
 * package (packages/vendor) share these formats.
 */

export function parseFile(text: string, kind: string, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new FloatdError('ACTIVATION_FILE_INVALID', `${what} is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new FloatdError('ACTIVATION_FILE_INVALID', `${what} is not a JSON object`);
  const o = parsed as Record<string, unknown>;
  if (o['floatd'] !== kind) throw new FloatdError('ACTIVATION_FILE_INVALID', `${what} is not an ${kind} file ("floatd": ${JSON.stringify(o['floatd'] ?? null)})`);
  return o;
}

/** The readable fields of a request file must say what the server signed: a person may read them, never change them. */
export function checkReadableFields(file: Record<string, unknown>, signed: Record<string, unknown>, fields: readonly string[], what: string): void {
  for (const f of fields) {
    if (JSON.stringify(file[f] ?? null) !== JSON.stringify(signed[f] ?? null)) {
      throw new FloatdError('ACTIVATION_FILE_INVALID', `${what}: field "${f}" differs from what the server signed: the file was altered`);
    }
  }
}

/** The signed request inside an offline activation request file, its readable fields checked against it (vendor side). */
export async function requestOfFile(text: string): Promise<string> {
  const what = 'the activation request file';
  const file = parseFile(text, 'activation-request', what);
  const { payload } = readStatement(file['request'], TOKEN_TYPES.request, what);
  checkReadableFields(file, { ...payload, createdAt: typeof payload['createdAt'] === 'number' ? new Date(payload['createdAt']).toISOString() : payload['createdAt'] }, ['key', 'product', 'licensee', 'fingerprint', 'container', 'createdAt'], what);
  // The readable server key fingerprint is the thumbprint of the server key the request is signed with.
  const signedBy = await thumbprint(publicKeyField(payload['serverKey'], what));
  if (file['serverKeyFingerprint'] !== signedBy) {
    throw new FloatdError(
      'ACTIVATION_FILE_INVALID',
      `${what}: field "serverKeyFingerprint" (${JSON.stringify(file['serverKeyFingerprint'] ?? null)}) is not the fingerprint of the server key that signed the request (${signedBy}): the file was altered`,
    );
  }
  return file['request'] as string;
}

/** The proof inside a deactivation proof file, its readable fields checked against it (vendor side). */
export function proofOfFile(text: string): string {
  const what = 'the deactivation proof file';
  const file = parseFile(text, 'deactivation-proof', what);
  const { payload } = readStatement(file['proof'], TOKEN_TYPES.deactivation, what);
  checkReadableFields(file, payload, ['key', 'activation'], what);
  return file['proof'] as string;
}

/** The response file the vendor writes for an offline request. */
export function responseFile(g: { activation: string; activationId: string; keyId: string; created: boolean }, issuedAt: number): string {
  return `${JSON.stringify(
    {
      floatd: 'activation-response',
      about: `Activation ${g.activationId} of license key ${g.keyId}. Install it on the server that wrote the request: floatd activate --offline-response FILE`,
      key: g.keyId,
      activationId: g.activationId,
      issuedAt: new Date(issuedAt).toISOString(),
      newActivation: g.created,
      activation: g.activation,
    },
    null,
    2,
  )}\n`;
}
