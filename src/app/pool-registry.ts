import { deny, type Denial } from '../domain/errors.js';
import type { LicenseKey } from '../domain/license.js';
import { evaluationPool, poolFromLicense, poolIsValid, poolServes, type Pool } from '../domain/pool.js';

export const EVALUATION_PRODUCT = 'evaluation';

export interface PoolSelection {
  readonly ok: true;
  readonly product: string;
  /** Pools that may grant now, the one expiring last first. */
  readonly pools: readonly Pool[];
}

/** The pools the server grants from: one per valid license key, or the evaluation pool. */
export class PoolRegistry {
  private pools: Pool[] = [];
  private keys: LicenseKey[] = [];
  private evaluation: Pool | null = null;

  /** Replaces the pools: evaluation applies only when no key is installed at all. */
  set(keys: readonly LicenseKey[], evaluation: { seats: number; periodMs: number; startedAt: number } | null): void {
    this.keys = [...keys];
    this.evaluation = keys.length === 0 && evaluation !== null && evaluation.seats > 0
      ? evaluationPool(evaluation, evaluation.startedAt)
      : null;
    this.pools = this.evaluation !== null ? [this.evaluation] : this.keys.map(poolFromLicense);
  }

  all(): readonly Pool[] {
    return this.pools;
  }

  licenseKeys(): readonly LicenseKey[] {
    return this.keys;
  }

  evaluationPool(): Pool | null {
    return this.evaluation;
  }

  get(id: string): Pool | undefined {
    return this.pools.find((p) => p.id === id);
  }

  products(): string[] {
    return [...new Set(this.pools.map((p) => (p.product === '*' ? EVALUATION_PRODUCT : p.product)))];
  }

  /** Which pools may serve `product` (or the only product, when omitted) at `now`. */
  select(product: string | undefined, now: number): PoolSelection | Denial {
    if (this.pools.length === 0) {
      return deny('NO_FREE_SEATS', 'this server has no license key installed and evaluation is off', { retryAfterMs: 60_000 });
    }
    let name = product;
    if (name === undefined || name === '') {
      const products = this.products();
      if (products.length !== 1) {
        return deny('PRODUCT_REQUIRED', `this server serves several products (${products.join(', ')}); say which one`);
      }
      name = products[0]!;
    }
    const serving = this.pools.filter((p) => poolServes(p, name));
    if (serving.length === 0) {
      return deny('UNKNOWN_PRODUCT', `no license key for product "${name}" is installed (products: ${this.products().join(', ')})`);
    }
    const valid = serving.filter((p) => poolIsValid(p, now));
    if (valid.length === 0) {
      const first = serving[0]!;
      if (first.kind === 'evaluation') {
        return deny('EVALUATION_EXPIRED', `the evaluation period ended at ${new Date(first.expiresAt!).toISOString()}; install a license key`);
      }
      const future = serving.find((p) => p.notBefore !== null && now < p.notBefore);
      if (future !== undefined) {
        return deny('LICENSE_KEY_NOT_YET_VALID', `the license key for "${name}" is not valid before ${new Date(future.notBefore!).toISOString()}`, {
          retryAfterMs: Math.min(future.notBefore! - now, 3_600_000),
        });
      }
      return deny('LICENSE_EXPIRED', `the license key for "${name}" expired at ${new Date(first.expiresAt!).toISOString()}`);
    }
    valid.sort((a, b) => (b.expiresAt ?? Infinity) - (a.expiresAt ?? Infinity));
    return { ok: true, product: name, pools: valid };
  }
}
