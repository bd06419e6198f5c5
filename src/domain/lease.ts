/** One seat held by one client instance until `expiresAt` (epoch ms). */
export interface Lease {
  readonly id: string;
  readonly poolId: string;
  readonly product: string;
  readonly user: string;
  readonly host: string;
  readonly instance: string;
  readonly remote: string;
  readonly listener: string;
  readonly grantedAt: number;
  readonly renewedAt: number;
  readonly expiresAt: number;
  readonly leaseMs: number;
  /**
   * SHA-256 (base64url) of the secret handed to the holder at grant; null for a
   * lease granted before leases had secrets (renewable by identity alone).
   */
  readonly secretHash?: string | null;
  /** The cluster node the holder's client is on (PostgreSQL store); absent on a single server. */
  readonly node?: string;
}

/** Who asks: the identity a client gave in hello plus what the server saw. */
export interface ClientIdentity {
  readonly user: string;
  readonly host: string;
  readonly instance: string;
  readonly remote: string;
  readonly listener: string;
  /** Groups from the server's group configuration, never from the client. */
  readonly groups: readonly string[];
}

export function holds(lease: Lease, who: Pick<ClientIdentity, 'user' | 'instance'>): boolean {
  return lease.user === who.user && lease.instance === who.instance;
}

/**
 * What a request shows to prove it comes from a lease's holder: the leases
 * granted (or proven) on the connection it arrives on, and the lease secret
 * it carries, if any.
 */
export interface LeaseProof {
  readonly boundTo?: ReadonlySet<string>;
  readonly secret?: string;
}

export const NO_PROOF: LeaseProof = {};
