import { randomUUID } from 'node:crypto';
import type { JWK } from 'jose';
import { hostBindingProblem, matchBinding } from '../../../../src/domain/activation.js';
import type { Clock } from '../../../../src/domain/clock.js';
import { FloatdError } from '../../../../src/domain/errors.js';
import { bindingField, publicKeyField, readStatement, signStatement, stringField, timeField, TOKEN_TYPES, verifyStatement } from '../../../../src/adapters/crypto/activation-tokens.js';
import { publicPart, thumbprint } from '../../../../src/adapters/crypto/keys.js';
import { readProductTerms } from '../../../../src/adapters/crypto/product-file.js';
import type { VendorStore } from '../store/vendor-store.js';
import { checkReadableFields } from '../../../../src/adapters/crypto/activation-files.js';
import { checkRequestTime } from './vendor-activations.js';

const DAY_MS = 86_400_000;

export interface EvaluationGranted {
  /** The vendor-signed registration the server stores and obeys. */
  readonly evaluation: string;
  readonly evaluationId: string;
  readonly products: readonly string[];
  readonly startedAt: number;
  readonly endsAt: number;
  /** False when this host had registered an evaluation of these products before: the same start and end come back. */
  readonly created: boolean;
}

/**
 * The vendor's side of evaluation registration: one evaluation per host and
 * product file. A host that registers again (a wiped record, a new data
 * directory) gets the start and end it was first given, never a new period.
 */
export class VendorEvaluations {
  constructor(
    private readonly store: VendorStore,
    private readonly clock: Clock,
    private readonly privateJwk: JWK,
  ) {}

  async register(request: unknown, via: 'online' | 'offline', remote: string | null): Promise<EvaluationGranted> {
    const what = via === 'online' ? 'the evaluation registration request' : 'the offline evaluation registration request';
    const { payload: unverified } = readStatement(request, TOKEN_TYPES.evaluationRequest, what);
    const serverKey = publicKeyField(unverified['serverKey'], what);
    const p = await verifyStatement(request as string, TOKEN_TYPES.evaluationRequest, serverKey, what);
    const nonce = stringField(p, 'nonce', what);
    const createdAt = timeField(p, 'createdAt', what);
    const binding = bindingField(p['fingerprint'], what);
    const now = this.clock.now();
    checkRequestTime(createdAt, now, via, what);
    const terms = await readProductTerms(String(p['product'] ?? '')).catch((err: unknown) => {
      throw new FloatdError('ACTIVATION_FILE_INVALID', `${what} carries no valid product file: ${(err as Error).message}`);
    });
    const ours = await thumbprint(publicPart(this.privateJwk));
    if (terms.vendorKid !== ours) throw new FloatdError('ACTIVATION_FOREIGN', `${what} is for the product file of vendor key ${terms.vendorKid}; this activation service signs with ${ours}`);
    const problem = hostBindingProblem(Object.keys(binding).filter((c) => c !== 'host-identity' && c !== 'filesystem-uuid'));
    if (problem !== null) throw new FloatdError('ACTIVATION_HOST_UNBOUND', `the request's binding cannot identify a host: ${problem.replace(/can be read/, 'are in it')}`);
    const products = [...terms.products].sort().join(',');
    const serverKid = await thumbprint(serverKey);
    const decision = this.store.transaction(() => {
      if (!this.store.useNonce(nonce, 'evaluation', null, now)) {
        throw new FloatdError('ACTIVATION_REPLAYED', 'this evaluation registration request was already answered; write a new request (floatd activate --evaluation --offline-request FILE)');
      }
      const same = this.store.evaluations(products).find((e) => matchBinding(e.binding, binding).ok);
      if (same !== undefined) {
        this.store.evaluationSeen(same.id, serverKid, now);
        return { id: same.id, startedAt: same.startedAt, endsAt: same.endsAt, created: false };
      }
      const e = { id: randomUUID(), products, serverKid, binding, via, remote, startedAt: now, endsAt: now + terms.evaluation.days * DAY_MS, lastSeenAt: now };
      this.store.insertEvaluation(e);
      return { id: e.id, startedAt: e.startedAt, endsAt: e.endsAt, created: true };
    });
    const evaluation = await signStatement(this.privateJwk, TOKEN_TYPES.evaluation, {
      jti: decision.id,
      products: terms.products,
      server: serverKid,
      fingerprint: binding,
      nonce,
      startedAt: decision.startedAt,
      endsAt: decision.endsAt,
      iat: now,
    });
    return { evaluation, evaluationId: decision.id, products: terms.products, startedAt: decision.startedAt, endsAt: decision.endsAt, created: decision.created };
  }
}

/** The signed request inside an offline evaluation request file, its readable fields checked against it (vendor side). */
export async function evaluationRequestOfFile(file: Record<string, unknown>): Promise<string> {
  const what = 'the evaluation request file';
  const { payload } = readStatement(file['request'], TOKEN_TYPES.evaluationRequest, what);
  checkReadableFields(file, { ...payload, createdAt: typeof payload['createdAt'] === 'number' ? new Date(payload['createdAt']).toISOString() : payload['createdAt'] }, ['products', 'fingerprint', 'createdAt'], what);
  const signedBy = await thumbprint(publicKeyField(payload['serverKey'], what));
  if (file['serverKeyFingerprint'] !== signedBy) throw new FloatdError('ACTIVATION_FILE_INVALID', `${what}: field "serverKeyFingerprint" is not the fingerprint of the server key that signed the request: the file was altered`);
  return file['request'] as string;
}

/** The response file the vendor writes for an offline evaluation request. */
export function evaluationResponseFile(g: EvaluationGranted, issuedAt: number): string {
  return `${JSON.stringify(
    {
      floatd: 'evaluation-response',
      about: `The registered evaluation of ${g.products.join(', ')} on the host that wrote the request. Install it there: floatd activate --evaluation --offline-response FILE`,
      evaluationId: g.evaluationId,
      startedAt: new Date(g.startedAt).toISOString(),
      endsAt: new Date(g.endsAt).toISOString(),
      issuedAt: new Date(issuedAt).toISOString(),
      newEvaluation: g.created,
      evaluation: g.evaluation,
    },
    null,
    2,
  )}\n`;
}
