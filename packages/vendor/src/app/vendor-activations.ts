import { randomUUID } from 'node:crypto';
import type { JWK } from 'jose';
import { describeSkew, hostBindingProblem, matchBinding, MAX_CLOCK_SKEW_MS, type HostComponent } from '../../../../src/domain/activation.js';
import type { Clock } from '../../../../src/domain/clock.js';
import { FloatdError } from '../../../../src/domain/errors.js';
import { thumbprint } from '../../../../src/adapters/crypto/keys.js';
import {
  bindingField,
  issueActivation,
  publicKeyField,
  readStatement,
  signStatement,
  stringField,
  timeField,
  TOKEN_TYPES,
  verifyStatement,
} from '../../../../src/adapters/crypto/activation-tokens.js';
import type { VendorActivationRecord, VendorStore } from '../store/vendor-store.js';

/** An offline request older than this is stale: the host it describes may have changed since. */
export const OFFLINE_REQUEST_MAX_AGE_MS = 30 * 86_400_000;

export interface Granted {
  readonly activation: string;
  readonly activationId: string;
  readonly keyId: string;
  /** False when the host already held an activation of the key (no second slot was taken). */
  readonly created: boolean;
}

/**
 * The vendor's side of activation: answers activation requests (online and
 * offline), deactivation proofs and re-validations against its database,
 * enforcing each key's activation limit. Every decision is one transaction;
 * the answer is signed after it committed.
 */
export class VendorActivations {
  constructor(
    private readonly store: VendorStore,
    private readonly clock: Clock,
    private readonly privateJwk: JWK,
  ) {}

  /** Answers a server-signed activation request. */
  async activate(request: unknown, via: 'online' | 'offline', remote: string | null): Promise<Granted> {
    const what = via === 'online' ? 'the activation request' : 'the offline activation request';
    const { payload: unverified } = readStatement(request, TOKEN_TYPES.request, what);
    const serverKey = publicKeyField(unverified['serverKey'], what);
    const p = await verifyStatement(request as string, TOKEN_TYPES.request, serverKey, what);
    const keyId = stringField(p, 'key', what);
    const nonce = stringField(p, 'nonce', what);
    const createdAt = timeField(p, 'createdAt', what);
    const binding = bindingField(p['fingerprint'], what);
    const container = p['container'] === true;
    const now = this.clock.now();
    this.checkTime(createdAt, now, via, what);
    const serverKid = await thumbprint(serverKey);
    const decision = this.store.transaction((): { id: string; created: boolean } => {
      const key = this.store.findKey(keyId);
      if (key === undefined) throw new FloatdError('ACTIVATION_UNKNOWN_KEY', `license key ${keyId} is not known to this activation service (was it issued with --data-dir of this service?)`, { key: keyId });
      if (key.activationLimit === null) throw new FloatdError('ACTIVATION_NOT_REQUIRED', `license key ${keyId} does not need activation`, { key: keyId });
      const seen = this.store.nonceUse(nonce);
      if (seen !== undefined) {
        throw new FloatdError('ACTIVATION_REPLAYED', `this request was already answered at ${new Date(seen.seenAt).toISOString()}${seen.activationId ? ` (activation ${seen.activationId})` : ''}; write a new request (floatd activate ${keyId} --offline-request FILE)`, { key: keyId });
      }
      checkBinding(binding, container, key.containerBinding, keyId);
      const active = this.store.activeActivations(keyId);
      const same = active.find((a) => matchBinding(a.binding, binding).ok);
      let id: string;
      let created = false;
      if (same !== undefined) {
        id = same.id;
        this.store.refreshActivation(id, serverKid, JSON.stringify(serverKey), binding, now);
      } else {
        if (active.length >= key.activationLimit) {
          throw new FloatdError(
            'ACTIVATION_LIMIT_REACHED',
            `license key ${keyId} is activated on ${active.length} of ${key.activationLimit} server(s) (${active.map((a) => `${a.id} since ${new Date(a.activatedAt).toISOString()}`).join(', ')}); deactivate one (floatd deactivate ${keyId} on it) or ask the vendor for more activations`,
            { key: keyId, limit: key.activationLimit, active: active.length },
          );
        }
        id = randomUUID();
        created = true;
        this.store.insertActivation({ id, keyId, serverKid, serverKey: JSON.stringify(serverKey), binding, container, via, remote, activatedAt: now, lastSeenAt: now, releasedAt: null, releasedVia: null });
      }
      this.store.useNonce(nonce, 'activation', id, now);
      return { id, created };
    });
    const activation = await issueActivation(this.privateJwk, { id: decision.id, keyId, serverKey, binding, container, nonce, now });
    return { activation, activationId: decision.id, keyId, created: decision.created };
  }

