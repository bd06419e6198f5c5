import type { ActivationState } from '../domain/activation.js';
import { deny, type Denial } from '../domain/errors.js';
import type { LicenseKey } from '../domain/license.js';
import { EVALUATION_POOL_ID, evaluationPool, poolFromLicense, poolIsValid, poolServes, type Pool } from '../domain/pool.js';

export const EVALUATION_PRODUCT = 'evaluation';
/** How far the clock may read before the latest time seen before it counts as set back. */
export const CLOCK_SET_BACK_TOLERANCE_MS = 5 * 60_000;

export interface PoolSelection {
  readonly ok: true;
  readonly product: string;
  /** Pools that may grant now, the one expiring last first. */
  readonly pools: readonly Pool[];
}

export interface EvaluationTerms {
  readonly seats: number;
  readonly periodMs: number;
  readonly startedAt: number;
  /** Why evaluation ended for good (vendor terms: a key was installed), or null. */
  readonly closed?: string | null;
  /** Why evaluation grants nothing yet (the product file asks for it to be registered with the vendor), or null. */
  readonly unregistered?: string | null;
  /** Where the product file asks for registration: the vendor's evaluation id once registered. */
  readonly registration?: { readonly id: string | null } | null;
}

/** The pools the server grants from: one per valid license key, or the evaluation pool. */
export class PoolRegistry {
  private pools: Pool[] = [];
  private keys: LicenseKey[] = [];
  private evaluation: Pool | null = null;
  private terms: EvaluationTerms | null = null;
  private ignored: ReadonlyArray<{ id: string; code: string }> = [];
  private activation: ReadonlyMap<string, ActivationState> = new Map();
  private timeFloor = 0;

  /**
   * Replaces the pools. Evaluation runs while no usable key has started: keys
   * that fail verification change nothing, and a key waiting for its
   * not-before date leaves evaluation running until that date (or until the
   * evaluation period ends, when the pending key's pool says when it starts).
   */
  set(keys: readonly LicenseKey[], evaluation: EvaluationTerms | null, now: number, ignored: ReadonlyArray<{ id: string; code: string }> = []): void {
    this.keys = [...keys];
    this.terms = evaluation;
    this.ignored = ignored;
    this.refresh(now);
  }

  /** Re-decides evaluation versus keys at `now` (a key started, evaluation ran out); true when the pools changed. */
  refresh(now: number): boolean {
    const started = this.keys.some((k) => k.notBefore === null || k.notBefore <= now);
    const terms = this.terms;
    // Ended for good (a key was installed): evaluation runs on only beside keys waiting for their start date.
    const evaluation = terms !== null && terms.seats > 0 && (!terms.closed || this.keys.length > 0) ? evaluationPool(terms, terms.startedAt) : null;
    const useEvaluation = !started && evaluation !== null && (this.keys.length === 0 || now < evaluation.expiresAt!);
    const pools = useEvaluation ? [evaluation] : this.keys.map(poolFromLicense);
    const changed = pools.map((p) => p.id).join('\n') !== this.pools.map((p) => p.id).join('\n');
    this.evaluation = useEvaluation ? evaluation : null;
    this.pools = pools;
    return changed;
  }

  /**
   * The latest time this server has seen (its clock's high-water mark): key
   * validity is judged at the later of it and now, so a clock set back does not
   * revive an expired key.
   */
  setTimeFloor(t: number): void {
    this.timeFloor = Math.max(this.timeFloor, t);
  }

  /** The moment key validity is judged at: now, or the high-water mark if the clock was set back before it. */
  judgedAt(now: number): number {
    return Math.max(now, this.timeFloor);
  }

  /** How each key that needs activation stands (checked at start, hourly, and when activations change). */
  setActivation(states: ReadonlyMap<string, ActivationState>): void {
    this.activation = states;
  }

  activationState(keyId: string): ActivationState | undefined {
    return this.activation.get(keyId);
  }

