import type { LicenseKey } from './license.js';

/**
 * A pool is the seats of one license key, or the evaluation pool when no key
 * is installed. The evaluation pool serves every product name.
 */
export interface Pool {
  readonly id: string;
  readonly kind: 'license' | 'evaluation';
  /** The product served, or '*' for the evaluation pool. */
  readonly product: string;
  readonly seats: number;
  readonly licensee: string;
  readonly notBefore: number | null;
  readonly expiresAt: number | null;
  readonly maxLeaseMs: number | null;
}

export const EVALUATION_POOL_ID = 'evaluation';

export function poolFromLicense(key: LicenseKey): Pool {
  return {
    id: key.id,
    kind: 'license',
    product: key.product,
    seats: key.seats,
    licensee: key.licensee,
    notBefore: key.notBefore,
    expiresAt: key.expiresAt,
    maxLeaseMs: key.maxLeaseSeconds === null ? null : key.maxLeaseSeconds * 1000,
  };
}

export interface EvaluationSettings {
  readonly seats: number;
  readonly periodMs: number;
}

export function evaluationPool(settings: EvaluationSettings, startedAt: number): Pool {
  return {
    id: EVALUATION_POOL_ID,
    kind: 'evaluation',
    product: '*',
    seats: settings.seats,
    licensee: 'evaluation',
    notBefore: null,
    expiresAt: startedAt + settings.periodMs,
    maxLeaseMs: null,
  };
}

export function poolServes(pool: Pool, product: string): boolean {
  return pool.product === '*' || pool.product === product;
}

export function poolIsValid(pool: Pool, now: number): boolean {
  if (pool.notBefore !== null && now < pool.notBefore) return false;
  return pool.expiresAt === null || now < pool.expiresAt;
}

/** The lease length for a pool: the server's setting capped by the key's maximum. */
export function leaseLengthMs(configuredMs: number, pool: Pool): number {
  return pool.maxLeaseMs === null ? configuredMs : Math.min(configuredMs, pool.maxLeaseMs);
}

/** When a lease (re)granted at `now` ends: a lease never outlives its pool's key (or the evaluation period). */
export function leaseEnd(now: number, leaseMs: number, pool: Pool): number {
  return pool.expiresAt === null ? now + leaseMs : Math.min(now + leaseMs, pool.expiresAt);
}

/** Clients renew at half-lease, so the server may be down for N/2 without losing a seat. */
export function renewAfterMs(leaseMs: number): number {
  return Math.floor(leaseMs / 2);
}

