import type { Config } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import { LEASE_OPS } from '../domain/door-rules.js';
import { deny, type Denial } from '../domain/errors.js';
import type { AdminApi } from '../adapters/http/admin-routes.js';
import { WebServer, type BoundWebListener } from '../adapters/http/web-server.js';
import type { PrometheusMetrics } from '../adapters/metrics/prometheus-metrics.js';
import type { ConnectionBudget } from '../adapters/net/connection-budget.js';
import { misdirectedHttpBody } from '../adapters/tcp/misdirected-http.js';
import { NdjsonProtocol } from '../adapters/tcp/ndjson-protocol.js';
import { TcpServer, type BackpressureState, type BoundListener } from '../adapters/tcp/tcp-server.js';
import type { TlsContext } from '../adapters/tls/tls-context.js';
import type { Timers } from '../adapters/tcp/timers.js';
import type { ServerLeaseApi } from './lease-api.js';
import type { OperatorWarnings } from './operator-warnings.js';
import type { ListenerStatus } from './status.js';
import { VERSION } from './version.js';

/** The NDJSON ops, as metric labels (anything else a client sends is "other"). */
const NDJSON_OPS: ReadonlySet<string> = new Set(LEASE_OPS);

export interface DoorsDeps {
  readonly config: Config;
  readonly clock: Clock;
  readonly api: ServerLeaseApi;
  readonly tls: TlsContext | null;
  readonly metrics: PrometheusMetrics;
  readonly warnings: OperatorWarnings;
  readonly budget: ConnectionBudget;
  readonly admin: AdminApi;
  /** For /readyz. */
  readonly readiness: () => { ready: boolean; reason: string };
  /** What the NDJSON connections' timeouts wait on (the event loop's timers when absent). */
  readonly timers?: Timers | undefined;
}

/**
 * The ways in: the NDJSON listeners (TCP and TLS) and the web endpoint (HTTP
 * and HTTPS), both over the one lease API, sharing one connection budget.
 */
export class Doors {
  private readonly protocol: NdjsonProtocol;
  private readonly tcp: TcpServer;
  private readonly web: WebServer;
  private tcpBound: BoundListener[] = [];
  private webBound: BoundWebListener[] = [];

  constructor(private readonly deps: DoorsDeps) {
    const { config, warnings } = deps;
    this.protocol = new NdjsonProtocol(deps.api, {
      identityFromCertificate: config.tls?.identityFromCertificate ?? false,
      requestFailed: (err, context) => warnings.requestFailed(err, context),
      clientMistake: (conn, code, detail) => warnings.clientMistake(conn.remote, conn.listener, code, detail),
    });
    this.tcp = this.ndjsonServer();
    this.web = this.webServer();
  }

  private ndjsonServer(): TcpServer {
    const { config, warnings, metrics, clock } = this.deps;
    return new TcpServer(
      {
        listeners: config.listeners,
        frameMaxBytes: config.frameMaxBytes,
        handshakeTimeoutMs: config.handshakeTimeoutSeconds * 1000,
        idleTimeoutMs: (config.idleTimeoutSeconds > 0 ? config.idleTimeoutSeconds : config.leaseSeconds + 60) * 1000,
        maxConnections: config.maxConnections,
        budget: this.deps.budget,
        maxConnectionsPerAddress: config.maxConnectionsPerAddress,
        replyBufferBytes: config.backpressure.connectionBytes,
        replyBufferTotalBytes: config.backpressure.totalBytes,
        drainTimeoutMs: config.backpressure.drainTimeoutSeconds * 1000,
        backlog: config.backlog,
        keepAliveMs: config.keepAliveSeconds * 1000,
        answered: (op, transport, seconds) => metrics.request(NDJSON_OPS.has(op) ? op : 'other', transport, seconds),
        monotonic: () => clock.monotonic(),
        tls: this.deps.tls,
        misdirectedHttp: () => misdirectedHttpBody(this.webBound),
        ...(this.deps.timers === undefined ? {} : { timers: this.deps.timers }),
      },
      this.protocol,
      {
        protocolError: (conn, code, detail) => warnings.clientMistake(conn.remote, conn.listener, code, detail),
        connectionRefused: (remote) => warnings.connectionRefused(remote),
        proxyRefused: (refusal) => warnings.proxyRefused(refusal),
        addressLimited: (remote, limit) => warnings.addressLimited(remote, limit),
        paused: () => metrics.paused(),
        slowReaderDropped: (conn, unsentBytes) => warnings.slowReaderDropped(conn.remote, unsentBytes),
        descriptorsExhausted: (code) => warnings.descriptorsExhausted(code),
      },
    );
  }