  /**
   * Why a pool grants nothing though its key is valid: its key needs an
   * activation this server does not hold (or no longer matches), else null.
   */
  blocked(poolId: string): string | null {
    if (poolId === EVALUATION_POOL_ID && this.evaluation !== null) return this.terms?.unregistered ?? null;
    const key = this.keys.find((k) => k.id === poolId);
    if (key === undefined || !key.activation) return null;
    const state = this.activation.get(poolId);
    if (state === undefined) return `license key ${poolId} needs activation, which is not checked yet`;
    return state.state === 'active' ? null : state.message;
  }

  /** The seats a pool can grant at `now`: its size while its key is valid and not blocked by activation, else 0. */
  grantableSeats(pool: Pool, now: number): number {
    return poolIsValid(pool, this.judgedAt(now)) && this.blocked(pool.id) === null ? pool.seats : 0;
  }

  /** Why no pool exists, for the denial clients get. */
  private noPoolReason(): string {
    const ignored = this.ignored.map((k) => `${k.id} (${k.code})`).join(', ');
    const keys = ignored === '' ? 'no license key is installed' : `no usable license key is installed (ignored: ${ignored}; see floatd status)`;
    return `${keys} and evaluation is off (evaluation.seats is 0)`;
  }

  /** Why evaluation is over for good (a license key was installed, the evaluation record was altered), or null. */
  evaluationEnded(): string | null {
    return this.terms !== null && this.terms.seats > 0 && this.terms.closed ? this.terms.closed : null;
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

  /** The evaluation's terms as last set (whether or not evaluation grants now). */
  evaluationTerms(): EvaluationTerms | null {
    return this.terms;
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
      const ended = this.evaluationEnded();
      if (ended !== null) {
        const ignored = this.ignored.map((k) => `${k.id} (${k.code})`).join(', ');
        return deny('EVALUATION_ENDED', `evaluation has ended for good (${ended}) and ${ignored === '' ? 'no license key is installed' : `no usable license key is installed (ignored: ${ignored}; see floatd status)`}: install a license key`);
      }
      return deny('NO_LICENSE', this.noPoolReason(), { retryAfterMs: 60_000 });
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
    const judged = this.judgedAt(now);
    if (serving[0]!.kind === 'evaluation' && now < this.timeFloor - CLOCK_SET_BACK_TOLERANCE_MS) {
      // Evaluation is counted in wall-clock time: it grants nothing while the clock reads before what it has seen.
      return deny(
        'CLOCK_SET_BACK',
        `the server's clock reads ${new Date(now).toISOString()}, before the latest time it has seen (${new Date(this.timeFloor).toISOString()}): it was set back, and evaluation grants no seats until the clock is right (NTP)`,
        { retryAfterMs: 60_000 },
      );
    }
    const valid = serving.filter((p) => poolIsValid(p, judged));
    if (valid.length === 0) {
      const first = serving[0]!;
      now = judged;
      if (first.kind === 'evaluation') {
        return deny('EVALUATION_ENDED', `the evaluation period ended at ${new Date(first.expiresAt!).toISOString()}; install a license key`);
      }
      const future = serving.find((p) => p.notBefore !== null && now < p.notBefore);
      if (future !== undefined) {
        return deny('LICENSE_KEY_NOT_YET_VALID', `the license key for "${name}" is not valid before ${new Date(future.notBefore!).toISOString()}`, {
          retryAfterMs: Math.min(future.notBefore! - now, 3_600_000),
        });
      }
      return deny('LICENSE_EXPIRED', `the license key for "${name}" expired at ${new Date(first.expiresAt!).toISOString()}`);
    }
    const granting = valid.filter((p) => this.blocked(p.id) === null);
    if (granting.length === 0) {
      return deny('NOT_ACTIVATED', `no seats of "${name}" can be granted: ${this.blocked(valid[0]!.id)!}`, { retryAfterMs: 60_000 });
    }
    granting.sort((a, b) => (b.expiresAt ?? Infinity) - (a.expiresAt ?? Infinity));
    return { ok: true, product: name, pools: granting };
  }
}
