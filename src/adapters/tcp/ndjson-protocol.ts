import { FloatdError, type ErrorDetails } from '../../domain/errors.js';
import type { Caller, LeaseApi, LeaseEnded, Outcome } from '../../domain/lease-api.js';
import type { Connection, ConnectionHandler } from './tcp-server.js';
import { wireError } from './wire-errors.js';

export const PROTOCOL_VERSION = 1;
const MAX_FIELD = 256;
const KNOWN_OPS = new Set(['hello', 'acquire', 'renew', 'release', 'status', 'ping']);

interface Session {
  caller: Caller | null;
  product: string | undefined;
  leases: Set<string>;
}

export interface NdjsonProtocolOptions {
  /** The user is the verified client certificate's common name; a hello naming another is IDENTITY_MISMATCH. */
  readonly identityFromCertificate: boolean;
  /** A request that failed for a reason nobody foresaw, for the server log. */
  readonly requestFailed: (err: unknown, context: Record<string, unknown>) => void;
}

/** A string field of 1 to 256 characters; the error names the field. */
export function stringField(msg: Record<string, unknown>, name: string, required: boolean, label = name): string | undefined {
  const v = msg[name];
  if (v === undefined || v === null) {
    if (required) throw new FloatdError('BAD_REQUEST', `field "${label}" is required`, { field: label });
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_FIELD) {
    throw new FloatdError('BAD_REQUEST', `field "${label}" must be a string of 1 to ${MAX_FIELD} characters`, { field: label });
  }
  return v;
}

/**
 * The NDJSON protocol of docs/protocol.md over TCP and TLS: hello and the
 * connection's session, the ops, and pushing `revoked`/`expired` to the
 * connection holding a lease. The lease operations themselves are the
 * transport-neutral LeaseApi's.
 */
