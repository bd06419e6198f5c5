import { rmSync } from 'node:fs';
import type { JWK } from 'jose';
import type { Config, RulesSettings } from '../config/config.js';
import type { Clock, TimerHandle } from '../domain/clock.js';
import { deny, FloatdError, type Denial } from '../domain/errors.js';
import { licenseValidity, type LicenseKey } from '../domain/license.js';
import { EVALUATION_POOL_ID } from '../domain/pool.js';
import { OPEN_GATE } from '../domain/gate.js';
import { RuleGate } from '../domain/rules/rule-gate.js';
import type { AdminTokenStore, LeaseStore } from '../domain/ports.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { thumbprint } from '../adapters/crypto/keys.js';
import { LeaseTokenSigner } from '../adapters/crypto/lease-tokens.js';
import { createLogger, type Logger } from '../adapters/log/logger.js';
import type { DataDirLock } from '../adapters/sqlite/data-dir-lock.js';
import type { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import { TcpServer, type BoundListener } from '../adapters/tcp/tcp-server.js';
import { licensingFor, licensingSettings, openServerDataDir, openServerKey, recordLicensingSettings, removeFreshDatabase, type LicensingSettings } from './data-dir.js';
import { LeaseService } from './lease-service.js';
import { Licensing, type LoadedLicenses } from './licensing.js';
import { EVALUATION_PRODUCT, PoolRegistry } from './pool-registry.js';
import { NdjsonProtocol } from '../adapters/tcp/ndjson-protocol.js';
import { Batcher } from './batcher.js';
import { ServerLeaseApi } from './lease-api.js';
import { loadRules, type FileError, type LoadedRules } from './rules.js';
import { collectStatus, type ListenerStatus, type ServerStatus } from './status.js';
import { TlsContext } from '../adapters/tls/tls-context.js';
import { PrometheusMetrics, type MetricsState } from '../adapters/metrics/prometheus-metrics.js';
import { WebServer, type BoundWebListener } from '../adapters/http/web-server.js';
import type { ProxyRefusal } from '../adapters/net/proxy-protocol.js';
import { WarningThrottle } from './warning-throttle.js';
import { TokenBuckets } from './rate-limit.js';
import { descriptorHeadroom, softFdLimit } from '../config/fd-limit.js';
import { AdminService, AdminTokens } from './admin.js';
import type { AdminApi } from '../adapters/http/admin-routes.js';
import { Sweeper } from './sweeper.js';
import { ClockWatch, type ClockJump } from './clock-watch.js';
import { SteadyClock } from '../domain/steady-clock.js';
import { VERSION } from './version.js';

const DAY_MS = 86_400_000;
const MAINTENANCE_MS = 1000;
export const RUNTIME_META = 'runtime';

/** The running server as it records itself in its data directory. */
export interface ServerRuntime {
  readonly pid: number;
  readonly startedAt: number;
  readonly listeners: readonly ListenerStatus[];
  /** The CLT rules in force, as `status` shows them. */
  readonly rules: string | null;
}

export interface FloatdDeps {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /**
   * Where rules come from on reload (`serve` re-reads the config file, so
   * inline rules can change too). Defaults to the settings in `config`.
   */
  readonly rulesSettings?: () => RulesSettings;
  /** Make a server key where the data directory has none beside its database (`serve --new-server-key`). */
  readonly newServerKey?: boolean;
}

export type RulesReload =
  | { readonly ok: true; readonly summary: string }
  | { readonly ok: false; readonly message: string; readonly errors: readonly FileError[] };

/**
 * The composition root: builds every part of a running server from Config,
 * and starts and stops them in order.
 */
export class Floatd {
  /** Lease time: wall-clock time that only the monotonic clock moves (see ClockWatch). */
  readonly clock: SteadyClock;
  readonly logger: Logger;
  readonly pools = new PoolRegistry();
  readonly leases: LeaseService;
  private readonly sweeper: Sweeper;
  private readonly clockWatch: ClockWatch;
  private readonly tcp: TcpServer;
  readonly metrics: PrometheusMetrics;
  private readonly web: WebServer;
  private readonly tls: TlsContext | null;
  private webBound: BoundWebListener[] = [];
  private readonly protocol: NdjsonProtocol;
  readonly batcher: Batcher;
  readonly api: ServerLeaseApi;
  private bound: BoundListener[] = [];
  private rejected: LoadedLicenses['rejected'] = [];
  private maintenance: TimerHandle | null = null;
  private lastChange = -1;
  private lastPrune = 0;
  private keyStates = new Map<string, string>();
  /** The tightest expiry warning (30, 14, 7, 1 days) given per key. */
  private expiryWarned = new Map<string, number>();
  private refusedConnections = 0;
  private lastRefusalWarning = -Infinity;
  private readonly proxyWarnings = new WarningThrottle(60_000);
  private readonly adminWarnings = new WarningThrottle(60_000);
  /** Abuse limits and slow readers: one warning a minute per kind and address. */
  private readonly limitWarnings = new WarningThrottle(60_000);
  /** Bumped by every change status shows (leases, pools, listeners, rules): the status snapshot is recomputed after one. */
  private statusGeneration = 0;
  /** The soft file-descriptor limit, read at start (out of descriptors, it could not be read). */
  private readonly fdLimit = softFdLimit();
  private statusSnapshot: { readonly generation: number; readonly at: number; readonly status: ServerStatus } | null = null;
  /** Client mistakes: one debug line per address every 10 s. */
  private readonly mistakeLines = new WarningThrottle(10_000);
  /** Unforeseen request failures: one error line (with its stack) per op or route a minute. */
  private readonly failureLines = new WarningThrottle(60_000);
  private readonly adminTokens: AdminTokens;
  private readonly admin: AdminService;
  private started = false;
  /** This start made the data directory: a start that fails removes it again, leaving nothing behind. */
  private createdDataDir = false;
  private serving = false;
  private startedAt = 0;
  private stopped = false;
  private reloading: Promise<void> | null = null;
  private rules: LoadedRules;
  private readonly rulesSettings: () => RulesSettings;

  private constructor(
    readonly config: Config,
    readonly store: LeaseStore,
    private readonly lock: DataDirLock,
    private readonly settings: LicensingSettings,
    private readonly licensing: Licensing,
    private readonly fingerprint: string,
    publicJwk: JWK,
    signer: LeaseTokenSigner,
    rules: LoadedRules,
    deps: { clock: SteadyClock; logger: Logger; rulesSettings: () => RulesSettings; tls: TlsContext | null },
  ) {
    this.tls = deps.tls;
    this.clock = deps.clock;
    this.logger = deps.logger;
    this.rules = rules;
    this.rulesSettings = deps.rulesSettings;
    this.metrics = new PrometheusMetrics(VERSION, () => this.metricsState());
    const metrics = this.metrics;
    this.leases = new LeaseService(
      store,
      this.clock,
      this.pools,
      { leaseMs: config.leaseSeconds * 1000, logLevel: config.leaseLog.level },
      {
        leaseEnded: (lease, kind, reason) => {
          this.statusGeneration++;
          metrics.ended(kind);
          this.api.leaseEnded(lease, kind, reason);
        },
        expiryScheduled: (at) => this.sweeper.expiryAt(at),
        tally: (t) => {
          if (t.kind !== 'denied') this.statusGeneration++;
          if (t.kind === 'denied') metrics.denied(t.code, t.reason);
          else if (t.kind === 'granted') metrics.granted(t.product);
          else metrics.renewed(t.product);
        },
      },
    );
    this.sweeper = new Sweeper(
      this.clock,
      () => {
        const n = this.leases.sweep();
        if (n > 0) this.logger.debug({ expired: n }, 'leases expired');
      },
      () => store.nextExpiry(),
      (err) => this.logger.error({ err }, 'sweeping expired leases failed'),
      60_000,
      (lag) => metrics.swept(lag),
    );
    this.clockWatch = new ClockWatch(this.clock, store, this.leases);
    this.batcher = new Batcher(store, this.clock, (n, seconds) => metrics.committed(n, seconds));
    this.api = new ServerLeaseApi({
      leases: this.leases,
      batcher: this.batcher,
      signer,
      clock: this.clock,
      publicJwk,
      status: () => this.status(),
      groupsOf: (user) => this.rules.groups.get(user) ?? [],
      ...(config.acquireRateLimit === null
        ? {}
        : { acquireRate: new TokenBuckets(config.acquireRateLimit), rateLimited: (remote: string, retryAfterMs: number) => this.acquireRateLimited(remote, retryAfterMs) }),
    });
    this.adminTokens = new AdminTokens(store as unknown as AdminTokenStore, this.clock);
    this.admin = new AdminService({ store, leases: this.leases, batcher: this.batcher, clock: this.clock });
    this.protocol = new NdjsonProtocol(this.api, {
      identityFromCertificate: config.tls?.identityFromCertificate ?? false,
      requestFailed: (err, context) => this.requestFailed(err, context),
      clientMistake: (conn, code, detail) => this.clientMistake(conn.remote, conn.listener, code, detail),
    });
    this.tcp = new TcpServer(
      {
        listeners: config.listeners,
        frameMaxBytes: config.frameMaxBytes,
        handshakeTimeoutMs: config.handshakeTimeoutSeconds * 1000,
        idleTimeoutMs: (config.idleTimeoutSeconds > 0 ? config.idleTimeoutSeconds : config.leaseSeconds + 60) * 1000,
        maxConnections: config.maxConnections,
        maxConnectionsPerAddress: config.maxConnectionsPerAddress,
        replyBufferBytes: config.backpressure.connectionBytes,
        replyBufferTotalBytes: config.backpressure.totalBytes,
        drainTimeoutMs: config.backpressure.drainTimeoutSeconds * 1000,
        backlog: config.backlog,
        keepAliveMs: config.keepAliveSeconds * 1000,
        answered: (op, transport, seconds) => metrics.request(NDJSON_OPS.has(op) ? op : 'other', transport, seconds),
        monotonic: () => this.clock.monotonic(),
        tls: this.tls,
      },
      this.protocol,
      {
        protocolError: (conn, code, detail) => this.clientMistake(conn.remote, conn.listener, code, detail),
        connectionRefused: (remote) => this.connectionRefused(remote),
        proxyRefused: (refusal) => this.proxyRefused(refusal),
        addressLimited: (remote, limit) => {
          metrics.limitHit('max_connections_per_address');
          this.limitWarning('connections', remote, (held) =>
            `connection from ${remote} refused: it holds its maximum of ${limit} connections (maxConnectionsPerAddress)` + (held > 0 ? `; ${held} more refused since the last warning` : ''));
        },
        paused: () => metrics.paused(),
        slowReaderDropped: (conn, unsentBytes) => {
          metrics.slowReaderDropped();
          this.limitWarning('slow-reader', conn.remote, (held) =>
            `connection from ${conn.remote} dropped: it did not read its replies (${unsentBytes} bytes unsent for ${config.backpressure.drainTimeoutSeconds} s, backpressure.drainTimeoutSeconds); its leases are kept` +
            (held > 0 ? `; ${held} more from this address dropped since the last warning` : ''));
        },
        descriptorsExhausted: (code, connections) => {
          metrics.limitHit('file_descriptors');
          const limit = this.fdLimit;
          this.limitWarning('descriptors', '', (held) =>
            `out of file descriptors (${code}${limit === null ? '' : `, limit ${limit}`}, ${connections} NDJSON connections open): new connections are reset before floatd sees them; ` +
            'raise the limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower maxConnections' + (held > 0 ? ` (found out of them ${held} more time(s) since the last warning)` : ''));
        },
      },
    );
    this.web = new WebServer(
      {
        listeners: [...config.http.listen, ...config.https.listen],
        tls: this.tls,
        backlog: config.backlog,
        bodyLimitBytes: config.frameMaxBytes,
        requestTimeoutMs: config.handshakeTimeoutSeconds * 1000,
        keepAliveTimeoutMs: 65_000,
        handshakeTimeoutMs: config.handshakeTimeoutSeconds * 1000,
        identityFromCertificate: config.tls?.identityFromCertificate ?? false,
        version: VERSION,
        metricsAuth: config.metrics.auth,
      },
      {
        api: this.api,
        ready: () => this.readiness(),
        requestFailed: (err, context) => this.requestFailed(err, context),
        metrics: () => metrics.text(),
        answered: (route, transport, seconds) => metrics.request(route, transport, seconds),
        monotonic: () => this.clock.monotonic(),
        proxyRefused: (refusal) => this.proxyRefused(refusal),
        admin: this.adminApi(),
        adminRefused: (remote, why) => this.adminRefused(remote, why),
      },
    );
    this.applyRules(rules);
  }

  /** The admin API's use cases, for the web endpoint's /v1/admin routes; every change is logged with its actor. */
  private adminApi(): AdminApi {
    const subjects = this.config.admin.certificateSubjects;
    return {
      authenticate: (bearer, subject) => {
        if (bearer !== null && bearer.trim() !== '') return this.adminTokens.actorOf(bearer);
        return subject !== null && subjects.includes(subject) ? `cert:${subject}` : null;
      },
      leases: (filter) => this.admin.leases(filter),
      revoke: async (id, reason, actor) => {
        const outcome = await this.admin.revoke(id, reason, actor);
        if (outcome.ok) this.logger.warn({ lease: outcome.lease.id, user: outcome.lease.user, host: outcome.lease.host, actor, reason }, `lease ${outcome.lease.id} of ${outcome.lease.user}@${outcome.lease.host} revoked by ${actor}: ${reason}`);
        return outcome;
      },
      reloadRules: (actor) => {
        this.logger.info({ actor }, 'rules reload asked through the admin API');
        return this.reloadRules();
      },
      reloadTls: (actor) => {
        const outcome = this.reloadTls();
        if (outcome.ok) this.admin.record('tls-reloaded', actor, outcome.message);
        return outcome;
      },
      suspend: (listener, actor) => this.suspendListeners(listener, actor, true),
      resume: (listener, actor) => this.suspendListeners(listener, actor, false),
      log: (filter) => this.admin.log(filter),
    };
  }

  /** Suspends or resumes lease listeners (one by name, or all), NDJSON and web alike. */
  private suspendListeners(listener: string | null, actor: string, suspend: boolean): { ok: true; suspended: string[] } | Denial {
    const names = [...new Set(this.listenerStatus().map((l) => l.name))];
    if (listener !== null && !names.includes(listener)) return deny('BAD_REQUEST', `no listener is named "${listener}" (listeners: ${names.join(', ')})`, { field: 'listener' });
    const which = listener === null ? null : [listener];
    const tcp = suspend ? this.tcp.suspension.suspend(which) : this.tcp.suspension.resume(which);
    const web = suspend ? this.web.suspension.suspend(which) : this.web.suspension.resume(which);
    const suspended = [...new Set([...tcp, ...web])].sort();
    this.statusGeneration++;
    this.recordRuntime();
    const what = listener === null ? 'every listener' : `listener "${listener}"`;
    this.admin.record(suspend ? 'listener-suspended' : 'listener-resumed', actor, `${what} ${suspend ? 'suspended' : 'resumed'}; suspended now: ${suspended.join(', ') || 'none'}`);
    this.logger.warn({ actor, listener, suspended }, `${what} ${suspend ? 'suspended: new lease connections are refused' : 'resumed'} by ${actor}`);
    return { ok: true, suspended };
  }

  /** Listeners suspended now (status shows them; /readyz answers 503 while any is). */
  suspendedListeners(): string[] {
    return [...new Set(this.listenerStatus().filter((l) => l.suspended).map((l) => l.name))];
  }

  /** A refused admin request: warn with the remote address, at most once a minute per address. */
  private adminRefused(remote: string, why: string): void {
    const admitted = this.adminWarnings.admit(remote, this.clock.monotonic());
    if (admitted === null) return;
    this.logger.warn({ remote, why, heldBack: admitted.held }, `admin API request from ${remote} refused: ${why}` + (admitted.held > 0 ? ` (${admitted.held} more refused since the last warning)` : ''));
  }

  /**
   * A client's mistake (a malformed request, an unknown op, a framing error, a timeout) is its
   * problem, not the operator's: debug, at most one line per address every 10 s, counting the rest.
   */
  private clientMistake(remote: string, listener: string, code: string, detail: string): void {
    if (!this.logger.isLevelEnabled('debug')) return;
    const admitted = this.mistakeLines.admit(remote, this.clock.monotonic());
    if (admitted === null) return;
    this.logger.debug({ remote, listener, code, detail, heldBack: admitted.held }, 'protocol error' + (admitted.held > 0 ? ` (${admitted.held} more from ${remote} since the last one)` : ''));
  }

  /** A request that failed for a reason nobody foresaw: logged with its stack, but no peer can make that a flood. */
  private requestFailed(err: unknown, context: Record<string, unknown>): void {
    const where = typeof context['op'] === 'string' ? `op ${context['op']}` : typeof context['route'] === 'string' ? `${String(context['method'])} ${context['route']}` : 'other';
    const admitted = this.failureLines.admit(where.slice(0, 200), this.clock.monotonic());
    if (admitted === null) return;
    this.logger.error({ err, ...context, heldBack: admitted.held }, 'request failed' + (admitted.held > 0 ? ` (${admitted.held} more failures of ${where} since the last one)` : ''));
  }

  /** What the metrics show of the server's state at a scrape. */
  private metricsState(): MetricsState {
    const now = this.clock.now();
    const inUse = new Map<string, number>();
    let earliest: number | null = null;
    for (const lease of this.store.allLeases()) {
      if (lease.expiresAt <= now) continue;
      inUse.set(lease.poolId, (inUse.get(lease.poolId) ?? 0) + 1);
      if (earliest === null || lease.expiresAt < earliest) earliest = lease.expiresAt;
    }
    return {
      pools: this.pools.all().map((p) => ({ pool: p.id, product: p.product === '*' ? EVALUATION_PRODUCT : p.product, seats: p.seats, inUse: inUse.get(p.id) ?? 0 })),
      keys: this.pools.licenseKeys().map((k) => ({ key: k.id, product: k.product, expiresAt: k.expiresAt })),
      connections: this.tcp.connections(),
      unsentReplyBytes: this.tcp.backpressure().unsentBytes,
      pausedConnections: this.tcp.backpressure().pausedConnections,
      earliestExpiry: earliest,
      now,
    };
  }

  /** For /readyz: leases can be served once started, until stopping begins. */
  readiness(): { ready: boolean; reason: string } {
    if (this.stopped) return { ready: false, reason: 'stopping' };
    if (!this.serving) return { ready: false, reason: 'starting' };
    const suspended = this.suspendedListeners();
    if (suspended.length > 0) return { ready: false, reason: `suspended: ${suspended.join(', ')}` };
    return { ready: true, reason: 'serving' };
  }

  /**
   * Re-reads the TLS certificate and key (SIGHUP, or when the files change).
   * A bad new pair is refused and logged; the pair in use stays.
   */
  reloadTls(): { ok: boolean; message: string } {
    if (this.tls === null) return { ok: true, message: 'no TLS listener' };
    try {
      const cert = this.tls.reload();
      this.logCertificate('TLS certificate reloaded');
      return { ok: true, message: `TLS certificate reloaded: ${cert.subject}, expires ${new Date(cert.validTo).toISOString()}` };
    } catch (err) {
      if (!(err instanceof FloatdError)) throw err;
      this.logger.error({ code: err.code, setting: err.details['setting'] }, `TLS certificate reload refused, the one in use stays: ${err.message}`);
      return { ok: false, message: err.message };
    }
  }

  private logCertificate(msg: string): void {
    if (this.tls === null) return;
    const cert = this.tls.certificate();
    const info = { subject: cert.subject, issuer: cert.issuer, expires: new Date(cert.validTo).toISOString(), sha256: cert.fingerprint256 };
    this.logger.info(info, msg);
    const daysLeft = Math.floor((cert.validTo - this.clock.now()) / DAY_MS);
    if (daysLeft < 0) this.logger.error(info, 'the TLS certificate has expired: clients will refuse it; install a new one (tls.certFile) and reload');
    else if (daysLeft <= 30) this.logger.warn({ ...info, daysLeft }, `the TLS certificate expires in ${daysLeft} day(s): install a new one (tls.certFile) and reload`);
  }

  private applyRules(rules: LoadedRules): void {
    this.statusGeneration++;
    this.rules = rules;
    this.leases.setGate(rules.book === null ? OPEN_GATE : new RuleGate(rules.book));
  }

  /**
   * Re-reads the rules and groups (SIGHUP, `floatd rules reload`). A file
   * with errors is refused and the rules in force stay; either way the
   * outcome is logged and recorded in the lease log.
   */
  reloadRules(): RulesReload {
    const now = this.clock.now();
    try {
      const rules = loadRules(this.rulesSettings());
      this.applyRules(rules);
      if (this.bound.length > 0) this.recordRuntime();
      this.logger.info({ rules: rules.book?.size ?? 0 }, `rules reloaded: ${rules.summary}`);
      this.store.appendEvent({ ts: now, event: 'rules-reloaded', message: rules.summary });
      return { ok: true, summary: rules.summary };
    } catch (err) {
      if (!(err instanceof FloatdError)) throw err;
      const errors = (err.details.errors as FileError[] | undefined) ?? [];
      this.logger.error({ code: err.code, errors }, `rules reload refused, the previous rules stay in force: ${err.message}`);
      this.store.appendEvent({ ts: now, event: 'rules-rejected', code: err.code, message: err.message });
      return { ok: false, message: err.message, errors };
    }
  }

  static async create(config: Config, deps: FloatdDeps = {}): Promise<Floatd> {
    // Every part of the server decides on lease time; only ClockWatch compares it with the wall clock.
    const clock = new SteadyClock(deps.clock ?? new SystemClock());
    const logger = deps.logger ?? createLogger(config.log);
    const settings = licensingSettings(config);
    const rulesSettings = deps.rulesSettings ?? (() => config.rules);
    const rules = loadRules(rulesSettings());
    // The certificate and key are settings too: checked before the data directory is touched.
    const tls = config.tls === null ? null : new TlsContext(config.tls);
    const { store, lock, created, freshDatabase, tightened } = openServerDataDir(config);
    try {
      const { key, created: newKey } = await openServerKey(config, freshDatabase, deps.newServerKey ?? false);
      for (const t of tightened) {
        logger.info({ file: t.path, mode: t.mode }, `${t.path} was mode ${t.mode}; made private (0700 for the folder, 0600 for files): the data directory holds license keys, the lease log with user and host names, and the server's signing key`);
      }
      if (freshDatabase && !newKey) {
        logger.warn({ file: config.dbFile, serverKey: config.serverKeyFile }, `${config.dataDir} holds a server key but no database: starting with a new, empty one (no license keys installed, a new evaluation); if that is not meant, stop the server and restore ${config.dbFile} from a backup`);
      } else if (newKey && !freshDatabase) {
        logger.warn({ file: config.serverKeyFile }, `new server key made (--new-server-key): its fingerprint is ${await thumbprint(key.publicJwk)}; clients that pinned the old one refuse this server until given it`);
      }
      const signer = await LeaseTokenSigner.create(key.privateJwk);
      const licensing = await licensingFor(store, clock, settings);
      const floatd = new Floatd(config, store, lock, settings, licensing, await thumbprint(key.publicJwk), key.publicJwk, signer, rules, { clock, logger, rulesSettings, tls });
      floatd.createdDataDir = created;
      return floatd;
    } catch (err) {
      store.close();
      // A first start that failed this early leaves no database without its key behind.
      if (freshDatabase) removeFreshDatabase(config);
      lock.release();
      throw err;
    }
  }

  /**
   * Loads the keys, listens, and only then records the start (the evaluation
   * clock, the settings commands read, the runtime record): a start that fails
   * leaves no trace but its error. A half-started server is stopped again.
   */
  async start(): Promise<BoundListener[]> {
    if (this.started) return this.bound;
    if (this.stopped) throw new FloatdError('SHUTTING_DOWN', 'this server was stopped; create a new one');
    this.started = true;
    try {
      // Pools first (quietly), so the first requests after listening are served.
      await this.licensing.loadPools(this.pools, this.config.evaluation);
      this.bound = await this.tcp.start();
      this.webBound = await this.web.start();
      recordLicensingSettings(this.store as SqliteLeaseStore, this.settings);
      this.licensing.recordEvaluationStart(this.pools.evaluationPool() !== null);
      if (this.adminTokens.ensureLocal(this.config.adminTokenFile).created) {
        this.logger.info({ file: this.config.adminTokenFile }, `admin token "local" made: it is in ${this.config.adminTokenFile} (mode 0600); floatd admin uses it`);
      }
      await this.reloadLicenses(true);
      this.clockJumped(this.clockWatch.atStart());
      this.sweeper.start();
      const now = this.clock.now();
      this.startedAt = now;
      this.recordRuntime();
      this.store.appendEvent({ ts: now, event: 'server-started', message: `floatd ${VERSION} listening on ${this.bound.map((b) => `${b.address}:${b.port}`).join(', ')}` });
      if (this.rules.book !== null || this.rules.groups.size > 0) {
        this.store.appendEvent({ ts: now, event: 'rules-reloaded', message: `in force at start: ${this.rules.summary}` });
      }
    } catch (err) {
      await this.stop();
      if (this.createdDataDir) rmSync(this.config.dataDir, { recursive: true, force: true });
      throw err;
    }
    this.serving = true;
    this.logger.info({ rules: this.rules.book?.size ?? 0 }, this.rules.summary);
    this.logCertificate('TLS certificate in use');
    if (this.tls !== null && !this.listenerStatus().some((l) => l.scheme === 'tls' || l.scheme === 'https')) {
      this.logger.warn('tls.certFile and tls.keyFile are set, but no listener uses TLS: add https.listen or a tls:// listener');
    }
    this.scheduleMaintenance();
    this.checkDescriptorLimit();
    for (const l of this.listenerStatus()) this.logger.info({ listener: l.name, scheme: l.scheme, address: l.address, port: l.port }, 'listening');
    for (const l of [...this.config.listeners, ...this.config.http.listen, ...this.config.https.listen]) {
      if (!l.proxyProtocol) continue;
      const trustedProxies = l.proxyProtocol.trustedProxies.map((n) => `${n.address}/${n.prefix}`);
      this.logger.info({ listener: l.name, trustedProxies }, `listener "${l.name}" takes client addresses from PROXY protocol headers sent by ${trustedProxies.join(', ')}`);
    }
    return this.bound;
  }

  /** Warns at start when maxConnections is more than the process's file-descriptor limit leaves room for. */
  private checkDescriptorLimit(): void {
    const limit = this.fdLimit;
    if (limit === null) return;
    const room = limit - descriptorHeadroom(limit);
    if (this.config.maxConnections <= room) return;
    this.logger.warn(
      { maxConnections: this.config.maxConnections, fileDescriptorLimit: limit },
      `maxConnections is ${this.config.maxConnections}, but the file-descriptor limit of ${limit} leaves room for about ${Math.max(0, room)} connections: ` +
        'past that, new clients are reset; raise the limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower maxConnections',
    );
  }

  /** What commands on this data directory learn of the running server. */
  private recordRuntime(): void {
    const runtime: ServerRuntime = { pid: process.pid, startedAt: this.startedAt, listeners: this.listenerStatus(), rules: this.rules.summary };
    this.store.setMeta(RUNTIME_META, JSON.stringify(runtime));
  }

  listeners(): readonly BoundListener[] {
    return this.bound;
  }

  /** The web endpoint's routes. */
  webRoutes(): ReadonlyArray<{ method: string; url: string }> {
    return this.web.routes();
  }

  /** Every listening socket: the NDJSON ones first, then the web endpoint's. */
  listenerStatus(): ListenerStatus[] {
    const tls = new Set(this.config.listeners.filter((l) => l.tls).map((l) => l.name));
    return [
      ...this.bound.map((b) => ({ name: b.name, scheme: tls.has(b.name) ? ('tls' as const) : ('tcp' as const), address: b.address, port: b.port, suspended: this.tcp.suspension.has(b.name) })),
      ...this.webBound.map((b) => ({ name: b.name, scheme: b.tls ? ('https' as const) : ('http' as const), address: b.address, port: b.port, suspended: this.web.suspension.has(b.name) })),
    ];
  }

  /**
   * What `status` shows, from a snapshot: recomputed after a change (a lease
   * granted, renewed or ended, pools, listeners or rules changed) or once it
   * is a second old, not for every request, so a flood of status requests
   * costs one computation.
   */
  status(): ServerStatus {
    const at = this.clock.monotonic();
    const snapshot = this.statusSnapshot;
    if (snapshot !== null && snapshot.generation === this.statusGeneration && at - snapshot.at < STATUS_MAX_AGE_MS) return snapshot.status;
    const generation = this.statusGeneration;
    const status = this.computeStatus();
    this.statusSnapshot = { generation, at, status };
    return status;
  }

  private computeStatus(): ServerStatus {
    return collectStatus({
      store: this.store,
      pools: this.pools,
      now: this.clock.now(),
      rejectedKeys: this.rejected.map((r) => ({ id: r.id, code: r.error.code, message: r.error.message })),
      serverKeyFingerprint: this.fingerprint,
      listeners: this.listenerStatus(),
      running: true,
      rules: this.rules.summary,
    });
  }

  /** Re-reads the installed keys (after `floatd license add/remove`) and revokes leases of removed ones. */
  reloadLicenses(initial = false): Promise<void> {
    this.reloading ??= this.doReload(initial).finally(() => (this.reloading = null));
    return this.reloading;
  }

  private async doReload(initial: boolean): Promise<void> {
    this.lastChange = this.store.changeCounter();
    const before = new Map(this.pools.licenseKeys().map((k) => [k.id, k]));
    const beforePools = this.pools.all().map((p) => p.id);
    const wasRejected = new Set(this.rejected.map((r) => r.id));
    const loaded = await this.licensing.loadPools(this.pools, this.config.evaluation);
    this.rejected = loaded.rejected;
    for (const r of loaded.rejected) {
      if (initial || !wasRejected.has(r.id)) this.logger.error({ key: r.id, code: r.error.code }, `installed license key ignored: ${r.error.message}`);
    }
    if (!initial) {
      for (const key of loaded.keys) {
        if (!before.has(key.id)) {
          this.logger.info({ key: key.id, product: key.product, licensee: key.licensee, seats: key.seats }, `license key ${key.id} added: ${key.seats} seat(s) of ${key.product}`);
        }
      }
      const now = new Set([...loaded.keys.map((k) => k.id), ...loaded.rejected.map((r) => r.id)]);
      for (const [id, key] of before) {
        if (!now.has(id)) this.logger.info({ key: id, product: key.product }, `license key ${id} removed`);
      }
    }
    this.poolsChanged(beforePools, initial);
  }

  /** After the pools were decided again: state changes, the evaluation banner, revocations. */
  private poolsChanged(beforePools: readonly string[], initial: boolean): void {
    this.statusGeneration++;
    const now = this.clock.now();
    this.checkKeyStates(now, initial);
    const evalPool = this.pools.evaluationPool();
    if (evalPool !== null && (initial || !beforePools.includes(evalPool.id))) {
      const daysLeft = Math.max(0, Math.ceil((evalPool.expiresAt! - now) / DAY_MS));
      if (now >= evalPool.expiresAt!) {
        this.logger.error({ endedAt: new Date(evalPool.expiresAt!).toISOString() }, 'evaluation period is over and no license key is installed: no seats can be granted');
      } else {
        this.logger.warn(
          { seats: evalPool.seats, daysLeft, endsAt: new Date(evalPool.expiresAt!).toISOString() },
          `evaluation mode: no license key in force; ${evalPool.seats} seat(s) for ${daysLeft} more day(s)`,
        );
      }
    } else if (this.pools.all().length === 0) {
      this.logger.error('no usable license key is installed and evaluation is off: no seats can be granted');
    }
    const current = new Set(this.pools.all().map((p) => p.id));
    const installed = this.pools.licenseKeys().find((k) => current.has(k.id));
    const evaluationEnded = `evaluation ended: license key ${installed?.id ?? ''} is in force`;
    const revokedEvaluation = this.leases.revokeInvalid((poolId) => (poolId === EVALUATION_POOL_ID && !current.has(poolId) ? evaluationEnded : null));
    if (revokedEvaluation > 0) this.logger.warn({ revoked: revokedEvaluation, key: installed?.id }, `${revokedEvaluation} evaluation lease(s) revoked: ${evaluationEnded}`);
    const revoked = this.leases.revokeInvalid((poolId) => (current.has(poolId) || poolId === EVALUATION_POOL_ID ? null : 'its license key was removed'));
    if (revoked > 0) this.logger.warn({ revoked }, `${revoked} lease(s) revoked: their license key was removed`);
  }

  private checkKeyStates(now: number, initial: boolean): void {
    for (const key of this.pools.licenseKeys()) {
      const validity = licenseValidity(key, now);
      const previous = this.keyStates.get(key.id);
      if (validity.state === 'valid') this.warnOfExpiry(key, now);
      if (previous === validity.state) continue;
      this.keyStates.set(key.id, validity.state);
      const info = { key: key.id, product: key.product, licensee: key.licensee, seats: key.seats };
      if (validity.state === 'valid') {
        if (initial || previous !== undefined) this.logger.info({ ...info, expires: key.expiresAt ? new Date(key.expiresAt).toISOString() : null }, 'license key in force');
      } else if (validity.state === 'not-yet-valid') {
        this.logger.info(info, `${validity.message}: it is pending and grants from then on`);
      } else {
        this.logger.error(info, `${validity.message}: no seats of ${key.product} are granted from it`);
        if (this.store.getMeta(`key-expired:${key.id}`) === undefined) {
          this.store.setMeta(`key-expired:${key.id}`, String(now));
          this.store.appendEvent({ ts: now, event: 'key-expired', poolId: key.id, product: key.product, message: validity.message });
        }
      }
    }
  }

  /** Warns once when a key comes within 30, 14, 7 and 1 day(s) of its expiry (and once at start if already within). */
  private warnOfExpiry(key: LicenseKey, now: number): void {
    if (key.expiresAt === null) return;
    const daysLeft = (key.expiresAt - now) / DAY_MS;
    const threshold = EXPIRY_WARNINGS.filter((d) => daysLeft <= d).at(-1);
    if (threshold === undefined || this.expiryWarned.get(key.id) === threshold) return;
    this.expiryWarned.set(key.id, threshold);
    this.logger.warn(
      { key: key.id, product: key.product, licensee: key.licensee, expires: new Date(key.expiresAt).toISOString(), daysLeft: Math.ceil(daysLeft) },
      `license key ${key.id} (${key.product}) expires in ${timeLeft(key.expiresAt - now)}, at ${new Date(key.expiresAt).toISOString()}: install its renewal`,
    );
  }

  /** The wall clock jumped (or, at start, is behind what the database recorded): a warning, a count, and the sweeper plans afresh. */
  private clockJumped(jump: ClockJump | null): void {
    if (jump === null) return;
    this.logger.warn({ jumpMs: jump.shiftMs, leases: jump.leases, wallClock: new Date(this.clock.wallNow()).toISOString() }, jump.message);
    this.metrics.clockJumped();
    this.statusGeneration++;
    this.sweeper.reschedule();
  }

  /** The connection cap was hit: warn at most once a minute, with how many were refused. */
  private connectionRefused(remote: string): void {
    this.metrics.limitHit('max_connections');
    this.refusedConnections++;
    const now = this.clock.monotonic();
    if (now - this.lastRefusalWarning < 60_000) return;
    this.lastRefusalWarning = now;
    this.logger.warn(
      { refused: this.refusedConnections, maxConnections: this.config.maxConnections, remote },
      `connection refused: the server holds its maximum of ${this.config.maxConnections} connections (maxConnections); ${this.refusedConnections} refused so far`,
    );
  }

  /** An acquisition refused by acquireRateLimit: counted, and warned of once a minute per address. */
  private acquireRateLimited(remote: string, retryAfterMs: number): void {
    this.metrics.limitHit('acquire_rate');
    const limit = this.config.acquireRateLimit!;
    this.limitWarning('acquire-rate', remote, (held) =>
      `acquisition from ${remote} refused: more than ${limit.perSecond} a second, ${limit.burst} at once (acquireRateLimit); next allowed in ${retryAfterMs} ms` +
      (held > 0 ? `; ${held} more refused since the last warning` : ''));
  }

  /** A warning of a limit hit, at most once a minute per kind and address, with how many were held back. */
  private limitWarning(kind: string, remote: string, message: (held: number) => string): void {
    const admitted = this.limitWarnings.admit(`${kind}\u0000${remote}`, this.clock.monotonic());
    if (admitted === null) return;
    this.logger.warn({ limit: kind, ...(remote === '' ? {} : { remote }), heldBack: admitted.held }, message(admitted.held));
  }

  /** A connection without a valid PROXY header from a trusted proxy was closed: warn at most once a minute per source address. */
  private proxyRefused(r: ProxyRefusal): void {
    const admitted = this.proxyWarnings.admit(r.source, this.clock.monotonic());
    if (admitted === null) return;
    this.logger.warn(
      { listener: r.listener, source: r.source, reason: r.reason, heldBack: admitted.held },
      `PROXY protocol: connection from ${r.source} to listener "${r.listener}" refused: ${r.detail}` +
        (admitted.held > 0 ? ` (${admitted.held} more from this address refused since the last warning)` : ''),
    );
  }

  private scheduleMaintenance(): void {
    if (this.stopped) return;
    this.maintenance = this.clock.setTimer(MAINTENANCE_MS, () => {
      try {
        this.maintain();
      } catch (err) {
        this.logger.error({ err }, 'maintenance failed');
      }
      this.scheduleMaintenance();
    });
  }

  /** Every second: notice key changes made by `floatd license`, keys starting and expiring, checkpoint the WAL, prune the lease log. */
  private maintain(): void {
    try {
      this.clockJumped(this.clockWatch.check());
    } catch (err) {
      // Lease time stays where the stored expiries are; the next tick tries again.
      this.logger.error({ err }, 'moving lease expiries after a wall-clock jump failed');
    }
    const now = this.clock.now();
    if (this.store.changeCounter() !== this.lastChange) {
      this.reloadLicenses().catch((err: unknown) => this.logger.error({ err }, 'reloading license keys failed'));
    } else {
      const before = this.pools.all().map((p) => p.id);
      if (this.pools.refresh(now)) this.poolsChanged(before, false);
      else this.checkKeyStates(now, false);
    }
    if (this.tls?.changed()) this.reloadTls();
    this.store.checkpoint();
    if (this.config.leaseLog.retentionDays > 0 && now - this.lastPrune > 3_600_000) {
      this.lastPrune = now;
      const pruned = this.store.pruneEvents(now - this.config.leaseLog.retentionDays * DAY_MS);
      if (pruned > 0) this.logger.info({ pruned }, 'old lease-log entries pruned');
    }
  }

  /**
   * Stops accepting, finishes in-flight replies, stops timers, closes the
   * database and releases the data directory last. Idempotent; also cleans up
   * after a start that failed half-way.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await Promise.all([this.tcp.stop(), this.web.stop()]);
      await this.batcher.drained();
      this.protocol.close();
      this.maintenance?.cancel();
      this.sweeper.stop();
      await this.reloading?.catch(() => {});
      if (this.bound.length > 0) {
        this.store.appendEvent({ ts: this.clock.now(), event: 'server-stopped' });
        this.store.setMeta(RUNTIME_META, '');
      }
    } finally {
      this.store.close();
      this.lock.release();
    }
    if (this.bound.length > 0) this.logger.info('stopped');
    this.logger.flush?.();
  }
}

const EXPIRY_WARNINGS = [30, 14, 7, 1];
/** How old a status snapshot may be when nothing changed (durations and key states move with time). */
const STATUS_MAX_AGE_MS = 1000;
/** The NDJSON ops, as metric labels (anything else a client sends is "other"). */
const NDJSON_OPS = new Set(['hello', 'acquire', 'renew', 'release', 'status', 'ping']);

/** "12 day(s)", or hours, minutes or seconds for less than a day. */
function timeLeft(ms: number): string {
  if (ms >= DAY_MS) return `${Math.ceil(ms / DAY_MS)} day(s)`;
  if (ms >= 3_600_000) return `${Math.ceil(ms / 3_600_000)} hour(s)`;
  if (ms >= 60_000) return `${Math.ceil(ms / 60_000)} minute(s)`;
  return `${Math.max(0, Math.ceil(ms / 1000))} second(s)`;
}