  /** A re-validation from a server holding an activation: a fresh activation, or why not. */
  async revalidate(request: unknown): Promise<Granted> {
    const what = 'the re-validation request';
    const { payload: unverified } = readStatement(request, TOKEN_TYPES.revalidation, what);
    const record = this.activationFor(unverified, what);
    const p = await verifyStatement(request as string, TOKEN_TYPES.revalidation, JSON.parse(record.serverKey) as JWK, what);
    const nonce = stringField(p, 'nonce', what);
    this.checkTime(timeField(p, 'createdAt', what), this.clock.now(), 'online', what);
    const now = this.clock.now();
    this.store.transaction(() => {
      const current = this.store.findActivation(record.id)!;
      if (current.releasedAt !== null) throw released(current);
      if (!this.store.useNonce(nonce, 'revalidation', record.id, now)) throw new FloatdError('ACTIVATION_REPLAYED', `this re-validation request was already answered`);
      this.store.refreshActivation(record.id, record.serverKid, record.serverKey, record.binding, now);
    });
    const activation = await issueActivation(this.privateJwk, { id: record.id, keyId: record.keyId, serverKey: JSON.parse(record.serverKey) as JWK, binding: record.binding, container: record.container, nonce, now });
    return { activation, activationId: record.id, keyId: record.keyId, created: false };
  }

  /** Frees an activation's slot on a deactivation proof the server signed; returns the vendor-signed receipt. */
  async release(proof: unknown, via: 'online' | 'offline'): Promise<{ receipt: string; activationId: string; keyId: string; releasedAt: number }> {
    const what = via === 'online' ? 'the deactivation request' : 'the deactivation proof';
    const { kid, payload: unverified } = readStatement(proof, TOKEN_TYPES.deactivation, what);
    const record = this.activationFor(unverified, what);
    if (kid !== undefined && kid !== record.serverKid) {
      throw new FloatdError('ACTIVATION_FOREIGN', `${what} is signed by server key ${kid}, but activation ${record.id} belongs to server key ${record.serverKid}`);
    }
    const p = await verifyStatement(proof as string, TOKEN_TYPES.deactivation, JSON.parse(record.serverKey) as JWK, what);
    const nonce = stringField(p, 'nonce', what);
    const createdAt = timeField(p, 'createdAt', what);
    const now = this.clock.now();
    if (via === 'online') this.checkTime(createdAt, now, via, what);
    else if (createdAt > now + MAX_CLOCK_SKEW_MS) throw new FloatdError('ACTIVATION_STALE', `${what} is dated ${new Date(createdAt).toISOString()}, in the future`);
    this.store.transaction(() => {
      const current = this.store.findActivation(record.id)!;
      if (current.releasedAt !== null) {
        throw new FloatdError('ACTIVATION_REPLAYED', `activation ${record.id} of key ${record.keyId} was already released at ${new Date(current.releasedAt).toISOString()} (${current.releasedVia})`);
      }
      if (!this.store.useNonce(nonce, 'deactivation', record.id, now)) throw new FloatdError('ACTIVATION_REPLAYED', `${what} was already used`);
      this.store.releaseActivation(record.id, via, now);
    });
    const receipt = await signStatement(this.privateJwk, TOKEN_TYPES.receipt, { activation: record.id, key: record.keyId, server: record.serverKid, nonce, releasedAt: now });
    return { receipt, activationId: record.id, keyId: record.keyId, releasedAt: now };
  }

