import type { JWK } from 'jose';
import type { Clock } from '../domain/clock.js';
import { FloatdError, type Denial, type ErrorCode } from '../domain/errors.js';
import type { ClientIdentity, Lease } from '../domain/lease.js';
import { renewAfterMs } from '../domain/pool.js';
import type { Logger } from '../adapters/log/logger.js';
import type { LeaseTokenSigner } from '../adapters/crypto/lease-tokens.js';
import type { Connection, ConnectionHandler } from '../adapters/tcp/tcp-server.js';
import type { LeaseService } from './lease-service.js';
import type { ServerStatus } from './status.js';
import { VERSION } from './version.js';

export const PROTOCOL_VERSION = 1;
const MAX_FIELD = 256;

interface Session {
  client: ClientIdentity | null;
  product: string | undefined;
  leases: Set<string>;
}

export interface WireLease {
  readonly id: string;
  readonly product: string;
  readonly expiresInMs: number;
  readonly renewAfterMs: number;
  readonly leaseMs: number;
  readonly token: string;
}

export interface ProtocolDeps {
  readonly leases: LeaseService;
  readonly signer: LeaseTokenSigner;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly publicJwk: JWK;
  readonly status: () => ServerStatus;
  /** Server-side group membership of a user (CLT rules). */
  readonly groupsOf: (user: string) => readonly string[];
}

function failure(id: unknown, code: ErrorCode, message: string, details: Record<string, unknown> = {}): unknown {
  return { id, ok: false, error: { code, message, ...details } };
}

function fromDenial(id: unknown, d: Denial): unknown {
  return failure(id, d.code, d.message, d.details);
}

function field(msg: Record<string, unknown>, name: string, required: boolean, label = name): string | undefined {
  const v = msg[name];
  if (v === undefined || v === null) {
    if (required) throw new FloatdError('BAD_REQUEST', `field "${label}" is required`);
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_FIELD) {
    throw new FloatdError('BAD_REQUEST', `field "${label}" must be a string of 1 to ${MAX_FIELD} characters`);
  }
  return v;
}

/**
 * The lease protocol of docs/protocol.md, independent of transport: one
 * instance serves every TCP connection (and the HTTPS endpoint).
 */
export class LeaseProtocol implements ConnectionHandler {
  /** Which connection holds each lease, so revocations can be pushed. */
  private readonly holders = new Map<string, Connection>();

  constructor(private readonly deps: ProtocolDeps) {}

  private session(conn: Connection): Session {
    if (conn.state === undefined) conn.state = { client: null, product: undefined, leases: new Set() } satisfies Session;
    return conn.state as Session;
  }

