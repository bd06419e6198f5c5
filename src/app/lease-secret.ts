import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

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