  list(keyId: string | null): VendorActivationRecord[] {
    return this.store.listActivations(keyId);
  }

  private activationFor(payload: Record<string, unknown>, what: string): VendorActivationRecord {
    const id = stringField(payload, 'activation', what);
    const keyId = stringField(payload, 'key', what);
    const record = this.store.findActivation(id);
    if (record === undefined || record.keyId !== keyId) {
      throw new FloatdError('ACTIVATION_NOT_FOUND', `no activation ${id} of license key ${keyId} is known to this activation service`, { key: keyId });
    }
    return record;
  }

  private checkTime(createdAt: number, now: number, via: 'online' | 'offline', what: string): void {
    checkRequestTime(createdAt, now, via, what);
  }
}

/** Online: the server's clock within 5 minutes of ours. Offline: not older than 30 days, not from the future. */
export function checkRequestTime(createdAt: number, now: number, via: 'online' | 'offline', what: string): void {
  const skew = createdAt - now;
  if (via === 'online' && Math.abs(skew) > MAX_CLOCK_SKEW_MS) {
    throw new FloatdError(
      'ACTIVATION_CLOCK_SKEW',
      `the server's clock is ${describeSkew(skew)} the vendor's (${new Date(now).toISOString()}); at most 5 minutes are allowed: set the clock right (NTP) and try again`,
      { skewMs: skew },
    );
  }
  if (via === 'offline') {
    if (skew > MAX_CLOCK_SKEW_MS) throw new FloatdError('ACTIVATION_STALE', `${what} is dated ${new Date(createdAt).toISOString()}, in the future (the server's clock is ${describeSkew(skew)} the vendor's)`, { skewMs: skew });
    if (-skew > OFFLINE_REQUEST_MAX_AGE_MS) {
      throw new FloatdError('ACTIVATION_STALE', `${what} was written ${new Date(createdAt).toISOString()}, more than 30 days ago; write a new one`);
    }
  }
}

/** The vendor frees an activation itself (a server that is gone for good and cannot deactivate). */
export function releaseByVendor(store: VendorStore, now: number, activationId: string): VendorActivationRecord {
  return store.transaction(() => {
    const record = store.findActivation(activationId);
    if (record === undefined) throw new FloatdError('ACTIVATION_NOT_FOUND', `no activation ${activationId} is recorded here (see floatd-vendor activations list)`);
    if (record.releasedAt !== null) throw released(record);
    store.releaseActivation(activationId, 'vendor', now);
    return store.findActivation(activationId)!;
  });
}

function released(a: VendorActivationRecord): FloatdError {
  return new FloatdError('ACTIVATION_RELEASED', `activation ${a.id} of license key ${a.keyId} was released at ${new Date(a.releasedAt!).toISOString()} (${a.releasedVia}); activate again`, { key: a.keyId });
}

/** The vendor's own check that a binding is one it may accept for the key. */
function checkBinding(binding: Partial<Record<HostComponent, string>>, container: boolean, allowed: boolean, keyId: string): void {
  const host = Object.keys(binding).filter((c) => c !== 'host-identity');
  if (binding['host-identity'] !== undefined || container) {
    if (!allowed) throw new FloatdError('ACTIVATION_HOST_UNBOUND', `license key ${keyId} does not allow container binding; the server must be bound to at least two host components`, { key: keyId });
    if (binding['host-identity'] === undefined) throw new FloatdError('ACTIVATION_FILE_INVALID', 'a container binding must carry the host identity');
    return;
  }
  const problem = hostBindingProblem(host);
  if (problem !== null) throw new FloatdError('ACTIVATION_HOST_UNBOUND', `the request's binding cannot identify a host: ${problem.replace(/can be read/, 'are in it')}`, { key: keyId });
}
