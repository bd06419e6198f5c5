import type { Config } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import type { Logger } from '../adapters/log/logger.js';
import type { PrometheusMetrics } from '../adapters/metrics/prometheus-metrics.js';
import type { ProxyRefusal } from '../adapters/net/proxy-protocol.js';
import type { ConnectionBudget } from '../adapters/net/connection-budget.js';
import { WarningThrottle } from './warning-throttle.js';

/**
 * What the doors report that an operator may need to hear of — limits hit,
 * refusals, client mistakes, unforeseen failures — each throttled so that no
 * peer can turn it into a flood of log lines, and each counted in the metrics.
 */
export class OperatorWarnings {
  private readonly proxyWarnings = new WarningThrottle(60_000);
  private readonly adminWarnings = new WarningThrottle(60_000);
  /** Abuse limits and slow readers: one warning a minute per kind and address. */
  private readonly limitWarnings = new WarningThrottle(60_000);
  /** Client mistakes: one debug line per address every 10 s. */
  private readonly mistakeLines = new WarningThrottle(10_000);
  /** Unforeseen request failures: one error line (with its stack) per op or route a minute. */
  private readonly failureLines = new WarningThrottle(60_000);
  private refusedConnections = 0;
  private lastRefusalWarning = -Infinity;

  constructor(
    private readonly config: Config,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly metrics: PrometheusMetrics,
    private readonly budget: ConnectionBudget,
    /** The soft file-descriptor limit, read at start (null: it could not be read). */
    readonly fdLimit: number | null,
  ) {}

  /** A refused admin request: warn with the remote address, at most once a minute per address. */
  adminRefused(remote: string, why: string): void {
    const admitted = this.adminWarnings.admit(remote, this.clock.monotonic());
    if (admitted === null) return;
    this.logger.warn({ remote, why, heldBack: admitted.held }, `admin API request from ${remote} refused: ${why}` + heldNote(admitted.held, 'refused since the last warning'));
  }

  /** Wrong admin credentials passed the global cap. */
  adminFailuresCapped(retryAfterMs: number): void {
    this.limitWarning('admin-authentication', '', (held) =>
      `failed admin authentications passed the global cap (20 at once, 1 a second): wrong credentials are answered 429 for ${Math.ceil(retryAfterMs / 1000)} s; correct ones are still accepted` +
      (held > 0 ? `; ${held} more over the cap since the last warning` : ''));
  }

  /**
   * A client's mistake (a malformed request, an unknown op, a framing error, a timeout) is its
   * problem, not the operator's: debug, at most one line per address every 10 s, counting the rest.
   */
  clientMistake(remote: string, listener: string, code: string, detail: string): void {
    if (!this.logger.isLevelEnabled('debug')) return;
    const admitted = this.mistakeLines.admit(remote, this.clock.monotonic());
    if (admitted === null) return;
    this.logger.debug({ remote, listener, code, detail, heldBack: admitted.held }, 'protocol error' + (admitted.held > 0 ? ` (${admitted.held} more from ${remote} since the last one)` : ''));
  }

  /** A request that failed for a reason nobody foresaw: logged with its stack, but no peer can make that a flood. */
  requestFailed(err: unknown, context: Record<string, unknown>): void {
    const where = typeof context['op'] === 'string' ? `op ${context['op']}` : typeof context['route'] === 'string' ? `${String(context['method'])} ${context['route']}` : 'other';
    const admitted = this.failureLines.admit(where.slice(0, 200), this.clock.monotonic());
    if (admitted === null) return;
    this.logger.error({ err, ...context, heldBack: admitted.held }, 'request failed' + (admitted.held > 0 ? ` (${admitted.held} more failures of ${where} since the last one)` : ''));
  }

  /** Out of file descriptors: new connections are reset before floatd sees them; warn at most once a minute. */
  descriptorsExhausted(code: string): void {
    this.metrics.limitHit('file_descriptors');
    const limit = this.fdLimit;
    this.limitWarning('descriptors', '', (held) =>
      `out of file descriptors (${code}${limit === null ? '' : `, limit ${limit}`}, ${this.budget.inUse} connections open over all listeners): new connections are reset before floatd sees them; ` +
      'raise the limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower maxConnections' + (held > 0 ? ` (found out of them ${held} more time(s) since the last warning)` : ''));
  }

  /** The connection cap was hit: warn at most once a minute, with how many were refused. */
  connectionRefused(remote: string): void {
    this.metrics.limitHit('max_connections');
    this.refusedConnections++;
    const now = this.clock.monotonic();
    if (now - this.lastRefusalWarning < 60_000) return;
    this.lastRefusalWarning = now;
    const max = this.config.maxConnections;
    this.logger.warn(
      { refused: this.refusedConnections, maxConnections: max, remote },
      `connection refused: the server holds its maximum of ${max} connections over all listeners (maxConnections), none of them an idle web connection to close; ${this.refusedConnections} refused so far`,
    );
  }

  /** A client address holds its maximum of connections (maxConnectionsPerAddress). */
  addressLimited(remote: string, limit: number): void {
    this.metrics.limitHit('max_connections_per_address');
    this.limitWarning('connections', remote, (held) =>
      `connection from ${remote} refused: it holds its maximum of ${limit} connections (maxConnectionsPerAddress)` + (held > 0 ? `; ${held} more refused since the last warning` : ''));
  }

  /** A connection that did not read its replies was dropped (its leases are kept). */
  slowReaderDropped(remote: string, unsentBytes: number): void {
    this.metrics.slowReaderDropped();
    this.limitWarning('slow-reader', remote, (held) =>
      `connection from ${remote} dropped: it did not read its replies (${unsentBytes} bytes unsent for ${this.config.backpressure.drainTimeoutSeconds} s, backpressure.drainTimeoutSeconds); its leases are kept` +
      (held > 0 ? `; ${held} more from this address dropped since the last warning` : ''));
  }

  /** An acquisition refused by acquireRateLimit: counted, and warned of once a minute per address. */
  acquireRateLimited(remote: string, retryAfterMs: number): void {
    this.metrics.limitHit('acquire_rate');
    const limit = this.config.acquireRateLimit!;
    this.limitWarning('acquire-rate', remote, (held) =>
      `acquisition from ${remote} refused: more than ${limit.perSecond} a second, ${limit.burst} at once (acquireRateLimit); next allowed in ${retryAfterMs} ms` +
      (held > 0 ? `; ${held} more refused since the last warning` : ''));
  }

  /** A connection without a valid PROXY header from a trusted proxy was closed: warn at most once a minute per source address. */
  proxyRefused(r: ProxyRefusal): void {
    const admitted = this.proxyWarnings.admit(r.source, this.clock.monotonic());
    if (admitted === null) return;
    this.logger.warn(
      { listener: r.listener, source: r.source, reason: r.reason, heldBack: admitted.held },
      `PROXY protocol: connection from ${r.source} to listener "${r.listener}" refused: ${r.detail}` + heldNote(admitted.held, 'from this address refused since the last warning'),
    );
  }

  /** A warning of a limit hit, at most once a minute per kind and address, with how many were held back. */
  private limitWarning(kind: string, remote: string, message: (held: number) => string): void {
    const admitted = this.limitWarnings.admit(`${kind}\u0000${remote}`, this.clock.monotonic());
    if (admitted === null) return;
    this.logger.warn({ limit: kind, ...(remote === '' ? {} : { remote }), heldBack: admitted.held }, message(admitted.held));
  }
}

function heldNote(held: number, what: string): string {
  return held > 0 ? ` (${held} more ${what})` : '';
}