  onMessage(conn: Connection, msg: Record<string, unknown>): Promise<unknown> | unknown {
    const id = msg['id'];
    if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') {
      return failure(undefined, 'BAD_REQUEST', 'field "id" must be a string or a number');
    }
    const asReply = (err: unknown): unknown => {
      if (err instanceof FloatdError) return failure(id, err.code, err.message, err.details);
      throw err;
    };
    try {
      const reply = this.route(conn, id, msg);
      return reply instanceof Promise ? reply.catch(asReply) : reply;
    } catch (err) {
      return asReply(err);
    }
  }

  private route(conn: Connection, id: unknown, msg: Record<string, unknown>): Promise<unknown> | unknown {
    const op = msg['op'];
    if (typeof op !== 'string') return failure(id, 'BAD_REQUEST', 'field "op" is required');
    const session = this.session(conn);
    if (op === 'hello') return this.hello(conn, session, id, msg);
    if (!KNOWN_OPS.has(op)) return failure(id, 'UNKNOWN_OP', `unknown op "${op}" (ops: ${[...KNOWN_OPS].join(', ')})`);
    if (session.client === null) return failure(id, 'HELLO_REQUIRED', 'say hello first');
    switch (op) {
      case 'acquire':
        return this.acquire(conn, session, id, msg);
      case 'renew':
        return this.renew(conn, session, id, msg);
      case 'release':
        return this.release(session, id, msg);
      case 'status':
        return { id, ok: true, ...this.deps.status() };
      default:
        return { id, ok: true };
    }
  }

  onError(conn: Connection, msg: Record<string, unknown>, err: unknown): unknown {
    this.deps.logger.error({ err, op: msg['op'], remote: conn.remote, listener: conn.listener }, 'request failed');
    return failure(msg['id'], 'INTERNAL', 'internal server error; the operator can find details in the server log');
  }

  onClose(conn: Connection): void {
    const session = conn.state as Session | undefined;
    if (session === undefined) return;
    // The lease stays: a dropped connection is not a release.
    for (const leaseId of session.leases) {
      if (this.holders.get(leaseId) === conn) this.holders.delete(leaseId);
    }
  }

  /** Tells the holder's connection, if it is still open, that its lease ended. */
  leaseEnded(lease: Lease, kind: 'released' | 'expired' | 'revoked', reason: string | null): void {
    const conn = this.holders.get(lease.id);
    if (conn === undefined) return;
    this.holders.delete(lease.id);
    (conn.state as Session).leases.delete(lease.id);
    if (kind !== 'released') conn.send({ event: kind, lease: lease.id, product: lease.product, ...(reason === null ? {} : { reason }) });
  }

  private hello(conn: Connection, session: Session, id: unknown, msg: Record<string, unknown>): unknown {
    const v = msg['v'] ?? PROTOCOL_VERSION;
    if (v !== PROTOCOL_VERSION) return failure(id, 'UNSUPPORTED_VERSION', `protocol version ${String(v)} is not supported (supported: ${PROTOCOL_VERSION})`);
    const client = msg['client'];
    if (typeof client !== 'object' || client === null || Array.isArray(client)) {
      return failure(id, 'BAD_REQUEST', 'field "client" must be an object with "user" and "instance"');
    }
    const c = client as Record<string, unknown>;
    const user = field(c, 'user', true, 'client.user')!;
    const instance = field(c, 'instance', true, 'client.instance')!;
    const host = field(c, 'host', false, 'client.host');
    const product = field(msg, 'product', false);
    if (session.client !== null && (session.client.user !== user || session.client.instance !== instance)) {
      return failure(id, 'BAD_REQUEST', 'this connection already said hello as another client; open a new connection');
    }
    session.client = {
      user,
      instance,
      host: host ?? conn.remote,
      remote: conn.remote,
      listener: conn.listener,
      groups: this.deps.groupsOf(user),
    };
    session.product = product;
    conn.markReady();
    return {
      id,
      ok: true,
      server: 'floatd',
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      serverTimeMs: this.deps.clock.now(),
      publicKey: this.deps.publicJwk,
    };
  }

  private async wire(lease: Lease): Promise<WireLease> {
    const token = await this.deps.signer.sign(lease, lease.renewedAt);
    const now = this.deps.clock.now();
    return {
      id: lease.id,
      product: lease.product,
      expiresInMs: Math.max(0, lease.expiresAt - now),
      renewAfterMs: Math.max(0, renewAfterMs(lease.leaseMs) - (now - lease.renewedAt)),
      leaseMs: lease.leaseMs,
      token,
    };
  }

  private track(conn: Connection, session: Session, lease: Lease): void {
    session.leases.add(lease.id);
    this.holders.set(lease.id, conn);
  }

  private async acquire(conn: Connection, session: Session, id: unknown, msg: Record<string, unknown>): Promise<unknown> {
    const product = field(msg, 'product', false) ?? session.product;
    const outcome = this.deps.leases.acquire({ ...session.client!, groups: this.deps.groupsOf(session.client!.user) }, product);
    if (!outcome.ok) return fromDenial(id, outcome);
    this.track(conn, session, outcome.lease);
    return { id, ok: true, renewed: outcome.renewed, lease: await this.wire(outcome.lease) };
  }

  private async renew(conn: Connection, session: Session, id: unknown, msg: Record<string, unknown>): Promise<unknown> {
    const leaseId = field(msg, 'lease', true)!;
    const outcome = this.deps.leases.renew(session.client!, leaseId);
    if (!outcome.ok) return fromDenial(id, outcome);
    this.track(conn, session, outcome.lease);
    return { id, ok: true, lease: await this.wire(outcome.lease) };
  }

  private release(session: Session, id: unknown, msg: Record<string, unknown>): unknown {
    const leaseId = field(msg, 'lease', true)!;
    const outcome = this.deps.leases.release(session.client!, leaseId);
    if (!outcome.ok) return fromDenial(id, outcome);
    session.leases.delete(leaseId);
    return { id, ok: true, released: outcome.released };
  }
}

const KNOWN_OPS = new Set(['hello', 'acquire', 'renew', 'release', 'status', 'ping']);
