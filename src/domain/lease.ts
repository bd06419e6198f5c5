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
