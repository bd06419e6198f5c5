import type { JWK } from 'jose';
import type { Clock } from '../domain/clock.js';
import { deny, FloatdError, isWireCode, type Denial, type WireCode } from '../domain/errors.js';
import type { Caller, LeaseApi, LeaseEnded, Outcome, ServerHello, WireLease } from '../domain/lease-api.js';
import { NO_PROOF, type Lease, type LeaseProof } from '../domain/lease.js';
import { renewAfterMs } from '../domain/pool.js';
import { PROTOCOL_VERSION, suspendedRefusal } from '../domain/door-rules.js';
import type { LeaseTokenSigner } from '../adapters/crypto/lease-tokens.js';
import type { LeaseService } from './lease-service.js';
import type { TokenBuckets } from './rate-limit.js';
import type { ServerStatus } from './status.js';
import type { PublicStatus } from './public-status.js';
import { VERSION } from './version.js';

export { PROTOCOL_VERSION };

export interface ServerLeaseApiDeps {
  readonly leases: LeaseService;
  readonly signer: LeaseTokenSigner;
  readonly clock: Clock;
  readonly publicJwk: JWK;
  readonly status: () => Promise<ServerStatus>;
  readonly publicStatus: () => Promise<PublicStatus>;
  /** Server-side group membership of a user (CLT rules). */
  readonly groupsOf: (user: string) => readonly string[];
  /** The license key and activation a pool's leases chain to the vendor with, if any. */
  readonly chainOf?: (poolId: string) => { key: string; activation: string | null } | undefined;
  /** Acquisitions per client address (`acquireRateLimit`), for every door; absent: no limit. */
  readonly acquireRate?: TokenBuckets;
  /** Told of each acquisition refused by that limit. */
  readonly rateLimited?: (remote: string, retryAfterMs: number) => void;
  /** Whether a listener is suspended for maintenance: it grants no new lease (see door-rules.ts). */
  readonly suspended?: (listener: string) => boolean;
}

/** A refusal as a door may answer it. An operator's code here is a fault: thrown, so the door logs it and answers INTERNAL. */
function onTheWire(d: Denial): Denial<WireCode> {
  if (isWireCode(d.code)) return d as Denial<WireCode>;
  throw new FloatdError(d.code, d.message, d.details);
}

/** Whose request an operation is, for the store's fairness between clients: one client instance on one listener. */
function sourceOf(caller: Caller): string {
  return `${caller.listener}\u0000${caller.remote}\u0000${caller.user}\u0000${caller.instance}`;
}

/**
 * The lease operations every door serves: each change is one unit of work of
 * the store (which may commit TCP, TLS and HTTP requests together), and the
 * lease token is signed after the commit.
 */
export class ServerLeaseApi implements LeaseApi<ServerStatus, PublicStatus> {
  private readonly listeners = new Set<(ended: LeaseEnded) => void>();

  constructor(private readonly deps: ServerLeaseApiDeps) {}

  hello(): ServerHello {
    return { server: 'floatd', version: VERSION, protocol: PROTOCOL_VERSION, serverTimeMs: this.deps.clock.now(), publicKey: this.deps.publicJwk as Record<string, unknown> };
  }

  async acquire(caller: Caller, product: string | undefined, proof: LeaseProof = NO_PROOF): Promise<Outcome<{ renewed: boolean; lease: WireLease; leaseSecret?: string }>> {
    if (this.deps.suspended?.(caller.listener) === true) return suspendedRefusal(caller.listener);
    const limited = this.rateLimited(caller);
    if (limited !== null) return onTheWire(limited);
    const who = { ...caller, groups: this.deps.groupsOf(caller.user) };
    const outcome = await this.deps.leases.acquire(who, product, proof, sourceOf(caller));
    if (!outcome.ok) return onTheWire(outcome);
    return { ok: true, renewed: outcome.renewed, lease: this.wire(outcome.lease), ...(outcome.secret === undefined ? {} : { leaseSecret: outcome.secret }) };
  }

  async renew(caller: Caller, leaseId: string, proof: LeaseProof = NO_PROOF): Promise<Outcome<{ lease: WireLease }>> {
    const who = { ...caller, groups: this.deps.groupsOf(caller.user) };
    const outcome = await this.deps.leases.renew(who, leaseId, proof, sourceOf(caller));
    if (!outcome.ok) return onTheWire(outcome);
    return { ok: true, lease: this.wire(outcome.lease) };
  }

  async release(caller: Caller, leaseId: string, proof: LeaseProof = NO_PROOF): Promise<Outcome<{ released: boolean }>> {
    const who = { ...caller, groups: [] };
    const outcome = await this.deps.leases.release(who, leaseId, proof, sourceOf(caller));
    if (!outcome.ok) return onTheWire(outcome);
    return { ok: true, released: outcome.released };
  }

  /**
   * The acquisition-rate limit of the caller's address: a denial when its
   * bucket is empty. Refused before any work: nothing is written, so a flood
   * of acquisitions grows neither the lease log nor the database.
   */
  private rateLimited(caller: Caller): Denial | null {
    const buckets = this.deps.acquireRate;
    if (buckets === undefined) return null;
    const retryAfterMs = buckets.take(caller.remote, this.deps.clock.monotonic());
    if (retryAfterMs === null) return null;
    this.deps.rateLimited?.(caller.remote, retryAfterMs);
    const { perSecond, burst } = buckets.limit;
    return deny(
      'TOO_MANY_REQUESTS',
      `too many acquisitions from ${caller.remote}: at most ${perSecond} a second, ${burst} at once (acquireRateLimit); retry in ${retryAfterMs} ms`,
      { retryAfterMs, reason: 'acquire-rate' },
    );
  }

  status(): Promise<ServerStatus> {
    return this.deps.status();
  }

  publicStatus(): Promise<PublicStatus> {
    return this.deps.publicStatus();
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
