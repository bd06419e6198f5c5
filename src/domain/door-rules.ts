import { deny, type Denial } from './errors.js';
import type { Caller } from './lease-api.js';

/**
 * The rules every door (NDJSON over TCP and TLS, HTTP and HTTPS) applies the
 * same way, decided here once: the protocol version, the lease operations,
 * the client's address, who the caller is, and what a suspended listener refuses.
 */

/** The one protocol version this server speaks (the NDJSON hello's `v`, the HTTP API's `/v1`). */
export const PROTOCOL_VERSION = 1;

/** The operations of the lease protocol, on every door. */
export const LEASE_OPS = ['hello', 'acquire', 'renew', 'release', 'status', 'ping'] as const;
export type LeaseOp = (typeof LEASE_OPS)[number];

/** Whether a client asks for a protocol version this server speaks (absent: the current one). */
export function checkProtocolVersion(v: number | undefined): Denial | null {
  const asked = v ?? PROTOCOL_VERSION;
  return asked === PROTOCOL_VERSION ? null : deny('UNSUPPORTED_VERSION', `protocol version ${asked} is not supported (supported: ${PROTOCOL_VERSION})`);
}

/** A client's address as logs, limits and leases show it: an IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`) is the IPv4 address. */
export function clientAddress(remote: string): string {
  return remote.startsWith('::ffff:') ? remote.slice(7) : remote;
}

/** What a door knows of a connection. */
export interface DoorConnection {
  readonly listener: string;
  /** The client's address (after `clientAddress`). */
  readonly remote: string;
  readonly tls: boolean;
  /** The common name of the client certificate, or null without one. */
  readonly certifiedUser: string | null;
}

/** What the client says it is. */
export interface ClientClaim {
  readonly user?: string | undefined;
  readonly host?: string | undefined;
  readonly instance: string;
}

/**
 * Who the caller is. On a TLS connection with `tls.identityFromCertificate`,
 * the user is the client certificate's common name (a claim of another user is
 * refused); elsewhere the client names itself. The host defaults to the address.
 */
export function identifyCaller(claim: ClientClaim, conn: DoorConnection, identityFromCertificate: boolean): { ok: true; caller: Caller } | Denial<'IDENTITY_MISMATCH' | 'BAD_REQUEST'> {
  let user = claim.user;
  if (identityFromCertificate && conn.tls) {
    if (conn.certifiedUser === null) return deny('IDENTITY_MISMATCH', 'this listener takes the user from a client certificate, and the connection has none with a common name');
    if (user !== undefined && user !== conn.certifiedUser) return deny('IDENTITY_MISMATCH', `the client certificate is for user "${conn.certifiedUser}", not "${user}"`);
    user = conn.certifiedUser;
  }
  if (user === undefined) return deny('BAD_REQUEST', 'field "client.user" is required', { field: 'client.user' });
  return { ok: true, caller: { user, instance: claim.instance, host: claim.host ?? conn.remote, remote: conn.remote, listener: conn.listener } };
}

/**
 * A listener suspended for maintenance (`floatd admin suspend`) grants no new
 * lease, on every door: acquisitions on it are refused with SUSPENDED, while
 * leases already held renew and release as usual. The NDJSON listener also
 * turns new connections away (they exist to hold leases); the web endpoint
 * keeps answering status, health, metrics and the admin API, which resumes it.
 */
export function suspendedRefusal(listener: string): Denial<'SUSPENDED'> {
  return deny('SUSPENDED', `listener "${listener}" is suspended for maintenance and grants no new leases; held leases can still be renewed`);
}
