import { randomBytes } from 'node:crypto';
import type { ActivationSettings } from '../config/config.js';
import { bindable, hostBindingProblem, matchBinding, type ActivationState, type Fingerprint, type HostComponent } from '../domain/activation.js';
import type { Clock } from '../domain/clock.js';
import { FloatdError } from '../domain/errors.js';
import type { LicenseKey } from '../domain/license.js';
import type { ActivationStore, LeaseStore, StoredActivation } from '../domain/ports.js';
import { readStatement, signStatement, TOKEN_TYPES, verifyActivation } from '../adapters/crypto/activation-tokens.js';
import { publicPart, type KeyPairJwk } from '../adapters/crypto/keys.js';
import type { TrustedVendorKey } from '../adapters/crypto/license-keys.js';
import { ensureHostIdentity, hostFingerprint } from '../adapters/host/fingerprint.js';
import { postToVendor } from '../adapters/net/vendor-http.js';
import { parseFile } from '../adapters/crypto/activation-files.js';

const DAY_MS = 86_400_000;
/** An offline request not answered within this long is stale. */
export const REQUEST_MAX_AGE_MS = 30 * DAY_MS;

export interface ActivationDeps {
  readonly store: LeaseStore & ActivationStore;
  readonly clock: Clock;
  readonly serverKey: KeyPairJwk;
  readonly serverKid: string;
  readonly trusted: readonly TrustedVendorKey[];
  readonly hostRoot: string;
  readonly dataDir: string;
  readonly settings: ActivationSettings;
  /** Extra CA certificates for the vendor's TLS certificate. */
  readonly ca?: string | Buffer;
}

export interface ActivationOutcome {
  readonly keyId: string;
  readonly activationId: string;
  /** Host components that no longer match the binding but were tolerated. */
  readonly changed: readonly HostComponent[];
}

function nonce(): string {
  return randomBytes(18).toString('base64url');
}

function serviceUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}${path}`;
}

/**
 * The server's side of activation: fingerprints, online and offline
 * activation and deactivation, re-validation, and the state of each key's
 * activation against this host and server key.
 */
export class ServerActivation {
  constructor(private readonly deps: ActivationDeps) {}

  fingerprint(vendorKid: string): Fingerprint {
    return hostFingerprint(this.deps.hostRoot, this.deps.dataDir, vendorKid);
  }

  /** The components a key is bound with on this host; makes DATA/host-identity when container binding is needed and allowed. */
  private binding(key: LicenseKey): { binding: Partial<Record<HostComponent, string>>; container: boolean; fp: Fingerprint } {
    const terms = requireTerms(key);
    let fp = this.fingerprint(key.vendorKid!);
    if (hostBindingProblem(Object.keys(fp.components)) !== null && terms.containerBinding) {
      ensureHostIdentity(this.deps.dataDir);
      fp = this.fingerprint(key.vendorKid!);
    }
    const binding = bindable(fp, terms.containerBinding);
    return { binding, container: binding['host-identity'] !== undefined, fp };
  }

  private async signedRequest(key: LicenseKey, n: string, createdAt: number) {
    const { binding, container, fp } = this.binding(key);
    const payload = {
      key: key.id,
      product: key.product,
      licensee: key.licensee,
      serverKey: publicPart(this.deps.serverKey.publicJwk),
      fingerprint: binding,
      container,
      nonce: n,
      createdAt,
    };
    return { token: await signStatement(this.deps.serverKey.privateJwk, TOKEN_TYPES.request, payload), payload, fp };
  }

  /** Checks what the vendor returned and stores it. */
  private async install(key: LicenseKey, token: string, expectNonce: string, source: 'online' | 'offline', url: string | null, consumeNonce: string | null): Promise<ActivationOutcome> {
    const what = source === 'online' ? "the vendor's activation" : 'the activation response';
    const a = await verifyActivation(token, this.deps.trusted, what);
    if (a.keyId !== key.id) throw new FloatdError('ACTIVATION_FOREIGN', `${what} is for license key ${a.keyId}, not ${key.id}`);
    if (a.serverKid !== this.deps.serverKid) {
      throw new FloatdError('ACTIVATION_FOREIGN', `${what} was made for server key ${a.serverKid}, not this server's key ${this.deps.serverKid}: it answers another server's request`);
    }
    if (a.nonce !== expectNonce) throw new FloatdError('ACTIVATION_FOREIGN', `${what} answers another request than the one sent`);
    const current = this.fingerprint(key.vendorKid!).components;
    const match = matchBinding(a.binding, current);
    if (!match.ok) {
      throw new FloatdError('ACTIVATION_FOREIGN', `${what} is bound to another host: ${match.changed.join(', ')} differ from this host's`, { changed: match.changed });
    }
    const now = this.deps.clock.now();
    const stored: StoredActivation = { keyId: key.id, activationId: a.id, token, source, url, activatedAt: now, validatedAt: now };
    const ok = await this.deps.store.putActivation(stored, consumeNonce, {
      ts: now,
      event: 'activated',
      poolId: key.id,
      product: key.product,
      message: `license key ${key.id} activated ${source} (activation ${a.id})${match.changed.length > 0 ? `; changed, tolerated: ${match.changed.join(', ')}` : ''}`,
    });
    if (!ok) throw new FloatdError('ACTIVATION_REPLAYED', `${what} was already installed`);
    return { keyId: key.id, activationId: a.id, changed: match.changed };
  }

  /** Activates a key with the vendor's service (through a proxy when one is set); idempotent on the same host. */
  async activateOnline(key: LicenseKey, proxy: string | null = this.deps.settings.proxy): Promise<ActivationOutcome & { created: boolean }> {
    const terms = requireTerms(key);
    if (terms.url === null) {
      throw new FloatdError('USAGE', `license key ${key.id} names no activation URL: activate it offline (floatd activate ${key.id} --offline-request FILE)`);
    }
    const n = nonce();
    const { token } = await this.signedRequest(key, n, this.deps.clock.now());
    const res = await postToVendor(serviceUrl(terms.url, '/v1/activations'), { request: token }, { proxy, noProxy: this.deps.settings.noProxy, ca: this.deps.ca, offline: `floatd activate ${key.id} --offline-request FILE` });
    const body = res.body as { activation?: unknown; created?: unknown };
    if (typeof body.activation !== 'string') throw new FloatdError('ACTIVATION_SERVICE_ERROR', `the activation service at ${terms.url} answered without an activation`);
    const outcome = await this.install(key, body.activation, n, 'online', terms.url, null);
    return { ...outcome, created: body.created === true };
  }

  /** Writes an offline activation request (readable JSON, signed by the server key) and remembers it. */
  async offlineRequest(key: LicenseKey): Promise<string> {
    const n = nonce();
    const now = this.deps.clock.now();
    const { token, payload, fp } = await this.signedRequest(key, n, now);
    await this.deps.store.addActivationRequest(n, key.id, 'activation', now);
    return `${JSON.stringify(
      {
        floatd: 'activation-request',
        about: `Send this file to the vendor of ${key.product}. It names license key ${key.id} and this server: its public key and hashes of host components (no raw machine ids). The vendor answers it with a response file for: floatd activate --offline-response FILE`,
        key: key.id,
        product: key.product,
        licensee: key.licensee,
        createdAt: new Date(now).toISOString(),
        fingerprint: payload.fingerprint,
        container: payload.container,
        unreadable: fp.unreadable,
        serverKeyFingerprint: this.deps.serverKid,
        request: token,
      },
      null,
      2,
    )}\n`;
  }

  /** Installs the vendor's response to an offline request this server wrote. */
  async installResponse(text: string, keys: readonly LicenseKey[]): Promise<ActivationOutcome> {
    const what = 'the activation response';
    const file = parseFile(text, 'activation-response', what);
    const token = file['activation'];
    const { payload } = readStatement(token, TOKEN_TYPES.activation, what);
    if (file['key'] !== payload['key'] || file['activationId'] !== payload['jti']) {
      throw new FloatdError('ACTIVATION_FILE_INVALID', `${what}: its readable fields differ from the signed activation: the file was altered`);
    }
    const a = await verifyActivation(token as string, this.deps.trusted, what);
    const key = keys.find((k) => k.id === a.keyId);
    if (key === undefined) throw new FloatdError('LICENSE_KEY_NOT_FOUND', `${what} is for license key ${a.keyId}, which is not installed here (floatd license add it first)`);
    requireTerms(key);
    const request = await this.deps.store.findActivationRequest(a.nonce);
    if (request === undefined || request.kind !== 'activation' || request.keyId !== key.id) {
      if (a.serverKid !== this.deps.serverKid) {
        throw new FloatdError('ACTIVATION_FOREIGN', `${what} was made for server key ${a.serverKid}, not this server's key ${this.deps.serverKid}: it answers another server's request`);
      }
      throw new FloatdError('ACTIVATION_FOREIGN', `${what} answers a request this server did not write`);
    }
    if (request.consumedAt !== null) {
      throw new FloatdError('ACTIVATION_REPLAYED', `${what} was already installed at ${new Date(request.consumedAt).toISOString()}; a response is installed once`);
    }
    const now = this.deps.clock.now();
    if (now - request.createdAt > REQUEST_MAX_AGE_MS) {
      throw new FloatdError('ACTIVATION_STALE', `${what} answers a request written ${new Date(request.createdAt).toISOString()}, more than 30 days ago; write a new request`);
    }
    return this.install(key, token as string, a.nonce, 'offline', null, a.nonce);
  }

  private async proof(key: LicenseKey, stored: StoredActivation, n: string, now: number): Promise<string> {
    return signStatement(this.deps.serverKey.privateJwk, TOKEN_TYPES.deactivation, { key: key.id, activation: stored.activationId, server: this.deps.serverKid, nonce: n, createdAt: now });
  }

  private async stored(keyId: string): Promise<StoredActivation> {
    const stored = await this.deps.store.getActivation(keyId);
    if (stored === undefined) throw new FloatdError('ACTIVATION_NOT_FOUND', `license key ${keyId} is not activated on this server`);
    return stored;
  }

  private async removeLocal(key: LicenseKey, stored: StoredActivation, how: string): Promise<void> {
    const now = this.deps.clock.now();
    await this.deps.store.removeActivation(key.id, { ts: now, event: 'deactivated', poolId: key.id, product: key.product, message: `license key ${key.id} deactivated ${how} (activation ${stored.activationId})` });
  }

  /** Frees the key's slot at the vendor, then stops granting from it here. */
  async deactivateOnline(key: LicenseKey, proxy: string | null = this.deps.settings.proxy): Promise<{ activationId: string; receipt: string | null }> {
    const stored = await this.stored(key.id);
    const url = stored.url ?? key.activation?.url ?? null;
    if (url === null) throw new FloatdError('USAGE', `license key ${key.id} names no activation URL: deactivate it offline (floatd deactivate ${key.id} --offline-request FILE)`);
    const now = this.deps.clock.now();
    let receipt: string | null = null;
    try {
      const res = await postToVendor(serviceUrl(url, '/v1/deactivations'), { proof: await this.proof(key, stored, nonce(), now) }, { proxy, noProxy: this.deps.settings.noProxy, ca: this.deps.ca, offline: `floatd deactivate ${key.id} --offline-request FILE` });
      receipt = typeof (res.body as { receipt?: unknown }).receipt === 'string' ? (res.body as { receipt: string }).receipt : null;
    } catch (err) {
      // Already free at the vendor: nothing is left to free there.
      if (!(err instanceof FloatdError && (err.code === 'ACTIVATION_REPLAYED' || err.code === 'ACTIVATION_RELEASED'))) throw err;
    }
    await this.removeLocal(key, stored, 'online');
    return { activationId: stored.activationId, receipt };
  }

  /** Stops granting from the key here and writes the signed proof the vendor frees the slot with. */
  async deactivateOffline(key: LicenseKey): Promise<string> {
    const stored = await this.stored(key.id);
    const n = nonce();
    const now = this.deps.clock.now();
    const proof = await this.proof(key, stored, n, now);
    await this.deps.store.addActivationRequest(n, key.id, 'deactivation', now);
    await this.removeLocal(key, stored, 'offline');
    return `${JSON.stringify(
      {
        floatd: 'deactivation-proof',
        about: `Proof that this server no longer uses license key ${key.id} (activation ${stored.activationId}). Send it to the vendor, who frees the activation with: floatd-vendor activation release --data-dir VDIR FILE`,
        key: key.id,
        activation: stored.activationId,
        createdAt: new Date(now).toISOString(),
        serverKeyFingerprint: this.deps.serverKid,
        proof,
      },
      null,
      2,
    )}\n`;
  }

  /** How each key that needs activation stands now. */
  async evaluate(keys: readonly LicenseKey[], now: number): Promise<Map<string, ActivationState>> {
    const out = new Map<string, ActivationState>();
    const fingerprints = new Map<string, Fingerprint>();
    const { revalidateDays, graceDays } = this.deps.settings;
    for (const key of keys) {
      if (!key.activation) continue;
      const stored = await this.deps.store.getActivation(key.id);
      if (stored === undefined) {
        const how = `floatd activate ${key.id}${key.activation.url === null ? ' --offline-request FILE' : ' (or --offline-request FILE without network)'}`;
        const [last] = await this.deps.store.queryEvents({ pool: key.id, events: ['activated', 'deactivated'], limit: 1 });
        if (last?.event === 'deactivated') {
          out.set(key.id, { state: 'deactivated', message: `license key ${key.id} was deactivated on this server at ${new Date(last.ts).toISOString()}; it grants nothing here until activated again: run ${how}` });
        } else {
          out.set(key.id, { state: 'not-activated', message: `license key ${key.id} needs activation: run ${how}` });
        }
        continue;
      }
      let a;
      try {
        a = await verifyActivation(stored.token, this.deps.trusted);
      } catch (err) {
        out.set(key.id, { state: 'invalid', message: `the activation of license key ${key.id} is not valid: ${(err as Error).message}; activate again` });
        continue;
      }
      if (a.keyId !== key.id || a.serverKid !== this.deps.serverKid) {
        out.set(key.id, { state: 'invalid', message: `the activation of license key ${key.id} names server key ${a.serverKid}, not this server's key ${this.deps.serverKid}: the server key changed; activate again` });
        continue;
      }
      const fp = fingerprints.get(key.vendorKid!) ?? this.fingerprint(key.vendorKid!);
      fingerprints.set(key.vendorKid!, fp);
      const match = matchBinding(a.binding, fp.components);
      if (!match.ok) {
        out.set(key.id, {
          state: 'hardware-changed',
          message: `hardware changed: ${match.changed.join(', ')} no longer match the host license key ${key.id} was activated on (${match.matched.length} of ${match.needed} needed still match); deactivate it where it was and activate it here`,
          changed: match.changed,
        });
        continue;
      }
      if (stored.source === 'online') {
        const due = stored.validatedAt + revalidateDays * DAY_MS;
        const overdue = due + graceDays * DAY_MS;
        if (now >= overdue) {
          out.set(key.id, {
            state: 'revalidation-overdue',
            message: `the vendor has not confirmed the activation of license key ${key.id} since ${new Date(stored.validatedAt).toISOString()} (re-validation every ${revalidateDays} day(s), grace ${graceDays} day(s) ended ${new Date(overdue).toISOString()}); let the server reach ${stored.url ?? 'the activation service'}, or activate offline`,
          });
          continue;
        }
        out.set(key.id, { state: 'active', changed: match.changed, graceUntil: now >= due ? overdue : null });
        continue;
      }
      out.set(key.id, { state: 'active', changed: match.changed, graceUntil: null });
    }
    return out;
  }

  /** Online activations due for re-validation at `now`. */
  async due(now: number): Promise<StoredActivation[]> {
    return (await this.deps.store.listActivations()).filter((a) => a.source === 'online' && a.url !== null && now >= a.validatedAt + this.deps.settings.revalidateDays * DAY_MS);
  }

  /**
   * Asks the vendor to confirm an activation. A fresh activation updates it;
   * the vendor saying it was released removes it; an unreachable vendor
   * leaves it, to run out its grace.
   */
  async revalidate(key: LicenseKey, stored: StoredActivation): Promise<'confirmed' | 'released' | { failed: FloatdError }> {
    const now = this.deps.clock.now();
    const n = nonce();
    const token = await signStatement(this.deps.serverKey.privateJwk, TOKEN_TYPES.revalidation, { key: key.id, activation: stored.activationId, nonce: n, createdAt: now });
    try {
      const res = await postToVendor(serviceUrl(stored.url!, '/v1/revalidations'), { request: token }, { proxy: this.deps.settings.proxy, noProxy: this.deps.settings.noProxy, ca: this.deps.ca, timeoutMs: 20_000 });
      const fresh = (res.body as { activation?: unknown }).activation;
      if (typeof fresh !== 'string') throw new FloatdError('ACTIVATION_SERVICE_ERROR', 'the activation service answered a re-validation without an activation');
      const a = await verifyActivation(fresh, this.deps.trusted);
      if (a.id !== stored.activationId || a.serverKid !== this.deps.serverKid || a.nonce !== n) throw new FloatdError('ACTIVATION_SERVICE_ERROR', 'the activation service answered a re-validation with another activation');
      await this.deps.store.revalidated(key.id, fresh, this.deps.clock.now());
      await this.deps.store.appendEvent({ ts: this.deps.clock.now(), event: 'activation-revalidated', poolId: key.id, product: key.product, message: `the vendor confirmed activation ${a.id} of license key ${key.id}` });
      return 'confirmed';
    } catch (err) {
      const e = err instanceof FloatdError ? err : new FloatdError('ACTIVATION_SERVICE_ERROR', (err as Error).message);
      if (e.code === 'ACTIVATION_RELEASED' || e.code === 'ACTIVATION_NOT_FOUND') {
        await this.deps.store.removeActivation(key.id, { ts: this.deps.clock.now(), event: 'deactivated', poolId: key.id, product: key.product, code: e.code, message: `the vendor no longer knows activation ${stored.activationId} of license key ${key.id}: ${e.message}` });
        return 'released';
      }
      await this.deps.store.appendEvent({ ts: this.deps.clock.now(), event: 'activation-failed', poolId: key.id, product: key.product, code: e.code, message: `re-validation of license key ${key.id} failed: ${e.message}` });
      return { failed: e };
    }
  }
}

function requireTerms(key: LicenseKey) {
  if (!key.activation) throw new FloatdError('ACTIVATION_NOT_REQUIRED', `license key ${key.id} does not need activation: it grants on any server it is installed on`);
  return key.activation;
}

