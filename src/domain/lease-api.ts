import type { Denial, WireCode } from './errors.js';
import type { ClientIdentity, Lease, LeaseProof } from './lease.js';

/** A lease as every door (TCP, TLS, HTTP) hands it to a client: durations, not instants. */
export interface WireLease {
  readonly id: string;
  readonly product: string;
  readonly expiresInMs: number;
  readonly renewAfterMs: number;
  readonly leaseMs: number;
  /** A compact JWS signed by the server's key. */
  readonly token: string;
  /**
   * What the lease chains to the vendor with: the license key of its pool and the
   * activation naming this server's key (null for keys that need none). Absent
   * for evaluation leases.
   */
  readonly license?: { readonly key: string; readonly activation: string | null };
}

/** Who asks, as the door saw it; the server adds the user's groups. */
export type Caller = Omit<ClientIdentity, 'groups'>;

/** A door's answer: a result, or a refusal that only a wire code can carry. */
export type Outcome<T> = ({ readonly ok: true } & T) | Denial<WireCode>;

export interface LeaseEnded {
  readonly lease: Lease;
  readonly kind: 'released' | 'expired' | 'revoked';
  readonly reason: string | null;
}

/** What a client learns on first contact: whose leases these are and the key that signs them. */
export interface ServerHello {
  readonly server: 'floatd';
  readonly version: string;
  readonly protocol: number;
  readonly serverTimeMs: number;
  readonly publicKey: Readonly<Record<string, unknown>>;
}

/**
 * The lease operations, the same for every door. The status shapes are the
 * server's to define: doors only pass them on. Identity comes in, an outcome
 * goes out; replies resolve only after their change is committed. Expected
 * refusals are `Denial` values; faults reject.
 */
export interface LeaseApi<Status extends object = object, Public extends object = object> {
  hello(): ServerHello;
  /** A new seat's reply carries `leaseSecret`: its holder shows it to act on the lease from another connection. */
  acquire(caller: Caller, product: string | undefined, proof?: LeaseProof): Promise<Outcome<{ readonly renewed: boolean; readonly lease: WireLease; readonly leaseSecret?: string }>>;
  renew(caller: Caller, leaseId: string, proof?: LeaseProof): Promise<Outcome<{ readonly lease: WireLease }>>;
  release(caller: Caller, leaseId: string, proof?: LeaseProof): Promise<Outcome<{ readonly released: boolean }>>;
  /** Everything status shows (for admin callers); the server's shape is `ServerStatus`. */
  status(): Promise<Status>;
  /** What status shows a caller without an admin credential: seats per product and health (`PublicStatus`). */
  publicStatus(): Promise<Public>;
  /** Called after the commit that ended a lease (released, expired, revoked); returns an unsubscribe. */
  onLeaseEnded(listener: (ended: LeaseEnded) => void): () => void;
}