  private webServer(): WebServer {
    const { config, warnings, metrics, clock } = this.deps;
    return new WebServer(
      {
        listeners: [...config.http.listen, ...config.https.listen],
        tls: this.deps.tls,
        backlog: config.backlog,
        bodyLimitBytes: config.http.bodyMaxBytes,
        requestTimeoutMs: config.http.requestTimeoutSeconds * 1000,
        budget: this.deps.budget,
        keepAliveTimeoutMs: 65_000,
        handshakeTimeoutMs: config.http.requestTimeoutSeconds * 1000,
        identityFromCertificate: config.tls?.identityFromCertificate ?? false,
        version: VERSION,
        metricsAuth: config.metrics.auth,
      },
      {
        api: this.deps.api,
        ready: () => this.deps.readiness(),
        requestFailed: (err, context) => warnings.requestFailed(err, context),
        metrics: () => metrics.text(),
        answered: (route, transport, seconds) => metrics.request(route, transport, seconds),
        monotonic: () => clock.monotonic(),
        proxyRefused: (refusal) => warnings.proxyRefused(refusal),
        admin: this.deps.admin,
        adminRefused: (remote, why) => warnings.adminRefused(remote, why),
        adminFailuresCapped: (retryAfterMs) => warnings.adminFailuresCapped(retryAfterMs),
        wallClock: () => clock.now(),
        connectionRefused: (remote) => warnings.connectionRefused(remote),
        descriptorsExhausted: (code) => warnings.descriptorsExhausted(code),
      },
    );
  }

  /** Listens on every NDJSON listener, then the web endpoint's. */
  async start(): Promise<BoundListener[]> {
    this.tcpBound = await this.tcp.start();
    this.webBound = await this.web.start();
    return this.tcpBound;
  }

  /** Stops accepting and finishes what is in flight. */
  async stop(): Promise<void> {
    await Promise.all([this.tcp.stop(), this.web.stop()]);
  }

  /** After the store has drained: no more replies will be written. */
  close(): void {
    this.protocol.close();
  }

  /** The NDJSON listeners as bound. */
  ndjson(): readonly BoundListener[] {
    return this.tcpBound;
  }

  /** The web endpoint's routes. */
  webRoutes(): ReadonlyArray<{ method: string; url: string }> {
    return this.web.routes();
  }

  /** Every listening socket: the NDJSON ones first, then the web endpoint's. */
  listenerStatus(): ListenerStatus[] {
    const tls = new Set(this.deps.config.listeners.filter((l) => l.tls).map((l) => l.name));
    return [
      ...this.tcpBound.map((b) => ({ name: b.name, scheme: tls.has(b.name) ? ('tls' as const) : ('tcp' as const), address: b.address, port: b.port, suspended: this.tcp.suspension.has(b.name) })),
      ...this.webBound.map((b) => ({ name: b.name, scheme: b.tls ? ('https' as const) : ('http' as const), address: b.address, port: b.port, suspended: this.web.suspension.has(b.name) })),
    ];
  }

  /** Listeners suspended now (status shows them; /readyz answers 503 while any is). */
  suspended(): string[] {
    return [...new Set(this.listenerStatus().filter((l) => l.suspended).map((l) => l.name))];
  }

  /** Whether a listener (NDJSON or web) is suspended now. */
  isSuspended(listener: string): boolean {
    return this.tcp.suspension.has(listener) || this.web.suspension.has(listener);
  }

  /** Suspends or resumes lease listeners (one by name, or all), NDJSON and web alike. */
  suspend(listener: string | null, suspend: boolean): { ok: true; suspended: string[] } | Denial {
    const names = [...new Set(this.listenerStatus().map((l) => l.name))];
    if (listener !== null && !names.includes(listener)) return deny('BAD_REQUEST', `no listener is named "${listener}" (listeners: ${names.join(', ')})`, { field: 'listener' });
    const which = listener === null ? null : [listener];
    const tcp = suspend ? this.tcp.suspension.suspend(which) : this.tcp.suspension.resume(which);
    const web = suspend ? this.web.suspension.suspend(which) : this.web.suspension.resume(which);
    return { ok: true, suspended: [...new Set([...tcp, ...web])].sort() };
  }

  connections(): number {
    return this.tcp.connections();
  }

  backpressure(): BackpressureState {
    return this.tcp.backpressure();
  }
}