export class NdjsonProtocol implements ConnectionHandler {
  /** Which connection holds each lease, so its end can be pushed. */
  private readonly holders = new Map<string, Connection>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly api: LeaseApi,
    private readonly options: NdjsonProtocolOptions,
  ) {
    this.unsubscribe = api.onLeaseEnded((e) => this.leaseEnded(e));
  }

  close(): void {
    this.unsubscribe();
  }

  private session(conn: Connection): Session {
    if (conn.state === undefined) conn.state = { caller: null, product: undefined, leases: new Set() } satisfies Session;
    return conn.state as Session;
  }

  onMessage(conn: Connection, msg: Record<string, unknown>): Promise<unknown> | unknown {
    const id = msg['id'];
    if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') {
      return wireError(undefined, 'BAD_REQUEST', 'field "id" must be a string or a number');
    }
    const asReply = (err: unknown): unknown => {
      if (err instanceof FloatdError) return wireError(id, err.code, err.message, err.details);
      throw err;
    };
    try {
      const reply = this.route(conn, id, msg);
      return reply instanceof Promise ? reply.catch(asReply) : reply;
    } catch (err) {
      return asReply(err);
    }
  }

  onError(conn: Connection, msg: Record<string, unknown>, err: unknown): unknown {
    this.options.requestFailed(err, { op: msg['op'], remote: conn.remote, listener: conn.listener });
    return wireError(msg['id'], 'INTERNAL', 'internal server error; the operator can find details in the server log');
  }

  onClose(conn: Connection): void {
    const session = conn.state as Session | undefined;
    if (session === undefined) return;
    // The lease stays: a dropped connection is not a release.
    for (const leaseId of session.leases) {
      if (this.holders.get(leaseId) === conn) this.holders.delete(leaseId);
    }
  }

  private route(conn: Connection, id: unknown, msg: Record<string, unknown>): Promise<unknown> | unknown {
    const op = msg['op'];
    if (typeof op !== 'string') return wireError(id, 'BAD_REQUEST', 'field "op" is required', { field: 'op' });
    const session = this.session(conn);
    if (op === 'hello') return this.hello(conn, session, id, msg);
    if (!KNOWN_OPS.has(op)) return wireError(id, 'UNKNOWN_OP', `unknown op "${op}" (ops: ${[...KNOWN_OPS].join(', ')})`);
    const caller = session.caller;
    if (caller === null) return wireError(id, 'HELLO_REQUIRED', 'say hello first');
    switch (op) {
      case 'acquire':
        return this.reply(id, this.api.acquire(caller, stringField(msg, 'product', false) ?? session.product), (r) => this.track(conn, session, r.lease.id));
      case 'renew':
        return this.reply(id, this.api.renew(caller, stringField(msg, 'lease', true)!), (r) => this.track(conn, session, r.lease.id));
      case 'release': {
        const leaseId = stringField(msg, 'lease', true)!;
        return this.reply(id, this.api.release(caller, leaseId), () => session.leases.delete(leaseId));
      }
      case 'status':
        return { id, ok: true, ...this.api.status() };
      default:
        return { id, ok: true };
    }
  }

  private async reply<T extends object>(id: unknown, pending: Promise<Outcome<T>>, then: (r: { ok: true } & T) => void): Promise<unknown> {
    const outcome = await pending;
    if (!outcome.ok) return wireError(id, outcome.code, outcome.message, outcome.details as ErrorDetails);
    then(outcome);
    return { id, ...outcome };
  }

  private hello(conn: Connection, session: Session, id: unknown, msg: Record<string, unknown>): unknown {
    const v = msg['v'] ?? PROTOCOL_VERSION;
    if (v !== PROTOCOL_VERSION) return wireError(id, 'UNSUPPORTED_VERSION', `protocol version ${String(v)} is not supported (supported: ${PROTOCOL_VERSION})`);
    const client = msg['client'];
    if (typeof client !== 'object' || client === null || Array.isArray(client)) {
      return wireError(id, 'BAD_REQUEST', 'field "client" must be an object with "user" and "instance"', { field: 'client' });
    }
    const c = client as Record<string, unknown>;
    let user = stringField(c, 'user', !this.fromCertificate(conn), 'client.user');
    const instance = stringField(c, 'instance', true, 'client.instance')!;
    const host = stringField(c, 'host', false, 'client.host');
    const product = stringField(msg, 'product', false);
    if (this.fromCertificate(conn)) {
      const certified = conn.peer?.commonName ?? null;
      if (certified === null) return wireError(id, 'IDENTITY_MISMATCH', 'this listener takes the user from a client certificate, and the connection has none with a common name');
      if (user !== undefined && user !== certified) {
        return wireError(id, 'IDENTITY_MISMATCH', `the client certificate is for user "${certified}", not "${user}"`);
      }
      user = certified;
    }
    if (session.caller !== null && (session.caller.user !== user || session.caller.instance !== instance)) {
      return wireError(id, 'BAD_REQUEST', 'this connection already said hello as another client; open a new connection');
    }
    session.caller = { user: user!, instance, host: host ?? conn.remote, remote: conn.remote, listener: conn.listener };
    session.product = product;
    conn.markReady();
    return { id, ok: true, ...this.api.hello() };
  }

  /** On TLS connections the user may come from the client certificate (tls.identityFromCertificate). */
  private fromCertificate(conn: Connection): boolean {
    return this.options.identityFromCertificate && conn.tls;
  }

  private track(conn: Connection, session: Session, leaseId: string): void {
    session.leases.add(leaseId);
    this.holders.set(leaseId, conn);
  }

  /** Tells the holder's connection, if it is still open, that its lease ended (after the commit that ended it). */
  private leaseEnded({ lease, kind, reason }: LeaseEnded): void {
    const conn = this.holders.get(lease.id);
    if (conn === undefined) return;
    this.holders.delete(lease.id);
    (conn.state as Session).leases.delete(lease.id);
    if (kind !== 'released') conn.send({ event: kind, lease: lease.id, product: lease.product, ...(reason === null ? {} : { reason }) });
  }
}
