import type { JWK } from 'jose';
import type { Clock } from '../domain/clock.js';
import type { Caller, LeaseApi, LeaseEnded, Outcome, ServerHello, WireLease } from '../domain/lease-api.js';
import type { Lease } from '../domain/lease.js';
import { renewAfterMs } from '../domain/pool.js';
import type { LeaseTokenSigner } from '../adapters/crypto/lease-tokens.js';
import type { Batcher } from './batcher.js';
import type { LeaseService } from './lease-service.js';
import type { ServerStatus } from './status.js';
import { VERSION } from './version.js';

export const PROTOCOL_VERSION = 1;

export interface ServerLeaseApiDeps {
  readonly leases: LeaseService;
  readonly batcher: Batcher;
  readonly signer: LeaseTokenSigner;
  readonly clock: Clock;
  readonly publicJwk: JWK;
  readonly status: () => ServerStatus;
  /** Server-side group membership of a user (CLT rules). */
  readonly groupsOf: (user: string) => readonly string[];
  /** The license key and activation a pool's leases chain to the vendor with, if any. */
  readonly chainOf?: (poolId: string) => { key: string; activation: string | null } | undefined;
}

/**
 * The lease operations every door serves: each change goes through the one
 * batcher (so TCP, TLS and HTTP requests share commits), and the lease token is
 * signed after the commit.
 */
export class ServerLeaseApi implements LeaseApi {
  private readonly listeners = new Set<(ended: LeaseEnded) => void>();

  constructor(private readonly deps: ServerLeaseApiDeps) {}

  hello(): ServerHello {
    return { server: 'floatd', version: VERSION, protocol: PROTOCOL_VERSION, serverTimeMs: this.deps.clock.now(), publicKey: this.deps.publicJwk as Record<string, unknown> };
  }

  async acquire(caller: Caller, product: string | undefined): Promise<Outcome<{ renewed: boolean; lease: WireLease }>> {
    const who = { ...caller, groups: this.deps.groupsOf(caller.user) };
    const outcome = await this.deps.batcher.submit(() => this.deps.leases.acquire(who, product));
    if (!outcome.ok) return outcome;
    return { ok: true, renewed: outcome.renewed, lease: this.wire(outcome.lease) };
  }

  async renew(caller: Caller, leaseId: string): Promise<Outcome<{ lease: WireLease }>> {
    const who = { ...caller, groups: this.deps.groupsOf(caller.user) };
    const outcome = await this.deps.batcher.submit(() => this.deps.leases.renew(who, leaseId));
    if (!outcome.ok) return outcome;
    return { ok: true, lease: this.wire(outcome.lease) };
  }

  async release(caller: Caller, leaseId: string): Promise<Outcome<{ released: boolean }>> {
    const who = { ...caller, groups: [] };
    const outcome = await this.deps.batcher.submit(() => this.deps.leases.release(who, leaseId));
    if (!outcome.ok) return outcome;
    return { ok: true, released: outcome.released };
  }

  status(): ServerStatus {
    return this.deps.status();
  }

  onLeaseEnded(listener: (ended: LeaseEnded) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The LeaseService hook: runs after the commit that ended the lease. */
  leaseEnded(lease: Lease, kind: LeaseEnded['kind'], reason: string | null): void {
    for (const listener of this.listeners) listener({ lease, kind, reason });
  }

  private wire(lease: Lease): WireLease {
    const token = this.deps.signer.sign(lease, lease.renewedAt);
    const now = this.deps.clock.now();
    const chain = this.deps.chainOf?.(lease.poolId);
    return {
      id: lease.id,
      product: lease.product,
      expiresInMs: Math.max(0, lease.expiresAt - now),
      renewAfterMs: Math.max(0, renewAfterMs(lease.leaseMs) - (now - lease.renewedAt)),
      leaseMs: lease.leaseMs,
      token,
      ...(chain !== undefined ? { license: chain } : {}),
    };
  }
}
