import { FloatdError, isWireCode, type ErrorDetails, type WireCode } from '../../domain/errors.js';
import { checkProtocolVersion, identifyCaller, LEASE_OPS, PROTOCOL_VERSION } from '../../domain/door-rules.js';
import { NDJSON_REQUESTS, PROTOCOL_VERSION_FIELD, REQUEST, REQUEST_ID } from '../../domain/messages.js';
import { checkDocument, validate, type Invalid } from '../../domain/schema.js';
import type { Caller, LeaseApi, LeaseEnded, Outcome } from '../../domain/lease-api.js';
import type { LeaseProof } from '../../domain/lease.js';
import type { Connection, ConnectionHandler } from './tcp-server.js';
import { wireError } from './wire-errors.js';

export { PROTOCOL_VERSION };
const KNOWN_OPS: ReadonlySet<string> = new Set(LEASE_OPS);

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
  /** A request refused as the client's mistake (malformed, unknown op, hello missing or of another version). */
  readonly clientMistake?: (conn: Connection, code: WireCode, message: string) => void;
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
    // The id first: every other refusal is a reply to it.
    const raw = msg['id'];
    const checkedId = raw === undefined || raw === null ? null : validate(REQUEST_ID, raw, 'id');
    if (checkedId !== null && !checkedId.ok) return this.refuse(conn, undefined, checkedId);
    const id = checkedId?.value;
    const problem = checkDocument(msg);
    if (problem !== null) return this.refuse(conn, id, problem);
    const asReply = (err: unknown): unknown => {
      // A fault the server foresaw (storage unavailable) says what to do; any other error is unforeseen here.
      if (err instanceof FloatdError && isWireCode(err.code)) return wireError(id, err.code, err.message, err.details);
      throw err;
    };
    try {
      const reply = this.route(conn, id, msg);
      return reply instanceof Promise ? reply.catch(asReply) : reply;
    } catch (err) {
      return asReply(err);
    }
  }

  /** A malformed request: BAD_REQUEST naming the field. */
  private refuse(conn: Connection, id: unknown, invalid: Invalid): unknown {
    return this.mistake(conn, id, 'BAD_REQUEST', invalid.message, { field: invalid.field });
  }

  /** A refusal that is the client's mistake: told to the log hook (kept quiet there), answered in the usual shape. */
  private mistake(conn: Connection, id: unknown, code: WireCode, message: string, details: ErrorDetails = {}): unknown {
    this.options.clientMistake?.(conn, code, message);
    return wireError(id, code, message, details);
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
    const head = validate(REQUEST, msg);
    if (!head.ok) return this.refuse(conn, id, head);
    const op = head.value.op;
    const session = this.session(conn);
    if (op === 'hello') return this.hello(conn, session, id, msg);
    if (!KNOWN_OPS.has(op)) return this.mistake(conn, id, 'UNKNOWN_OP', `unknown op "${op}" (ops: ${[...KNOWN_OPS].join(', ')})`);
    const caller = session.caller;
    if (caller === null) return this.mistake(conn, id, 'HELLO_REQUIRED', 'say hello first');
    switch (op) {
      case 'acquire': {
        const r = validate(NDJSON_REQUESTS.acquire, msg);
        if (!r.ok) return this.refuse(conn, id, r);
        return this.reply(id, this.api.acquire(caller, r.value.product ?? session.product, this.proof(session, r.value.leaseSecret)), (out) => this.track(conn, session, out.lease.id));
      }
      case 'renew': {
        const r = validate(NDJSON_REQUESTS.renew, msg);
        if (!r.ok) return this.refuse(conn, id, r);
        return this.reply(id, this.api.renew(caller, r.value.lease, this.proof(session, r.value.leaseSecret)), (out) => this.track(conn, session, out.lease.id));
      }
      case 'release': {
        const r = validate(NDJSON_REQUESTS.release, msg);
        if (!r.ok) return this.refuse(conn, id, r);
        const leaseId = r.value.lease;
        return this.reply(id, this.api.release(caller, leaseId, this.proof(session, r.value.leaseSecret)), () => session.leases.delete(leaseId));
      }
      case 'status': {
        const r = validate(NDJSON_REQUESTS.status, msg);
        if (!r.ok) return this.refuse(conn, id, r);
        // The NDJSON door has no admin credential: seats and health only.
        return this.api.publicStatus().then((s) => ({ id, ok: true, ...s }));
      }
      default: {
        const r = validate(NDJSON_REQUESTS.ping, msg);
        if (!r.ok) return this.refuse(conn, id, r);
        return { id, ok: true };
      }
    }
  }

  private async reply<T extends object>(id: unknown, pending: Promise<Outcome<T>>, then: (r: { ok: true } & T) => void): Promise<unknown> {
    const outcome = await pending;
    if (!outcome.ok) return wireError(id, outcome.code, outcome.message, outcome.details as ErrorDetails);
    then(outcome);
    return { id, ...outcome };
  }

  private hello(conn: Connection, session: Session, id: unknown, msg: Record<string, unknown>): unknown {
    // The version first: a newer client's hello may differ in every other field.
    const version = validate(PROTOCOL_VERSION_FIELD, msg);
    if (!version.ok) return this.refuse(conn, id, version);
    const unsupported = checkProtocolVersion(version.value.v);
    if (unsupported !== null) return this.mistake(conn, id, 'UNSUPPORTED_VERSION', unsupported.message);
    const checked = validate(this.fromCertificate(conn) ? NDJSON_REQUESTS.helloCertified : NDJSON_REQUESTS.hello, msg);
    if (!checked.ok) return this.refuse(conn, id, checked);
    const { client, product } = checked.value;
    const who = identifyCaller(client, { listener: conn.listener, remote: conn.remote, tls: conn.tls, certifiedUser: conn.peer?.commonName ?? null }, this.options.identityFromCertificate);
    if (!who.ok) return who.code === 'BAD_REQUEST' ? this.refuse(conn, id, { field: String(who.details['field']), message: who.message }) : wireError(id, who.code, who.message);
    const { user, instance } = who.caller;
    if (session.caller !== null && (session.caller.user !== user || session.caller.instance !== instance)) {
      return this.mistake(conn, id, 'BAD_REQUEST', 'this connection already said hello as another client; open a new connection');
    }
    session.caller = who.caller;
    session.product = product;
    conn.markReady();
    return { id, ok: true, ...this.api.hello() };
  }

  /** On TLS connections the user may come from the client certificate (tls.identityFromCertificate). */
  private fromCertificate(conn: Connection): boolean {
    return this.options.identityFromCertificate && conn.tls;
  }

  /**
   * The leases this connection was granted, or renewed (which took the lease's
   * secret, or a grant here), are its own; any other needs the secret.
   */
  private proof(session: Session, secret: string | null | undefined): LeaseProof {
    return secret === undefined || secret === null ? { boundTo: session.leases } : { boundTo: session.leases, secret };
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
