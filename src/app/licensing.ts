import type { Clock } from '../domain/clock.js';
import { FloatdError } from '../domain/errors.js';
import { licenseValidity, type LicenseKey } from '../domain/license.js';
import type { LeaseStore } from '../domain/ports.js';
import { verifyLicenseKey, type TrustedVendorKey } from '../adapters/crypto/license-keys.js';
import type { PoolRegistry } from './pool-registry.js';
import { clockHighWater, EVALUATION_CLOSED_META, EVALUATION_STARTED_META, type EvaluationKeeper } from './evaluation.js';

export { CLOCK_HIGH_WATER_META, clockHighWater, EVALUATION_CLOSED_META, EVALUATION_STARTED_META } from './evaluation.js';
const DAY_MS = 86_400_000;

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
    /** The evaluation record outside the data directory, where one is kept: a key installed is noted there too. */
    private readonly evaluation: EvaluationKeeper | null = null,
  ) {}

  /**
   * Verifies a key for installing: form, vendor, signature, claims and product.
   * An expired key is refused; one whose not-before date is still ahead is
   * accepted as pending (a renewal bought before the old key runs out).
   */
  async verify(token: string): Promise<LicenseKey> {
    const key = await verifyLicenseKey(token, this.trusted).catch((err: unknown) => {
      throw err instanceof FloatdError && err.code === 'NO_VENDOR_KEYS' ? noVendorKeys() : err;
    });
    this.checkProduct(key);
    const validity = licenseValidity(key, Math.max(this.clock.now(), await clockHighWater(this.store)));
    if (validity.state === 'expired') throw new FloatdError('LICENSE_KEY_EXPIRED', validity.message);
    return key;
  }

  private checkProduct(key: LicenseKey): void {
    if (key.evaluationExtension) return;
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
    if ((await this.store.listLicenses()).some((l) => l.id === key.id)) {
      throw new FloatdError('LICENSE_KEY_DUPLICATE', `license key ${key.id} is already installed`);
    }
    const now = this.clock.now();
    // Once a license key was installed, evaluation never comes back, even when the key is removed.
    const closes = !key.evaluationExtension && (await this.store.getMeta(EVALUATION_CLOSED_META)) === undefined;
    if (closes) await this.store.setMeta(EVALUATION_CLOSED_META, `license key ${key.id} was installed at ${new Date(now).toISOString()}`);
    await this.store.addLicense(
      { id: key.id, token: token.trim(), addedAt: now },
      {
        ts: now,
        event: 'key-added',
        poolId: key.id,
        product: key.product,
        seatsTotal: key.seats,
        // Reports count its seats as grantable only once it is activated (activation-changed).
        ...(key.activation ? { code: 'activation-required' } : {}),
        message: key.evaluationExtension
          ? `evaluation extension ${key.id} for ${key.licensee}: ${key.evaluationExtension.days} more day(s)${key.evaluationExtension.seats !== null ? `, ${key.evaluationExtension.seats} seat(s)` : ''}`
          : `license key ${key.id} for ${key.licensee}: ${key.seats} seat(s) of ${key.product}${key.expiresAt ? `, expires ${new Date(key.expiresAt).toISOString()}` : ''}`,
      },
    );
    // Best effort: the data directory has it; the record outside it keeps it when the data directory is replaced.
    if (closes) await this.evaluation?.save(null, now);
    return key;
  }

  /** Removes a key named by its id or a unique prefix of it, as git takes commit ids; returns the full id. */
  async remove(idOrPrefix: string): Promise<string> {
    const id = resolveId(idOrPrefix, (await this.store.listLicenses()).map((l) => l.id), 'installed license key', 'LICENSE_KEY_NOT_FOUND');
    await this.store.removeLicense(id, { ts: this.clock.now(), event: 'key-removed', poolId: id, message: `license key ${id} removed` });
    return id;
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
    for (const stored of await this.store.listLicenses()) {
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

  /** When evaluation started (the server's first successful start), or null before that. */
  async evaluationStart(): Promise<number | null> {
    const stored = await this.store.getMeta(EVALUATION_STARTED_META);
    return stored === undefined ? null : Number(stored);
  }

  /**
   * Fixes the start of evaluation at the first start that succeeded (so a failed
   * start never starts the clock), and records `evaluation-started` in the lease
   * log the first time evaluation is in use.
   */
  async recordEvaluationStart(inEvaluation: boolean): Promise<number> {
    const now = this.clock.now();
    const stored = Number(await this.store.initMeta(EVALUATION_STARTED_META, String(now)));
    if (inEvaluation && (await this.store.getMeta(`${EVALUATION_STARTED_META}.logged`)) === undefined) {
      await this.store.setMeta(`${EVALUATION_STARTED_META}.logged`, String(now));
      await this.store.appendEvent({ ts: now, event: 'evaluation-started', message: `evaluation period counted from ${new Date(stored).toISOString()}` });
    }
    return stored;
  }

  /**
   * Verifies the stored keys and sets the pools from them and the evaluation
   * terms: the one decision the server, `status` and `license` share.
   */
  async loadPools(
    pools: PoolRegistry,
    evaluation: {
      readonly seats: number;
      readonly days: number;
      readonly ended?: string | null;
      /** The start and end the vendor registered the evaluation with: they replace the local start, and the end is the latest there is. */
      readonly registered?: { readonly id: string; readonly startedAt: number; readonly endsAt: number } | null;
      readonly unregistered?: string | null;
      readonly registrationRequired?: boolean;
    },
  ): Promise<LoadedLicenses> {
    const loaded = await this.load();
    const now = this.clock.now();
    pools.setTimeFloor(await clockHighWater(this.store));
    const registered = evaluation.registered ?? null;
    const startedAt = registered?.startedAt ?? (await this.evaluationStart()) ?? now;
    // Evaluation extension keys add to the evaluation; they grant no seats of their own.
    const extensions = loaded.keys.filter((k) => k.evaluationExtension);
    const seats = Math.max(evaluation.seats, ...extensions.map((k) => k.evaluationExtension!.seats ?? 0));
    const extraMs = extensions.reduce((n, k) => n + k.evaluationExtension!.days, 0) * DAY_MS;
    const periodMs = (registered === null ? evaluation.days * DAY_MS : Math.min(evaluation.days * DAY_MS, registered.endsAt - registered.startedAt)) + extraMs;
    const closed = evaluation.ended ?? (await this.store.getMeta(EVALUATION_CLOSED_META)) ?? null;
    pools.set(
      loaded.keys.filter((k) => !k.evaluationExtension),
      { seats, periodMs, startedAt, closed, unregistered: evaluation.unregistered ?? null, registration: evaluation.registrationRequired === true ? { id: registered?.id ?? null } : null },
      now,
      loaded.rejected.map((r) => ({ id: r.id, code: r.error.code })),
    );
    return loaded;
  }
}

/**
 * Finds the one id that equals `given` or starts with it. No match or several
 * matches are errors that name what was looked for.
 */
export function resolveId(given: string, ids: readonly string[], what: string, notFound: 'LICENSE_KEY_NOT_FOUND' | 'USAGE'): string {
  if (ids.includes(given)) return given;
  const matches = given === '' ? [] : ids.filter((id) => id.startsWith(given));
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) throw new FloatdError(notFound, `no ${what} has id ${given}${ids.length > 0 ? ` (ids: ${ids.join(', ')})` : ''}`);
  throw new FloatdError('USAGE', `"${given}" is the start of ${matches.length} ${what} ids (${matches.join(', ')}); give more of it`);
}

/**
 * What an operator must do when the server trusts no vendor key: the keys
 * it trusts are the ones it was started with (recorded in the data directory,
 * which floatd license reads), so it must be restarted with one.
 */
function noVendorKeys(): FloatdError {
  return new FloatdError(
    'NO_VENDOR_KEYS',
    'this server trusts no vendor public key, so no license key can be checked: restart the server with the public key ' +
      'the vendor gave you (floatd serve --vendor-public-key FILE, or "vendorPublicKeys": ["FILE"] in its config file, or FLOATD_VENDOR_PUBLIC_KEYS=FILE), ' +
      'then run floatd license add again: floatd license judges keys with the vendor keys the server last started with',
  );
}
