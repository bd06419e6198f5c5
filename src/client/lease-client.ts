import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { dirname } from 'node:path';
import type { JWK } from 'jose';
import { SystemClock } from '../adapters/clock/system-clock.js';
import type { Clock, TimerHandle } from '../domain/clock.js';
import { Backoff } from './backoff.js';
import { DEFAULT_RETRY_INTERVAL_MS, LeaseClientError, type DenialInfo, type LeaseClientEvents, type LeaseClientOptions, type LeaseInfo } from './lease-client-types.js';
import { LeaseVerifier } from './lease-verifier.js';
import { ServerConnection } from './server-connection.js';
import { parseServerList } from './server-list.js';
import { readTlsFiles, type TlsMaterial } from './tls-material.js';
import { TransportError, type Reply, type ReplyError } from './transport.js';

export { DEFAULT_RETRY_INTERVAL_MS, LeaseClientError };
export type { DenialInfo, LeaseClientEvents, LeaseClientOptions, LeaseInfo };

/** The longest wait a server's `retryAfterMs` can ask of an acquire before it tries again. */
const MAX_SERVER_RETRY_AFTER_MS = 60_000;
/** Denials whose `retryAfterMs` sets the earliest next try. */
const SERVER_PACED = new Set(['UNAVAILABLE', 'TOO_MANY_REQUESTS']);

/** Refusals no amount of waiting fixes: the request or the server is wrong. */
const PERMANENT = new Set(['BAD_REQUEST', 'UNKNOWN_PRODUCT', 'PRODUCT_REQUIRED', 'UNSUPPORTED_VERSION', 'TOKEN_INVALID', 'LEASE_NOT_YOURS', 'IDENTITY_MISMATCH']);

function readInstanceFile(file: string): string {
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (id !== '') return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const id = randomUUID();
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}

type State = 'idle' | 'acquiring' | 'held' | 'closed';

/**
 * Holds one lease on a floatd server (or one of a cluster's) for a product
 * instance: acquires it (retrying while no seat is free or the server is down),
 * renews it when the server says, rides out server outages shorter than the time
 * left (renewing on the next server of the list when the one in use fails; see
 * ServerConnection), verifies every lease token, and releases it on `release()`,
 * `close()` or (if asked) process exit.
 */
export class LeaseClient extends EventEmitter<LeaseClientEvents> {
  readonly user: string;
  readonly host: string;
  readonly instance: string;
  private readonly clock: Clock;
  private readonly retryMs: number;
  private state: State = 'idle';
  private readonly tls: TlsMaterial;
  private readonly server: ServerConnection;
  private readonly verifier: LeaseVerifier;
  private current: LeaseInfo | null = null;
  /** Monotonic time the current lease runs out (measured from when its request was sent). */
  private deadline = 0;
  private timer: TimerHandle | null = null;
  private renewing = false;
  private readonly backoff: Backoff;
  private needsRegain = false;
  /**
   * The secret of the lease held (or last held), from the reply that granted it: kept in memory only,
   * and sent with every renew, release and acquire so another connection (a reconnect, HTTP) can act on it.
   */
  private secret: string | null = null;
  private waiters: Array<{ resolve: (l: LeaseInfo) => void; reject: (e: Error) => void }> = [];
  /** Keeps the process alive while someone awaits acquire(); see keepProcessAlive(). */
  private keepAlive: ReturnType<typeof setInterval> | null = null;
  private exitHooks: Array<[string, (...a: unknown[]) => void]> = [];

