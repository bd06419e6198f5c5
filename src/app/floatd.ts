import { rmSync } from 'node:fs';
import type { JWK } from 'jose';
import type { Config, RulesSettings } from '../config/config.js';
import type { Clock, TimerHandle } from '../domain/clock.js';
import { deny, FloatdError, isFloatdError, type Denial } from '../domain/errors.js';
import { licenseValidity, type LicenseKey } from '../domain/license.js';
import { EVALUATION_POOL_ID } from '../domain/pool.js';
import { OPEN_GATE } from '../domain/gate.js';
import { RuleGate } from '../domain/rules/rule-gate.js';
import type { AdminTokenStore, LeaseStore, StoreMaintenance } from '../domain/ports.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { thumbprint } from '../adapters/crypto/keys.js';
import { LeaseTokenSigner } from '../adapters/crypto/lease-tokens.js';
import { createLogger, type Logger } from '../adapters/log/logger.js';
import type { DataDirLock } from '../adapters/sqlite/data-dir-lock.js';
import type { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import type { Checkpoint } from '../adapters/sqlite/log-chain.js';
import { TcpServer, type BoundListener } from '../adapters/tcp/tcp-server.js';
import { misdirectedHttpBody } from '../adapters/tcp/misdirected-http.js';
import { evaluationKeeper, licensingFor, licensingSettings, openServerDataDir, openServerKey, productTermsOf, recordLicensingSettings, removeFreshDatabase, underProductTerms, type LicensingSettings } from './data-dir.js';
import { LeaseService } from './lease-service.js';
import { CLOCK_HIGH_WATER_META, clockHighWater, Licensing, type LoadedLicenses } from './licensing.js';
import { ServerEvaluation, warnClampedTerms } from './evaluation.js';
import { evaluationTermsRegistered } from './evaluation-registration.js';
import { EVALUATION_PRODUCT, PoolRegistry } from './pool-registry.js';
import { NdjsonProtocol } from '../adapters/tcp/ndjson-protocol.js';
import { ServerLeaseApi } from './lease-api.js';
import { loadRules, type FileError, type LoadedRules } from './rules.js';
import { collectStatus, type ListenerStatus, type ServerStatus } from './status.js';
import { TlsContext } from '../adapters/tls/tls-context.js';
import { recordActivationChanges } from './key-state.js';
import { PrometheusMetrics, type MetricsState } from '../adapters/metrics/prometheus-metrics.js';
import { WebServer, type BoundWebListener } from '../adapters/http/web-server.js';
import type { ProxyRefusal } from '../adapters/net/proxy-protocol.js';
import { WarningThrottle } from './warning-throttle.js';
import { TokenBuckets } from './rate-limit.js';
import { descriptorHeadroom, softFdLimit } from '../config/fd-limit.js';
import { AdminService, AdminTokens } from './admin.js';
import { runReport } from './report-runner.js';
import { usageReportJson, usersReportJson } from './reports.js';
import type { ReportEventSource } from '../domain/events.js';
import type { AdminApi } from '../adapters/http/admin-routes.js';
import { Sweeper } from './sweeper.js';
import { StorageHealth, STORAGE_RETRY_MS } from './storage-health.js';
import { ClockWatch, type ClockJump } from './clock-watch.js';
import { SteadyClock } from '../domain/steady-clock.js';
import { VERSION } from './version.js';
import { publicStatus } from './public-status.js';
import { ConnectionBudget } from '../adapters/net/connection-budget.js';
import { LogRetention, logChainOptions } from './lease-log.js';
import { anchorFields, checkpointPolicy, logAnchorOf } from './log-anchor.js';
import { policyNote } from '../domain/log-anchoring.js';
import { ServerActivation } from './activation.js';
import { trustVendorKeys } from '../adapters/crypto/license-keys.js';
import type { ActivationState } from '../domain/activation.js';
import type { ActivationStore } from '../domain/ports.js';
import { formatTimeLeft, wholeDaysLeft } from '../domain/wording.js';

const DAY_MS = 86_400_000;
const MAINTENANCE_MS = 1000;
/** How often activations are checked against the host (and re-validated when due). */
const ACTIVATION_CHECK_MS = 3_600_000;
/** How long one slice of a sweep may hold the event loop. */
const SWEEP_SLICE_MS = 10;

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
  /** Extra CA certificates the vendor's activation service is trusted with (besides the system's). */
  readonly activationCa?: string | Buffer;
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
  /** Prunes the lease log in the background (leaseLog.retentionDays). */
  readonly retention: LogRetention;
  private readonly clockWatch: ClockWatch;
  private readonly tcp: TcpServer;
  readonly metrics: PrometheusMetrics;
  private readonly web: WebServer;
  private readonly tls: TlsContext | null;
  private webBound: BoundWebListener[] = [];
  private readonly protocol: NdjsonProtocol;
  readonly api: ServerLeaseApi;
  /** Storage faults as a state: answered UNAVAILABLE, logged once per episode, probed until over. */
  readonly storage: StorageHealth;
  private bound: BoundListener[] = [];
  private rejected: LoadedLicenses['rejected'] = [];
  private maintenance: TimerHandle | null = null;
  /** Another process committed a change (a key added or removed, an activation) since the last reload. */
  private changedElsewhere = false;
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
  /** One budget of connections over every listener, NDJSON and web (maxConnections). */
  private readonly connectionBudget: ConnectionBudget;
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
  readonly activation: ServerActivation;
  private activationTimer: TimerHandle | null = null;
  /** The last activation state logged per key, so each change is logged once. */
  private activationLogged = new Map<string, string>();
  /** The activation state of each key last written to the lease log (activation-changed), this run. */
  private readonly activationRecorded = new Map<string, string>();
  private activationChecking: Promise<void> | null = null;
  /** Per pool: the license key and activation its leases carry, so clients can verify them up to the vendor. */
  private chain = new Map<string, { key: string; activation: string | null }>();
  /** The clock's high-water mark as last stored, and whether a clock set back before it has been reported. */
  private highWater = 0;
  private clockBackReported = false;
  /** The checkpoint signed at start: the first anchor the start line gives. */
  private startAnchor: Checkpoint | undefined;
  /** The evaluation record outside the data directory, and the products evaluation has served. */
  private readonly evaluation: ServerEvaluation;
  /** Why evaluation grants nothing yet (not registered with the vendor), as last logged. */
  private evaluationUnregistered: string | null = null;

  private constructor(
    readonly config: Config,
    readonly store: LeaseStore & StoreMaintenance & ActivationStore & ReportEventSource,
    private readonly lock: DataDirLock,
    private readonly settings: LicensingSettings,
    private readonly licensing: Licensing,
    private readonly fingerprint: string,
    publicJwk: JWK,
    signer: LeaseTokenSigner,
    rules: LoadedRules,
    deps: { clock: SteadyClock; logger: Logger; rulesSettings: () => RulesSettings; tls: TlsContext | null; activation: ServerActivation; evaluation: ServerEvaluation },
  ) {
    this.activation = deps.activation;
    this.connectionBudget = new ConnectionBudget(config.maxConnections);
    this.evaluation = deps.evaluation;
    this.tls = deps.tls;
    this.clock = deps.clock;
    this.logger = deps.logger;
    this.rules = rules;
    this.rulesSettings = deps.rulesSettings;
    this.metrics = new PrometheusMetrics(VERSION, () => this.metricsState());
    const metrics = this.metrics;
    const health = new StorageHealth(this.clock, this.logger, () => store.probe(), (reason, n) => metrics.storageUnavailable(reason, n));
    this.storage = health;
    store.changes.subscribe(() => (this.changedElsewhere = true));
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
          else if (t.kind === 'granted') {
            metrics.granted(t.product);
            if (this.pools.evaluationPool() !== null) this.evaluation.granted(t.product);
          }
          else metrics.renewed(t.product);
        },
      },
    );
    this.retention = new LogRetention(store as SqliteLeaseStore, this.clock, this.logger, config.leaseLog);
    this.sweeper = new Sweeper(
      this.clock,
      async () => {
        if (!health.mayTry()) return;
        // Many leases expiring at once are swept a slice at a time, answering requests in between.
        const { swept, more } = await this.leases.sweepFor(SWEEP_SLICE_MS);
        if (swept > 0) this.logger.debug({ expired: swept }, 'leases expired');
        return more;
      },
      (after) => {
        // In a storage fault, look again when the storage may be back rather than at an expiry already past.
        if (health.fault() !== null) return this.clock.now() + STORAGE_RETRY_MS;
        try {
          return store.nextExpiry(after);
        } catch (err) {
          if (health.failed(err, 0) === null) throw err;
          return this.clock.now() + STORAGE_RETRY_MS;
        }
      },
      (err) => {
        if (health.failed(err, 0) === null) this.logger.error({ err }, 'sweeping expired leases failed');
      },
      60_000,
      (lag) => metrics.swept(lag),
    );
    this.clockWatch = new ClockWatch(this.clock, store, this.leases);
    store.configureCommits({ guard: health, committed: (n, seconds) => metrics.committed(n, seconds) });
    this.api = new ServerLeaseApi({
      leases: this.leases,
      signer,
      clock: this.clock,
      publicJwk,
      status: () => this.status(),
      publicStatus: () => publicStatus(this.status(), this.readiness()),
      groupsOf: (user) => this.rules.groups.get(user) ?? [],
      chainOf: (poolId) => this.chain.get(poolId),
      ...(config.acquireRateLimit === null
        ? {}
        : { acquireRate: new TokenBuckets(config.acquireRateLimit), rateLimited: (remote: string, retryAfterMs: number) => this.acquireRateLimited(remote, retryAfterMs) }),
    });
    this.adminTokens = new AdminTokens(store as unknown as AdminTokenStore, this.clock);
    this.admin = new AdminService({ store, leases: this.leases, clock: this.clock });
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
        budget: this.connectionBudget,
        maxConnectionsPerAddress: config.maxConnectionsPerAddress,
        replyBufferBytes: config.backpressure.connectionBytes,
        replyBufferTotalBytes: config.backpressure.totalBytes,
        drainTimeoutMs: config.backpressure.drainTimeoutSeconds * 1000,
        backlog: config.backlog,
        keepAliveMs: config.keepAliveSeconds * 1000,
        answered: (op, transport, seconds) => metrics.request(NDJSON_OPS.has(op) ? op : 'other', transport, seconds),
        monotonic: () => this.clock.monotonic(),
        tls: this.tls,
        misdirectedHttp: () => misdirectedHttpBody(this.webBound),
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
        descriptorsExhausted: (code) => this.descriptorsExhausted(code),
      },
    );
    this.web = new WebServer(
      {
        listeners: [...config.http.listen, ...config.https.listen],
        tls: this.tls,
        backlog: config.backlog,
        bodyLimitBytes: config.http.bodyMaxBytes,
        requestTimeoutMs: config.http.requestTimeoutSeconds * 1000,
        budget: this.connectionBudget,
        keepAliveTimeoutMs: 65_000,
        handshakeTimeoutMs: config.http.requestTimeoutSeconds * 1000,
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
        adminFailuresCapped: (retryAfterMs) =>
          this.limitWarning('admin-authentication', '', (held) =>
            `failed admin authentications passed the global cap (20 at once, 1 a second): wrong credentials are answered 429 for ${Math.ceil(retryAfterMs / 1000)} s; correct ones are still accepted` +
            (held > 0 ? `; ${held} more over the cap since the last warning` : '')),
        wallClock: () => this.clock.now(),
        connectionRefused: (remote) => this.connectionRefused(remote),
        descriptorsExhausted: (code) => this.descriptorsExhausted(code),
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
      signIn: (token) => this.adminTokens.signIn(token),
      leases: (filter) => this.admin.leases(filter),
      revoke: async (id, reason, actor, block) => {
        const outcome = await this.admin.revoke(id, reason, actor, block);
        if (outcome.ok) this.logger.warn({ lease: outcome.lease.id, user: outcome.lease.user, host: outcome.lease.host, actor, reason, blockedUntil: outcome.block?.until }, `lease ${outcome.lease.id} of ${outcome.lease.user}@${outcome.lease.host} revoked by ${actor}: ${reason}` + (outcome.block === undefined ? '' : `; kept out of ${outcome.block.product} until ${outcome.block.until}`));
        return outcome;
      },
      blocks: () => this.admin.blocks(),
      unblock: async (id, actor) => {
        const outcome = await this.admin.unblock(id, actor);
        if (outcome.ok) this.logger.warn({ block: outcome.block.id, user: outcome.block.user, actor }, `block ${outcome.block.id} of ${outcome.block.user} on ${outcome.block.product} lifted by ${actor}`);
        return outcome;
      },
      reloadRules: (actor) => {
        this.logger.info({ actor }, 'rules reload asked through the admin API');
        return this.reloadRules();
      },
      reloadTls: (actor) => {
        if (this.tls === null) return deny('TLS_NOT_CONFIGURED', 'this server has no TLS certificate (tls.certFile and tls.keyFile are not set): there is nothing to reload');
        const outcome = this.reloadTls();
        if (outcome.ok) this.admin.record('tls-reloaded', actor, outcome.message);
        return outcome;
      },
      suspend: (listener, actor) => this.suspendListeners(listener, actor, true),
      resume: (listener, actor) => this.suspendListeners(listener, actor, false),
      log: (filter) => this.admin.log(filter),
      usageReport: async (q) => usageReportJson(await runReport({ dbFile: this.config.dbFile, kind: 'usage', query: { ...q, nowMs: this.clock.now() } }, this.store)),
      usersReport: async (q) => usersReportJson(await runReport({ dbFile: this.config.dbFile, kind: 'users', query: { ...q, nowMs: this.clock.now() } }, this.store)),
      server: () => {
        const now = this.clock.now();
        const { ready, reason } = this.readiness();
        return {
          version: VERSION,
          now: new Date(now).toISOString(),
          ready,
          reason,
          startedAt: this.startedAt === 0 ? null : new Date(this.startedAt).toISOString(),
          uptimeSeconds: this.startedAt === 0 ? 0 : Math.max(0, Math.round((now - this.startedAt) / 1000)),
          listeners: this.listenerStatus(),
          leaseSeconds: this.config.leaseSeconds,
          logAnchor: logAnchorOf((this.store as SqliteLeaseStore).latestCheckpoint()),
        };
      },
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
    let unreadable: string | null = null;
    try {
      for (const lease of this.store.allLeases()) {
        if (lease.expiresAt <= now) continue;
        inUse.set(lease.poolId, (inUse.get(lease.poolId) ?? 0) + 1);
        if (earliest === null || lease.expiresAt < earliest) earliest = lease.expiresAt;
      }
    } catch (err) {
      // A lock that keeps readers out too: the scrape still answers, with what is known.
      if (!isFloatdError(err) || err.code !== 'UNAVAILABLE') throw err;
      unreadable = typeof err.details.reason === 'string' ? err.details.reason : 'locked';
    }
    return {
      storageFault: this.storage.fault() ?? unreadable,
      pools: this.pools.all().map((p) => ({ pool: p.id, product: p.product === '*' ? EVALUATION_PRODUCT : p.product, seats: p.seats, grantable: this.pools.grantableSeats(p, now), inUse: unreadable === null ? (inUse.get(p.id) ?? 0) : null })),
      keys: this.pools.licenseKeys().map((k) => ({ key: k.id, product: k.product, expiresAt: k.expiresAt, activation: k.activation ? (this.pools.activationState(k.id)?.state ?? 'unchecked') : null })),
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
    const fault = this.storage.fault();
    if (fault !== null) return { ready: false, reason: `storage unavailable: ${fault}` };
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
    const left = cert.validTo - this.clock.now();
    if (left <= 0) this.logger.error(info, 'the TLS certificate has expired: clients will refuse it; install a new one (tls.certFile) and reload');
    else if (left < 31 * DAY_MS) this.logger.warn({ ...info, daysLeft: wholeDaysLeft(left), timeLeft: formatTimeLeft(left) }, `the TLS certificate expires in ${formatTimeLeft(left)}: install a new one (tls.certFile) and reload`);
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
    const plainSettings = licensingSettings(config);
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
      const settings = underProductTerms(plainSettings, await productTermsOf(store), config);
      store.enableLogCheckpoints(await logChainOptions(config, key.privateJwk));
      warnClampedTerms(logger, settings.evaluationClamped ?? []);
      for (const message of config.unknownEnvironment) logger.warn(message);
      const evaluation = new ServerEvaluation(evaluationKeeper(store, config.evaluationStateDir, config.hostRoot, logger), store, logger);
      const licensing = await licensingFor(store, clock, settings, evaluation.keeper);
      const serverKid = await thumbprint(key.publicJwk);
      const activation = new ServerActivation({
        store,
        clock,
        serverKey: key,
        serverKid,
        trusted: await trustVendorKeys(settings.vendorPublicKeys),
        hostRoot: config.hostRoot,
        dataDir: config.dataDir,
        settings: config.activation,
        ca: deps.activationCa,
      });
      const floatd = new Floatd(config, store, lock, settings, licensing, serverKid, key.publicJwk, signer, rules, { clock, logger, rulesSettings, tls, activation, evaluation });
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
      this.evaluation.keeper.adopt();
      this.highWater = clockHighWater(this.store);
      this.trackClock(this.clock.now());
      await this.licensing.loadPools(this.pools, await this.evaluationTerms());
      this.pools.setActivation(await this.activation.evaluate(this.pools.licenseKeys(), this.clock.now()));
      this.logActivation();
      this.bound = await this.tcp.start();
      this.webBound = await this.web.start();
      recordLicensingSettings(this.store as SqliteLeaseStore, this.settings);
      this.licensing.recordEvaluationStart(this.pools.evaluationPool() !== null);
      this.evaluation.keysFound(this.pools.licenseKeys().map((k) => k.id), this.clock.now());
      this.saveEvaluation();
      if (this.adminTokens.ensureLocal(this.config.adminTokenFile).created) {
        this.logger.info({ file: this.config.adminTokenFile }, `admin token "local" made: it is in ${this.config.adminTokenFile} (mode 0600); floatd admin uses it`);
      }
      await this.reloadLicenses(true);
      this.clockJumped(await this.clockWatch.atStart());
      this.sweeper.start();
      const now = this.clock.now();
      this.startedAt = now;
      this.recordRuntime();
      const listening = this.bound.map((b) => `${b.address}:${b.port}`).join(', ');
      this.startAnchor = (this.store as SqliteLeaseStore).appendAnchored({ ts: now, event: 'server-started', message: `floatd ${VERSION} listening on ${listening}; ${policyNote(checkpointPolicy(this.config))}` });
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
    this.scheduleActivationCheck(0);
    this.checkDescriptorLimit();
    for (const l of this.listenerStatus()) this.logger.info({ listener: l.name, scheme: l.scheme, address: l.address, port: l.port }, 'listening');
    this.logger.info(this.startAnchor ? anchorFields(this.startAnchor) : {}, 'started');
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
      logAnchor: logAnchorOf((this.store as SqliteLeaseStore).latestCheckpoint()),
      settings: this.settings,
    });
  }

  /** Re-reads the installed keys (after `floatd license add/remove`) and revokes leases of removed ones. */
  reloadLicenses(initial = false): Promise<void> {
    this.reloading ??= this.doReload(initial).finally(() => (this.reloading = null));
    return this.reloading;
  }

  private async doReload(initial: boolean): Promise<void> {
    this.store.changes.poll();
    this.changedElsewhere = false;
    const before = new Map(this.pools.licenseKeys().map((k) => [k.id, k]));
    const beforePools = this.pools.all().map((p) => p.id);
    const wasRejected = new Set(this.rejected.map((r) => r.id));
    const loaded = await this.licensing.loadPools(this.pools, await this.evaluationTerms());
    this.pools.setActivation(await this.activation.evaluate(loaded.keys, this.clock.now()));
    this.logActivation();
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
    await this.poolsChanged(beforePools, initial);
  }

  /**
   * Keeps the clock's high-water mark (stored at most once a minute). A clock
   * more than 5 minutes behind it was set back: that is reported at error once,
   * and key expiry stays judged at the mark.
   */
  private trackClock(now: number): void {
    if (now > this.highWater + 60_000 || this.highWater === 0) {
      this.highWater = Math.max(this.highWater, now);
      this.store.setMeta(CLOCK_HIGH_WATER_META, String(this.highWater));
      this.pools.setTimeFloor(this.highWater);
      this.clockBackReported = false;
      if (this.pools.evaluationPool() !== null) this.saveEvaluation();
      return;
    }
    if (now < this.highWater - 5 * 60_000 && !this.clockBackReported) {
      this.clockBackReported = true;
      this.pools.setTimeFloor(this.highWater);
      this.logger.error(
        { now: new Date(now).toISOString(), highWater: new Date(this.highWater).toISOString(), behindMs: this.highWater - now },
        `the clock reads ${new Date(now).toISOString()}, ${formatTimeLeft(this.highWater - now)} before the latest time this server has seen (${new Date(this.highWater).toISOString()}): it was set back. License keys are judged at the latest time seen, so none revives; set the clock right (NTP)`,
      );
    }
  }

  /** The evaluation's terms, with the vendor's registration where the product file asks for one. */
  private async evaluationTerms() {
    return { ...this.evaluation.terms(this.settings.evaluation), ...(await evaluationTermsRegistered(this.store, this.settings, this.config.hostRoot, this.config.dataDir)) };
  }

  /** Writes the evaluation record: its start, its end under the terms now in force (the vendor's, once registered), a key installed, the high-water mark. */
  private saveEvaluation(): void {
    const terms = this.pools.evaluationTerms();
    const periodMs = terms?.periodMs ?? this.settings.evaluation.days * DAY_MS;
    this.evaluation.save((start) => (terms?.registration?.id ? terms.startedAt : start) + periodMs, this.clock.now(), this.pools.evaluationPool() !== null);
  }

  private scheduleActivationCheck(delayMs: number): void {
    if (this.stopped) return;
    this.activationTimer = this.clock.setTimer(delayMs, () => {
      this.activationChecking = this.checkActivations()
        .catch((err: unknown) => this.logger.error({ err }, 'checking activations failed'))
        .finally(() => {
          this.activationChecking = null;
          this.scheduleActivationCheck(ACTIVATION_CHECK_MS);
        });
    });
  }

  /**
   * At start and every hour: re-validates online activations that are due
   * with the vendor, then checks every activation against the host as it is
   * now. A key that no longer matches stops granting; the others serve on.
   */
  async checkActivations(): Promise<void> {
    const now = this.clock.now();
    const keys = this.pools.licenseKeys();
    for (const stored of this.activation.due(now)) {
      const key = keys.find((k) => k.id === stored.keyId);
      if (key === undefined || this.stopped) continue;
      const outcome = await this.activation.revalidate(key, stored);
      if (this.stopped) return;
      if (outcome === 'confirmed') this.logger.info({ key: key.id }, `the vendor confirmed the activation of license key ${key.id}`);
      else if (outcome === 'released') this.logger.error({ key: key.id }, `the vendor says the activation of license key ${key.id} was released: no seats of ${key.product} are granted from it until it is activated again`);
      else this.logger.warn({ key: key.id, code: outcome.failed.code }, `re-validating the activation of license key ${key.id} failed: ${outcome.failed.message}`);
    }
    if (this.stopped) return;
    this.pools.setActivation(await this.activation.evaluate(this.pools.licenseKeys(), this.clock.now()));
    this.logActivation();
  }

  /** Logs each key's activation state when it changes (errors where someone must act), refreshes what leases chain to, and what status shows. */
  private logActivation(): void {
    // Activation states may have moved: status shows them.
    this.statusGeneration++;
    const tokens = new Map(this.store.listLicenses().map((l) => [l.id, l.token]));
    const activations = this.store.listActivations();
    this.chain = new Map(
      this.pools.licenseKeys().flatMap((k) => {
        const token = tokens.get(k.id);
        if (token === undefined) return [];
        const activation = k.activation ? (activations.find((a) => a.keyId === k.id)?.token ?? null) : null;
        return [[k.id, { key: token, activation }] as const];
      }),
    );
    recordActivationChanges(this.store, this.activationRecorded, this.pools.licenseKeys(), (id) => this.pools.activationState(id), this.clock.now());
    for (const key of this.pools.licenseKeys()) {
      const state = this.pools.activationState(key.id);
      if (state === undefined) continue;
      const sig = JSON.stringify(state);
      if (this.activationLogged.get(key.id) === sig) continue;
      const first = !this.activationLogged.has(key.id);
      this.activationLogged.set(key.id, sig);
      const info = { key: key.id, product: key.product, activation: state.state };
      if (state.state === 'active') {
        if (state.changed.length > 0) this.logger.warn({ ...info, changed: state.changed }, `license key ${key.id}: host component(s) changed since activation, tolerated (the others still match): ${state.changed.join(', ')}`);
        if (state.graceUntil !== null) this.logger.warn({ ...info, graceUntil: new Date(state.graceUntil).toISOString() }, `license key ${key.id}: the vendor could not confirm its activation; it keeps granting until ${new Date(state.graceUntil).toISOString()}`);
        else if (!first || state.changed.length === 0) this.logger.info(info, `license key ${key.id} is activated on this host`);
      } else if (state.state === 'not-activated' || state.state === 'deactivated') {
        this.logger.warn(info, `${state.message}; until then no seats of ${key.product} are granted from it`);
      } else {
        this.logger.error({ ...info, ...(state.changed ? { changed: state.changed } : {}) }, `${state.message}; no seats of ${key.product} are granted from it`);
      }
    }
  }

  /** After the pools were decided again: state changes, the evaluation banner, revocations. */
  private async poolsChanged(beforePools: readonly string[], initial: boolean): Promise<void> {
    this.statusGeneration++;
    const now = this.clock.now();
    this.checkKeyStates(now, initial);
    const evalPool = this.pools.evaluationPool();
    if (evalPool !== null && (initial || !beforePools.includes(evalPool.id))) {
      if (now >= evalPool.expiresAt!) {
        this.logger.error({ endedAt: new Date(evalPool.expiresAt!).toISOString() }, 'evaluation period is over and no license key is installed: no seats can be granted');
      } else {
        this.logger.warn(
          { seats: evalPool.seats, daysLeft: wholeDaysLeft(evalPool.expiresAt! - now), timeLeft: formatTimeLeft(evalPool.expiresAt! - now), endsAt: new Date(evalPool.expiresAt!).toISOString() },
          `evaluation mode: no license key in force; ${evalPool.seats} seat(s) for ${formatTimeLeft(evalPool.expiresAt! - now)} more`,
        );
      }
    } else if (this.pools.all().length === 0) {
      const ended = this.pools.evaluationEnded();
      this.logger.error(ended === null ? 'no usable license key is installed and evaluation is off: no seats can be granted' : `no usable license key is installed and evaluation has ended for good (${ended}): no seats can be granted`);
    }
    const unregistered = evalPool === null ? null : this.pools.blocked(evalPool.id);
    if (unregistered !== null && unregistered !== this.evaluationUnregistered) this.logger.error(`evaluation grants no seats: ${unregistered}`);
    if (unregistered === null && this.evaluationUnregistered !== null && evalPool !== null) {
      const id = this.pools.evaluationTerms()?.registration?.id ?? null;
      this.logger.info({ evaluation: id, endsAt: evalPool.expiresAt === null ? null : new Date(evalPool.expiresAt).toISOString() }, `the evaluation is registered with the vendor (evaluation ${id ?? '?'}): evaluation grants seats`);
    }
    this.evaluationUnregistered = unregistered;
    const current = new Set(this.pools.all().map((p) => p.id));
    const installed = this.pools.licenseKeys().find((k) => current.has(k.id));
    const evaluationEnded = `evaluation ended: license key ${installed?.id ?? ''} is in force`;
    const revokedEvaluation = await this.leases.revokeInvalid((poolId) => (poolId === EVALUATION_POOL_ID && !current.has(poolId) ? evaluationEnded : null));
    if (revokedEvaluation > 0) this.logger.warn({ revoked: revokedEvaluation, key: installed?.id }, `${revokedEvaluation} evaluation lease(s) revoked: ${evaluationEnded}`);
    const revoked = await this.leases.revokeInvalid((poolId) => (current.has(poolId) || poolId === EVALUATION_POOL_ID ? null : 'its license key was removed'));
    if (revoked > 0) this.logger.warn({ revoked }, `${revoked} lease(s) revoked: their license key was removed`);
  }

  private checkKeyStates(now: number, initial: boolean): void {
    for (const key of this.pools.licenseKeys()) {
      const validity = licenseValidity(key, this.pools.judgedAt(now));
      const previous = this.keyStates.get(key.id);
      if (validity.state === 'valid') this.warnOfExpiry(key, now);
      // A valid key that lacks its activation is not in force: the activation's log line said why and what to run.
      const state = validity.state === 'valid' && this.pools.blocked(key.id) !== null ? 'awaiting-activation' : validity.state;
      if (previous === state) continue;
      this.keyStates.set(key.id, state);
      const info = { key: key.id, product: key.product, licensee: key.licensee, seats: key.seats };
      if (state === 'awaiting-activation') {
        continue;
      } else if (validity.state === 'valid') {
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
      { key: key.id, product: key.product, licensee: key.licensee, expires: new Date(key.expiresAt).toISOString(), daysLeft: wholeDaysLeft(key.expiresAt - now), timeLeft: formatTimeLeft(key.expiresAt - now) },
      `license key ${key.id} (${key.product}) expires in ${formatTimeLeft(key.expiresAt - now)}, at ${new Date(key.expiresAt).toISOString()}: install its renewal`,
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

  /** Out of file descriptors: new connections are reset before floatd sees them; warn at most once a minute. */
  private descriptorsExhausted(code: string): void {
    this.metrics.limitHit('file_descriptors');
    const limit = this.fdLimit;
    this.limitWarning('descriptors', '', (held) =>
      `out of file descriptors (${code}${limit === null ? '' : `, limit ${limit}`}, ${this.connectionBudget.inUse} connections open over all listeners): new connections are reset before floatd sees them; ` +
      'raise the limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower maxConnections' + (held > 0 ? ` (found out of them ${held} more time(s) since the last warning)` : ''));
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
      `connection refused: the server holds its maximum of ${this.config.maxConnections} connections over all listeners (maxConnections), none of them an idle web connection to close; ${this.refusedConnections} refused so far`,
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
        // In a storage fault the probe alone touches the storage; maintenance resumes when it is over.
        if (this.storage.fault() === null) this.maintain();
      } catch (err) {
        if (this.storage.failed(err, 0) === null) this.logger.error({ err }, 'maintenance failed');
      }
      this.scheduleMaintenance();
    });
  }

  /** Every second: notice key changes made by `floatd license`, keys starting and expiring, checkpoint the WAL, prune the lease log. */
  private maintain(): void {
    this.clockWatch.check().then(
      (jump) => this.clockJumped(jump),
      (err: unknown) => {
        // Lease time stays where the stored expiries are; the next tick tries again.
        if (this.storage.failed(err, 0) === null) this.logger.error({ err }, 'moving lease expiries after a wall-clock jump failed');
      },
    );
    const now = this.clock.now();
    this.trackClock(now);
    this.store.changes.poll();
    if (this.changedElsewhere) {
      this.reloadLicenses().catch((err: unknown) => {
        if (this.storage.failed(err, 0) === null) this.logger.error({ err }, 'reloading license keys failed');
      });
    } else {
      const before = this.pools.all().map((p) => p.id);
      if (this.pools.refresh(now)) {
        this.poolsChanged(before, false).catch((err: unknown) => {
          if (this.storage.failed(err, 0) === null) this.logger.error({ err }, 'revoking the leases of keys no longer in force failed');
        });
      }
      else this.checkKeyStates(now, false);
    }
    if (this.tls?.changed()) this.reloadTls();
    (this.store as SqliteLeaseStore).checkpointLogIfDue(now);
    this.store.checkpoint();
    if (this.config.leaseLog.retentionDays > 0 && now - this.lastPrune > 3_600_000) {
      this.lastPrune = now;
      this.retention.start();
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
    let stopAnchor: Checkpoint | undefined;
    try {
      await Promise.all([this.tcp.stop(), this.web.stop()]);
      await this.store.drained();
      this.protocol.close();
      this.maintenance?.cancel();
      this.activationTimer?.cancel();
      this.sweeper.stop();
      await this.retention.stop();
      this.storage.stop();
      await this.reloading?.catch(() => {});
      await this.activationChecking?.catch(() => {});
      if (this.bound.length > 0) {
        try {
          this.store.setMeta(RUNTIME_META, '');
          // A stopped server leaves the whole log under a signature: the checkpoint of its stop entry.
          stopAnchor = (this.store as SqliteLeaseStore).appendAnchored({ ts: this.clock.now(), event: 'server-stopped', message: 'clean stop' });
        } catch (err) {
          // A storage fault does not stop a stop: every acknowledged change is committed already.
          if (!isFloatdError(err) || err.code !== 'UNAVAILABLE') throw err;
          if (this.serving) this.logger.warn({ code: err.code, reason: err.details.reason }, `the stop could not be recorded in the lease log: ${err.message}`);
        }
      }
    } finally {
      this.store.close();
      this.lock.release();
    }
    // Only a server that started stops; one whose start failed has logged its error.
    if (this.serving) this.logger.info(stopAnchor ? anchorFields(stopAnchor) : {}, 'stopped');
    this.logger.flush?.();
  }
}

const EXPIRY_WARNINGS = [30, 14, 7, 1];
/** How old a status snapshot may be when nothing changed (durations and key states move with time). */
const STATUS_MAX_AGE_MS = 1000;
/** The NDJSON ops, as metric labels (anything else a client sends is "other"). */
const NDJSON_OPS = new Set(['hello', 'acquire', 'renew', 'release', 'status', 'ping']);

/** "12 day(s)", or hours, minutes or seconds for less than a day. */
