import type { Clock } from '../domain/clock.js';
import { FloatdError } from '../domain/errors.js';
import { assertLicenseUsable, type LicenseKey } from '../domain/license.js';
import type { LeaseStore } from '../domain/ports.js';
import { verifyLicenseKey, type TrustedVendorKey } from '../adapters/crypto/license-keys.js';

export const EVALUATION_STARTED_META = 'evaluation.startedAt';

export interface LoadedLicenses {
  readonly keys: LicenseKey[];
  /** Stored keys that no longer verify (tampered database, vendor key removed from config). */
  readonly rejected: Array<{ id: string; error: FloatdError }>;
}

/** Installs, removes and re-verifies the license keys kept in the store. */
export class Licensing {
  constructor(
    private readonly store: LeaseStore,
    private readonly clock: Clock,
    private readonly trusted: readonly TrustedVendorKey[],
    private readonly products: readonly string[],
  ) {}

  /** Verifies a key fully: form, vendor, signature, claims, dates and product. */
  async verify(token: string): Promise<LicenseKey> {
    const key = await verifyLicenseKey(token, this.trusted);
    this.checkProduct(key);
    assertLicenseUsable(key, this.clock.now());
    return key;
  }

  private checkProduct(key: LicenseKey): void {
    if (this.products.length > 0 && !this.products.includes(key.product)) {
      throw new FloatdError(
        'LICENSE_KEY_BAD_CLAIMS',
        `license key ${key.id} is for product "${key.product}", which this server does not serve (products: ${this.products.join(', ')})`,
        { field: 'product' },
      );
    }
  }

  async add(token: string): Promise<LicenseKey> {
    const key = await this.verify(token);
    if (this.store.listLicenses().some((l) => l.id === key.id)) {
      throw new FloatdError('LICENSE_KEY_DUPLICATE', `license key ${key.id} is already installed`);
    }
    const now = this.clock.now();
    this.store.addLicense(
      { id: key.id, token: token.trim(), addedAt: now },
      {
        ts: now,
        event: 'key-added',
        poolId: key.id,
        product: key.product,
        seatsTotal: key.seats,
        message: `license key ${key.id} for ${key.licensee}: ${key.seats} seat(s) of ${key.product}${key.expiresAt ? `, expires ${new Date(key.expiresAt).toISOString()}` : ''}`,
      },
    );
    return key;
  }

  remove(id: string): void {
    const stored = this.store.listLicenses().find((l) => l.id === id);
    if (stored === undefined) throw new FloatdError('LICENSE_KEY_NOT_FOUND', `no installed license key has id ${id}`);
    this.store.removeLicense(id, { ts: this.clock.now(), event: 'key-removed', poolId: id, message: `license key ${id} removed` });
  }

  /**
   * Re-verifies every stored key. Keys past their dates stay (so clients are
   * told LICENSE_EXPIRED, not UNKNOWN_PRODUCT); keys that fail verification
   * are left out and reported.
   */
  async load(): Promise<LoadedLicenses> {
    const keys: LicenseKey[] = [];
    const rejected: LoadedLicenses['rejected'] = [];
    for (const entry of await this.inspect()) {
      if (entry.key !== null) keys.push(entry.key);
      else rejected.push({ id: entry.id, error: entry.error! });
    }
    return { keys, rejected };
  }

  /** Every stored key with its verified content or the reason it is rejected. */
  async inspect(): Promise<Array<{ id: string; addedAt: number; key: LicenseKey | null; error: FloatdError | null }>> {
    const out = [];
    for (const stored of this.store.listLicenses()) {
      try {
        const key = await verifyLicenseKey(stored.token, this.trusted);
        this.checkProduct(key);
        out.push({ id: stored.id, addedAt: stored.addedAt, key, error: null });
      } catch (err) {
        const error = err instanceof FloatdError ? err : new FloatdError('INTERNAL', (err as Error).message);
        out.push({ id: stored.id, addedAt: stored.addedAt, key: null, error });
      }
    }
    return out;
  }

  /** When evaluation started; set (and logged) at the first start. */
  evaluationStartedAt(inEvaluation: boolean): number {
    const now = this.clock.now();
    const stored = this.store.initMeta(EVALUATION_STARTED_META, String(now));
    if (inEvaluation && this.store.getMeta(`${EVALUATION_STARTED_META}.logged`) === undefined) {
      this.store.setMeta(`${EVALUATION_STARTED_META}.logged`, String(now));
      this.store.appendEvent({ ts: now, event: 'evaluation-started', message: `evaluation period counted from ${new Date(Number(stored)).toISOString()}` });
    }
    return Number(stored);
  }
}