  constructor(private readonly options: LeaseClientOptions) {
    super();
    this.clock = options.clock ?? new SystemClock();
    this.retryMs = options.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS;
    if (!Number.isFinite(this.retryMs) || this.retryMs < 0) throw new RangeError('retryIntervalMs must be 0 or more');
    let servers;
    try {
      servers = parseServerList(options.server);
    } catch (err) {
      // A malformed address would otherwise be retried for ever as "unreachable".
      throw new LeaseClientError('BAD_REQUEST', `server address "${String(options.server)}": ${(err as Error).message}`);
    }
    const tlsFiles = { caFile: options.caFile, certFile: options.certFile, keyFile: options.keyFile };
    const plain = servers.find((a) => !a.secure);
    if (plain !== undefined && Object.values(tlsFiles).some((f) => f !== undefined)) {
      // Plain TCP or HTTP would quietly ignore the files: the operator meant TLS.
      throw new LeaseClientError('BAD_REQUEST', `caFile, certFile and keyFile are for tls:// and https:// servers; "${plain.text}" is plain ${plain.scheme === 'http' ? 'HTTP' : 'TCP'}`);
    }
    try {
      this.backoff = new Backoff(options.backoff, options.random);
    } catch (err) {
      throw new LeaseClientError('BAD_REQUEST', (err as Error).message);
    }
    if ((options.certFile === undefined) !== (options.keyFile === undefined)) {
      throw new LeaseClientError('BAD_REQUEST', 'a client certificate needs its key: give certFile and keyFile together');
    }
    try {
      this.tls = readTlsFiles(tlsFiles);
    } catch (err) {
      throw new LeaseClientError('INPUT_INVALID', (err as Error).message);
    }
    this.user = options.user ?? userInfo().username;
    this.host = options.host ?? hostname();
    this.instance = options.instance ?? (options.instanceFile ? readInstanceFile(options.instanceFile) : randomUUID());
    this.verifier = new LeaseVerifier(options, this, this.clock, (change) => this.emit('serverKeyChanged', change));
    this.server = new ServerConnection({
      servers,
      tls: this.tls,
      timeoutMs: options.requestTimeoutMs ?? 10_000,
      ...(options.resolveHost !== undefined ? { resolveHost: options.resolveHost } : {}),
      hello: () => ({ v: 1, client: { user: this.user, host: this.host, instance: this.instance }, ...(options.product ? { product: options.product } : {}) }),
      trust: (hello) => this.verifier.trustServer(hello['publicKey'] as JWK | undefined, hello['serverTimeMs']),
      onEvent: (msg) => this.pushed(msg),
      onConnected: (server) => this.emit('connected', { server }),
      onDropped: (message, server) => {
        if (this.state !== 'closed') this.emit('disconnected', { message, server });
        // Renew on a fresh connection soon, so a restarted server (or the next one) learns of the lease.
        if (this.state === 'held' && !this.renewing) this.schedule(this.backoff.next(), () => void this.renew());
      },
    });
    if (options.releaseOnExit) this.hookExit();
  }

  /** The lease held now, or null. */
  get lease(): LeaseInfo | null {
    return this.state === 'held' ? this.current : null;
  }

  /**
   * Resolves once a lease is held (at once if one already is). While no seat
   * is free or the server is unreachable it tries again every retry interval,
   * emitting `denied` each time; with retrying off it rejects with the reason.
   * Until it settles it keeps the process alive, however long the wait.
   */
  acquire(): Promise<LeaseInfo> {
    if (this.state === 'closed') return Promise.reject(new LeaseClientError('SHUTTING_DOWN', 'the lease client is closed'));
    if (this.state === 'held' && this.current !== null) return Promise.resolve(this.current);
    const promise = new Promise<LeaseInfo>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.keepProcessAlive(true);
    if (this.state === 'idle') {
      this.state = 'acquiring';
      void this.tryAcquire();
    }
    return promise;
  }

  /** Gives the lease back and stops renewing. Safe to call at any time, any number of times. */
  async release(): Promise<void> {
    this.cancelTimer();
    const lease = this.current;
    this.current = null;
    this.needsRegain = false;
    if (this.state !== 'closed') this.state = 'idle';
    this.settle(new LeaseClientError('SHUTTING_DOWN', 'released before a lease was granted'));
    const secret = this.withSecret();
    this.secret = null;
    const transport = this.server.open;
    if (lease === null || transport === null) return;
    try {
      await transport.request('release', { lease: lease.id, ...secret });
    } catch {
      // The server will expire it; nothing else to do.
    }
  }

