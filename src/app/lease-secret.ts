import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { deny, type Denial } from '../domain/errors.js';
import type { Lease, LeaseProof } from '../domain/lease.js';

/**
 * A lease's secret: 32 random bytes (base64url) handed to its holder once, in
 * the reply that granted the lease. The server keeps only its SHA-256, so
 * neither the database, the lease log nor the lease token can give it away;
 * whoever renews, releases or re-acquires the lease from another connection
 * (after a reconnect, over HTTP) must show it.
 */
export function newLeaseSecret(): { readonly secret: string; readonly hash: string } {
  const secret = randomBytes(32).toString('base64url');
  return { secret, hash: leaseSecretHash(secret) };
}

export function leaseSecretHash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('base64url');
}

/** Whether `secret` is the one whose hash is stored, in time that does not depend on where they differ. */
export function leaseSecretMatches(storedHash: string, secret: string): boolean {
  const a = Buffer.from(storedHash, 'utf8');
  const b = Buffer.from(leaseSecretHash(secret), 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Whether a request may act on the lease as its holder: the lease was granted
 * (or proven) on the request's connection, or the request shows the lease's
 * secret. A lease granted before leases had secrets is its identity's.
 */
export function proven(lease: Lease, proof: LeaseProof): boolean {
  if (lease.secretHash === undefined || lease.secretHash === null) return true;
  if (proof.boundTo?.has(lease.id) === true) return true;
  return proof.secret !== undefined && leaseSecretMatches(lease.secretHash, proof.secret);
}

export function secretMismatch(leaseId: string, proof: LeaseProof, doing: string): Denial {
  return deny(
    'LEASE_SECRET_MISMATCH',
    proof.secret === undefined
      ? `lease ${leaseId} was granted on another connection: ${doing} it needs the leaseSecret of the reply that granted it`
      : `the leaseSecret given is not lease ${leaseId}'s: ${doing} it is refused`,
  );
}
