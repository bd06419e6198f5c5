/**
 * What the lease client is given and what it tells: its options, the lease it
 * holds, its events and its error.
 */
import type { JWK } from 'jose';
import type { LeaseTokenClaims } from '../adapters/crypto/lease-tokens.js';
import type { Clock } from '../domain/clock.js';
import type { BackoffOptions } from './backoff.js';
import type { ResolveHost } from './server-list.js';

export const DEFAULT_RETRY_INTERVAL_MS = 10_000;
export interface LeaseClientOptions {
  /**
   * Where the server is: `host[:port]` (the NDJSON protocol over TCP, port 8989),
   * `tls://host[:port]` (the same inside TLS, 8991), `https://host[:port]` (the web
   * endpoint, 8443) or `http://host[:port]` (8990). IPv6 addresses go in brackets.
   *
   * Several servers (the nodes of one cluster) are a list: an array, or one string
   * with commas (`a:8989,b:8989`); a name that resolves to several addresses counts
   * as several servers. The client holds its lease through one of them and goes on
   * to the next when that one fails (see `backoff`).
   */
  readonly server: string | readonly string[];
  /** For `tls://` and `https://`: a PEM file of the CA(s) to trust instead of Node.js's built-in ones. */
  readonly caFile?: string;
  /** For `tls://` and `https://`: a PEM client certificate (chain) to show the server, with its key. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** May be left out when the server serves one product. */
  readonly product?: string;
  /** Defaults to the OS user name. */
  readonly user?: string;
  /** Defaults to the host name. */
  readonly host?: string;
  /**
   * A stable id for this product instance. Give one (or `instanceFile`) so that
   * a restarted instance gets its own lease back instead of taking a second seat.
   */
  readonly instance?: string;
  /** A file that keeps the instance id across restarts; created on first use. */
  readonly instanceFile?: string;
  /** How often to try again while no seat is free or the server is unreachable; 0 = fail at once. Default 10 s. */
  readonly retryIntervalMs?: number;
  /** Pin the server's lease-signing key: its public JWK, or its fingerprint as `floatd status` prints it. */
  readonly serverPublicKey?: JWK;
  readonly serverKeyFingerprint?: string;
  /**
   * Refuse a server whose lease-signing key differs from what this client trusts: the expected
   * fingerprint (as `floatd status` prints it), or `true` for the first key this client sees.
   * A server (or a reconnect, or a restart) with another key is then refused with
   * SERVER_KEY_CHANGED; without it (and without vendorPublicKey) a changed key is only reported
   * (`serverKeyChanged`).
   */
  readonly pinServerKey?: string | true;
  /**
   * The vendor's public key(s). Given, a lease is accepted only when it chains to
   * the vendor: its license key is signed by the vendor and is for this product,
   * its activation is signed by the vendor and names the key of the server that
   * signed the lease token, and the token is from that key's pool. A server the
   * vendor never activated (a rogue one on the network, an evaluation) is refused.
   */
  readonly vendorPublicKey?: JWK | readonly JWK[];
  /**
   * Release the lease on SIGINT, SIGTERM and normal exit. (A held lease never keeps
   * the process alive, so "normal exit" is when the product's own work is done.)
   */
  readonly releaseOnExit?: boolean;
  /** Time for one request before the server counts as unreachable. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /**
   * The wait before trying the servers again after a dropped connection or a failed renewal:
   * drawn at random below a bound that starts at `initialMs` (100) and doubles up to `maxMs` (5000).
   */
  readonly backoff?: BackoffOptions;
  /** Injected for tests; the system clock otherwise. */
  readonly clock?: Clock;
  /** Injected for tests: the back-off's random source in [0, 1); Math.random otherwise. */
  readonly random?: () => number;
  /** Injected for tests: resolves a host name to its addresses; dns.lookup (all) otherwise. */
  readonly resolveHost?: ResolveHost;
}

/** A lease as the client holds it. */
export interface LeaseInfo {
  readonly id: string;
  readonly product: string;
  /** Lease length the server granted. */
  readonly leaseMs: number;
  /** When the client renews, in ms after the reply arrived (half the lease). */
  readonly renewAfterMs: number;
  /** Time left on the lease when the reply arrived. */
  readonly expiresInMs: number;
  /** The signed lease (compact JWS); verified before this object exists. */
  readonly token: string;
  readonly claims: LeaseTokenClaims;
}

export interface DenialInfo {
  readonly code: string;
  readonly message: string;
  /** For RULE_DENIED: count, frequency or blocked (a rule), or revoked (an operator revoked with --block). */
  readonly reason?: string;
  /** When the client tries again, or null when it does not. */
  readonly retryInMs: number | null;
}

export interface LeaseClientEvents {
  acquired: [LeaseInfo];
  renewed: [LeaseInfo];
  /** The lease could not be renewed before it expired (or the server says it is gone). */
  lost: [{ readonly leaseId: string; readonly reason: string }];
  /** A lease was taken again after `lost` or `revoked`. */
  regained: [LeaseInfo];
  /** The server took the lease back (license key removed or expired, evaluation over). */
  revoked: [{ readonly leaseId: string; readonly reason: string }];
  /** An acquisition was refused or could not reach the server. */
  denied: [DenialInfo];
  /** A connection to `server` (one of the list, with the address its name resolved to) said hello. */
  connected: [{ readonly server: string }];
  /** The connection to `server` ended (it dropped, or the client left a server that failed it). */
  disconnected: [{ readonly message: string; readonly server: string }];
  /**
   * The server's lease-signing key is not the one this client saw before (another server
   * answers at the address, or the server lost its key): `refused` when pinServerKey or
   * vendorPublicKey made the client turn it away (SERVER_KEY_CHANGED).
   */
  serverKeyChanged: [{ readonly from: string; readonly to: string; readonly refused: boolean }];
}

/** An acquisition that will not be retried, or a lease that failed verification. */
export class LeaseClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'LeaseClientError';
  }
}