  /** Releases the lease and closes the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed' && this.server.open === null) return;
    await this.release();
    this.state = 'closed';
    for (const [event, fn] of this.exitHooks.splice(0)) process.off(event, fn);
    this.server.close();
  }

  private settle(result: LeaseInfo | Error): void {
    this.keepProcessAlive(false);
    for (const w of this.waiters.splice(0)) {
      if (result instanceof Error) w.reject(result);
      else w.resolve(result);
    }
  }

  /**
   * The client's own timers and connection never keep the process alive (a held
   * lease must not stop a finished product from exiting, and releaseOnExit relies
   * on that). But someone awaiting acquire() is waiting on us: without a handle
   * here the process would end between retries and the await would never return.
   * So hold one for as long as acquire() is pending. It never fires; it only
   * counts as pending work for the event loop.
   */
  private keepProcessAlive(on: boolean): void {
    if (on && this.keepAlive === null) this.keepAlive = setInterval(() => {}, 1 << 30);
    if (!on && this.keepAlive !== null) {
      clearInterval(this.keepAlive);
      this.keepAlive = null;
    }
  }

  private cancelTimer(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  private schedule(delayMs: number, fn: () => void): void {
    this.cancelTimer();
    this.timer = this.clock.setTimer(delayMs, () => {
      this.timer = null;
      fn();
    });
  }

  /** Verifies a reply's lease token (and, with vendorPublicKey, its chain to the vendor); the lease runs out `expiresInMs` after `sentAt`. */
  private async verified(reply: Reply, sentAt: number): Promise<LeaseInfo> {
    const lease = await this.verifier.lease(reply);
    this.deadline = sentAt + lease.expiresInMs;
    return lease;
  }

  private retryOrFail(denial: DenialInfo & { permanent: boolean }, serverRetryAfterMs?: unknown): void {
    const retry = !denial.permanent && this.retryMs > 0;
    // A server that says not to come back before some time (storage fault, rate limit) is believed, within a
    // minute; other hints (the next expiry, for NO_FREE_SEATS) leave the client's own retry interval in charge.
    const wait = SERVER_PACED.has(denial.code) && typeof serverRetryAfterMs === 'number' && Number.isFinite(serverRetryAfterMs) && serverRetryAfterMs > 0
      ? Math.min(serverRetryAfterMs, MAX_SERVER_RETRY_AFTER_MS)
      : this.retryMs;
    this.emit('denied', { code: denial.code, message: denial.message, ...(denial.reason ? { reason: denial.reason } : {}), retryInMs: retry ? wait : null });
    if (retry) {
      this.schedule(wait, () => void this.tryAcquire());
      return;
    }
    this.state = 'idle';
    this.needsRegain = false;
    this.settle(new LeaseClientError(denial.code, denial.message, denial.reason));
  }

  private async tryAcquire(): Promise<void> {
    if (this.state !== 'acquiring') return;
    const sentAt = this.clock.monotonic();
    let reply: Reply;
    try {
      reply = await this.server.request('acquire', { ...(this.options.product ? { product: this.options.product } : {}), ...this.withSecret() });
    } catch (err) {
      if (this.state !== 'acquiring') return;
      const code = err instanceof LeaseClientError ? err.code : 'SERVER_UNREACHABLE';
      this.retryOrFail({ code, message: (err as Error).message, retryInMs: null, permanent: PERMANENT.has(code) });
      return;
    }
    if (this.state !== 'acquiring') {
      // Released or closed while the request was out: give back what came.
      if (reply.ok) {
        const secret = (reply as { leaseSecret?: unknown }).leaseSecret;
        void this.server.open?.request('release', { lease: String((reply as { lease?: { id?: unknown } }).lease?.id), ...(typeof secret === 'string' ? { leaseSecret: secret } : this.withSecret()) }).catch(() => {});
      }
      return;
    }
    if (!reply.ok) {
      const e: ReplyError = reply.error;
      this.retryOrFail({ code: e.code, message: e.message, ...(e.reason ? { reason: e.reason } : {}), retryInMs: null, permanent: PERMANENT.has(e.code) }, e.retryAfterMs);
      return;
    }
    let lease: LeaseInfo;
    try {
      lease = await this.verified(reply, sentAt);
    } catch (err) {
      this.retryOrFail({ code: 'TOKEN_INVALID', message: (err as Error).message, retryInMs: null, permanent: true });
      return;
    }
    const secret = (reply as { leaseSecret?: unknown }).leaseSecret;
    if (typeof secret === 'string') this.secret = secret;
    this.hold(lease, this.needsRegain ? 'regained' : 'acquired');
    this.needsRegain = false;
  }

  private withSecret(): { leaseSecret?: string } {
    return this.secret === null ? {} : { leaseSecret: this.secret };
  }

  private hold(lease: LeaseInfo, event: 'acquired' | 'renewed' | 'regained'): void {
    this.backoff.reset();
    this.current = lease;
    this.state = 'held';
    this.schedule(lease.renewAfterMs, () => void this.renew());
    this.emit(event, lease);
    this.settle(lease);
  }

  private async renew(): Promise<void> {
    const lease = this.current;
    if (this.state !== 'held' || lease === null || this.renewing) return;
    this.renewing = true;
    const sentAt = this.clock.monotonic();
    try {
      const reply = await this.server.request('renew', { lease: lease.id, ...this.withSecret() });
      if (this.current !== lease || this.state !== 'held') return;
      if (reply.ok) {
        this.hold(await this.verified(reply, sentAt), 'renewed');
        return;
      }
      const { code, message, reason } = reply.error;
      // A lease the server revoked (an operator, a removed key) comes back as LEASE_NOT_FOUND with the reason.
      if (code === 'LEASE_NOT_FOUND' && typeof reason === 'string') this.ended('revoked', reason);
      else if (code === 'LEASE_EXPIRED' || code === 'LEASE_NOT_FOUND' || code === 'LEASE_NOT_YOURS' || code === 'LEASE_SECRET_MISMATCH') this.ended('lost', message);
      else if (code === 'LICENSE_EXPIRED') this.ended('revoked', message);
      // UNAVAILABLE and the like, from every server asked: try again after the back-off.
      else this.renewLater();
    } catch (err) {
      if (this.current !== lease || this.state !== 'held') return;
      if (err instanceof LeaseClientError && err.code === 'TOKEN_INVALID') {
        this.ended('lost', err.message);
        return;
      }
      if (!(err instanceof TransportError) && !(err instanceof LeaseClientError)) throw err;
      this.renewLater();
    } finally {
      this.renewing = false;
    }
  }

  /** The server is unreachable: keep trying until the lease runs out, then report it lost. */
  private renewLater(): void {
    const left = this.deadline - this.clock.monotonic();
    if (left <= 0) {
      this.ended('lost', 'the server could not be reached before the lease expired');
      return;
    }
    const wait = Math.min(this.backoff.next(), left);
    this.schedule(wait, () => {
      if (this.deadline - this.clock.monotonic() <= 0) this.ended('lost', 'the server could not be reached before the lease expired');
      else void this.renew();
    });
  }

  /** The lease is gone: say so, then (if retrying) work to get one back. */
  private ended(event: 'lost' | 'revoked', reason: string): void {
    const lease = this.current;
    if (lease === null) return;
    this.cancelTimer();
    this.current = null;
    this.emit(event, { leaseId: lease.id, reason });
    if (this.state === 'closed') return;
    if (this.retryMs === 0) {
      this.state = 'idle';
      return;
    }
    this.state = 'acquiring';
    this.needsRegain = true;
    void this.tryAcquire();
  }

  private pushed(msg: Record<string, unknown>): void {
    const lease = this.current;
    if (lease === null || msg['lease'] !== lease.id) return;
    const reason = typeof msg['reason'] === 'string' ? msg['reason'] : String(msg['event']);
    if (msg['event'] === 'revoked') this.ended('revoked', reason);
    else if (msg['event'] === 'expired') this.ended('lost', 'the server expired the lease');
  }

  private hookExit(): void {
    const onSignal = (signal: unknown) => {
      for (const [event, fn] of this.exitHooks.splice(0)) process.off(event, fn);
      const done = () => {
        // Re-raise so the process ends the way it would have without us, unless someone else handles it.
        if (process.listenerCount(signal as string) === 0) process.kill(process.pid, signal as NodeJS.Signals);
      };
      const timer = setTimeout(done, 2000);
      void this.close().finally(() => {
        clearTimeout(timer);
        done();
      });
    };
    const onBeforeExit = () => void this.close();
    this.exitHooks.push(['SIGINT', onSignal], ['SIGTERM', onSignal], ['beforeExit', onBeforeExit]);
    for (const [event, fn] of this.exitHooks) process.on(event, fn);
  }
}
