import type { JWK } from 'jose';
import type { Config, RulesSettings } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import { SteadyClock } from '../domain/steady-clock.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { thumbprint } from '../adapters/crypto/keys.js';
import { trustVendorKeys } from '../adapters/crypto/license-keys.js';
import { LeaseTokenSigner } from '../adapters/crypto/lease-tokens.js';
import { createLogger, type Logger } from '../adapters/log/logger.js';
import { PrometheusMetrics } from '../adapters/metrics/prometheus-metrics.js';
import { ConnectionBudget } from '../adapters/net/connection-budget.js';
import type { DataDirLock } from '../adapters/sqlite/data-dir-lock.js';
import { TlsContext } from '../adapters/tls/tls-context.js';
import type { Timers } from '../adapters/tcp/timers.js';
import { softFdLimit } from '../config/fd-limit.js';
import { ServerActivation } from './activation.js';
import { ActivationWatch } from './activation-watch.js';
import { AdminService, AdminTokens } from './admin.js';
import { serverAdminApi } from './admin-api.js';
import { ClockWatch } from './clock-watch.js';
import { evaluationKeeper, licensingFor, licensingSettings, productTermsOf, underProductTerms, type LicensingSettings } from './data-dir.js';
import { Doors } from './doors.js';
import { ServerEvaluation, warnClampedTerms } from './evaluation.js';
import { ServerLeaseApi } from './lease-api.js';
import { LogRetention, logChainOptions } from './lease-log.js';
import { LeaseService } from './lease-service.js';
import { LicenseWatch } from './license-watch.js';
import type { Licensing } from './licensing.js';
import { logAnchorOf } from './log-anchor.js';
import { metricsState } from './metrics-state.js';
import { OperatorWarnings } from './operator-warnings.js';
import { PoolRegistry } from './pool-registry.js';
import { publicStatus } from './public-status.js';
import { TokenBuckets } from './rate-limit.js';
import { loadRules, type LoadedRules } from './rules.js';
import { RulesInForce } from './rules-in-force.js';
import { RuntimeRecord } from './runtime-record.js';
import { clusterStatus } from './cluster-status.js';
import { collectStatus, type ServerStatus } from './status.js';
import { ClusterMembership } from './cluster-membership.js';
import { StatusView } from './status-view.js';
import { StorageHealth, STORAGE_RETRY_MS } from './storage-health.js';
import { openServerStore, closeAfterFailedStart, type OpenedServerStore, type ServerStore } from './stores.js';
import { Sweeper } from './sweeper.js';
import { VERSION } from './version.js';

/** How long one slice of a sweep may hold the event loop. */
const SWEEP_SLICE_MS = 10;

export interface AppDeps {
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
  /** What the NDJSON connections' handshake, idle and drain timeouts wait on (the event loop's timers when absent). */
  readonly connectionTimers?: Timers;
}

/** Where the server is in its life: readiness and the jobs read it. */
export interface Phase {
  serving: boolean;
  stopping: boolean;
}

/** What `create` read and opened before the services are built. */
interface Opened {
  readonly config: Config;
  readonly clock: SteadyClock;
  readonly logger: Logger;
  readonly store: ServerStore;
  readonly lock: DataDirLock;
  /** This start made the data directory: a start that fails removes it again. */
  readonly createdDataDir: boolean;
  readonly settings: LicensingSettings;
  readonly licensing: Licensing;
  readonly fingerprint: string;
  readonly publicJwk: JWK;
  readonly signer: LeaseTokenSigner;
  readonly rules: LoadedRules;
  readonly rulesSettings: () => RulesSettings;
  readonly tls: TlsContext | null;
  readonly activation: ServerActivation;
  readonly evaluation: ServerEvaluation;
  readonly connectionTimers: Timers | undefined;
}

/**
 * The composition root: the one place that opens the store (as `store.kind`
 * says) and builds every service of a running server from its config. A
 * LeaseServer starts and stops what it holds.
 */
export class AppContext {
  readonly config: Config;
  /** Lease time: wall-clock time that only the monotonic clock moves (see ClockWatch). */
  readonly clock: SteadyClock;
  readonly logger: Logger;
  readonly store: ServerStore;
  readonly lock: DataDirLock;
  readonly createdDataDir: boolean;
  readonly settings: LicensingSettings;
  readonly licensing: Licensing;
  /** The server key's fingerprint, as clients pin it. */
  readonly fingerprint: string;
  readonly tls: TlsContext | null;
  readonly activation: ServerActivation;
  readonly evaluation: ServerEvaluation;
  readonly phase: Phase = { serving: false, stopping: false };
  readonly pools = new PoolRegistry();
  readonly budget: ConnectionBudget;
  readonly metrics: PrometheusMetrics;
  /** Storage faults as a state: answered UNAVAILABLE, logged once per episode, probed until over. */
  readonly storage: StorageHealth;
  readonly statusView: StatusView;
  readonly warnings: OperatorWarnings;
  readonly leases: LeaseService;
  readonly sweeper: Sweeper;
  readonly clockWatch: ClockWatch;
  /** Prunes the lease log in the background (leaseLog.retentionDays). */
  readonly retention: LogRetention;
  readonly rules: RulesInForce;
  readonly activations: ActivationWatch;
  readonly licenses: LicenseWatch;
  readonly api: ServerLeaseApi;
  readonly adminTokens: AdminTokens;
  readonly admin: AdminService;
  readonly runtime: RuntimeRecord;
  readonly doors: Doors;
  /** This node's place among the nodes sharing a PostgreSQL store; null on a single server. */
  readonly cluster: ClusterMembership | null;

  static async create(config: Config, deps: AppDeps = {}): Promise<AppContext> {
    // Every part of the server decides on lease time; only ClockWatch compares it with the wall clock.
    const clock = new SteadyClock(deps.clock ?? new SystemClock());
    const logger = deps.logger ?? createLogger(config.log);
    const plainSettings = licensingSettings(config);
    const rulesSettings = deps.rulesSettings ?? (() => config.rules);
    const rules = loadRules(rulesSettings());
    // The certificate and key are settings too: checked before the data directory is touched.
    const tls = config.tls === null ? null : new TlsContext(config.tls);
    const opened = await openServerStore(config, logger, deps.newServerKey ?? false);
    try {
      return new AppContext(await AppContext.licensed(opened, { config, clock, logger, rules, rulesSettings, tls, plainSettings, deps }));
    } catch (err) {
      closeAfterFailedStart(config, opened);
      throw err;
    }
  }

  /** Signing, licensing, evaluation and activation over the opened store. */
  private static async licensed(
    opened: OpenedServerStore,
    a: { config: Config; clock: SteadyClock; logger: Logger; rules: LoadedRules; rulesSettings: () => RulesSettings; tls: TlsContext | null; plainSettings: LicensingSettings; deps: AppDeps },
  ): Promise<Opened> {
    const { config, clock, logger } = a;
    const { store, key } = opened;
    // A node of a cluster times everything on the database's clock from the start (the database decides every lease on it).
    if (store.kind === 'postgres') clock.rebase((await store.databaseTime()) - clock.now());
    const signer = await LeaseTokenSigner.create(key.privateJwk);
    const settings = underProductTerms(a.plainSettings, await productTermsOf(store), config);
    // The SQLite log's single chain is signed at checkpoints; a cluster's per-writer chains are verified by floatd log verify.
    if (store.kind === 'sqlite') store.enableLogCheckpoints(await logChainOptions(config, key.privateJwk));
    warnClampedTerms(logger, settings.evaluationClamped ?? []);
    for (const message of config.unknownEnvironment) logger.warn(message);
    const evaluation = new ServerEvaluation(evaluationKeeper(store, config.evaluationStateDir, config.hostRoot, logger), store, logger);
    const licensing = await licensingFor(store, clock, settings, evaluation.keeper);
    const fingerprint = await thumbprint(key.publicJwk);
    const activation = new ServerActivation({
      store,
      clock,
      serverKey: key,
      serverKid: fingerprint,
      trusted: await trustVendorKeys(settings.vendorPublicKeys),
      hostRoot: config.hostRoot,
      dataDir: config.dataDir,
      settings: config.activation,
      ca: a.deps.activationCa,
    });
    const { rules, rulesSettings, tls } = a;
    const connectionTimers = a.deps.connectionTimers;
    return { config, clock, logger, store, lock: opened.lock, createdDataDir: opened.created, settings, licensing, fingerprint, publicJwk: key.publicJwk, signer, rules, rulesSettings, tls, activation, evaluation, connectionTimers };
  }

  private constructor(o: Opened) {
    ({ config: this.config, clock: this.clock, logger: this.logger, store: this.store, lock: this.lock, createdDataDir: this.createdDataDir } = o);
    ({ settings: this.settings, licensing: this.licensing, fingerprint: this.fingerprint, tls: this.tls, activation: this.activation, evaluation: this.evaluation } = o);
    const { store, clock, logger, config } = this;
    this.budget = new ConnectionBudget(config.maxConnections);
    this.metrics = new PrometheusMetrics(VERSION, () => metricsState(this));
    this.warnings = new OperatorWarnings(config, clock, logger, this.metrics, this.budget, softFdLimit());
    this.storage = new StorageHealth(clock, logger, () => store.probe(), (reason, n) => this.metrics.storageUnavailable(reason, n));
    this.statusView = new StatusView(clock, () => this.computeStatus());
    this.runtime = new RuntimeRecord(store, () => this.doors.listenerStatus(), () => this.rules.current().summary);
    this.leases = this.leaseService();
    this.retention = new LogRetention(store, clock, logger, config.leaseLog);
    this.sweeper = this.expirySweeper();
    this.clockWatch = new ClockWatch(clock, store, this.leases);
    store.configureCommits({ guard: this.storage, committed: (n, seconds) => this.metrics.committed(n, seconds) });
    const changed = this.statusView.changed;
    const recordRuntime = () => {
      this.runtime.record().catch((err: unknown) => {
        if (this.storage.failed(err, 0) === null) logger.error({ err }, 'recording the running server in the data directory failed');
      });
    };
    this.rules = new RulesInForce(o.rules, { settings: o.rulesSettings, leases: this.leases, store, clock, logger, changed: () => (changed(), recordRuntime()) });
    this.activations = new ActivationWatch({ activation: this.activation, pools: this.pools, store, clock, logger, changed, stopping: () => this.phase.stopping });
    this.licenses = new LicenseWatch({ config, settings: this.settings, store, licensing: this.licensing, pools: this.pools, leases: this.leases, activations: this.activations, evaluation: this.evaluation, clock, logger, changed });
    this.api = this.leaseApi(o);
    this.adminTokens = new AdminTokens(store, clock, store.kind === 'postgres' ? store.cluster.nodeId : null);
    this.admin = new AdminService({ store, leases: this.leases, clock });
    this.doors = new Doors({ config, clock, api: this.api, tls: this.tls, metrics: this.metrics, warnings: this.warnings, budget: this.budget, admin: serverAdminApi(this), readiness: () => this.readiness(), timers: o.connectionTimers });
    this.cluster =
      store.kind === 'postgres'
        ? new ClusterMembership(store, clock, logger, () => ({
            listeners: this.doors.listenerStatus().map((l) => `${l.scheme}://${l.address}:${l.port}`),
            version: VERSION,
            startedAt: this.runtime.startedAt,
          }))
        : null;
    // A lease of this node's client that another node ended (an operator's revoke there, a sweep): its client is told here.
    if (store.kind === 'postgres') store.changes.onLeaseEnded((e) => (this.statusView.changed(), this.api.leaseEnded(e.lease, e.kind, e.reason)));
  }

  private leaseService(): LeaseService {
    const { metrics, config } = this;
    return new LeaseService(
      this.store,
      this.clock,
      this.pools,
      { leaseMs: config.leaseSeconds * 1000, logLevel: config.leaseLog.level },
      {
        leaseEnded: (lease, kind, reason) => {
          this.statusView.changed();
          metrics.ended(kind);
          this.api.leaseEnded(lease, kind, reason);
        },
        expiryScheduled: (at) => this.sweeper.expiryAt(at),
        tally: (t) => {
          if (t.kind === 'denied') return metrics.denied(t.code, t.reason);
          this.statusView.changed();
          if (t.kind === 'renewed') return metrics.renewed(t.product);
          metrics.granted(t.product);
          if (this.pools.evaluationPool() !== null) {
            this.evaluation.granted(t.product).catch((err: unknown) => {
              if (this.storage.failed(err, 0) === null) this.logger.error({ err, product: t.product }, 'noting the product of an evaluation lease failed');
            });
          }
        },
      },
    );
  }

  private expirySweeper(): Sweeper {
    const { storage: health, clock, store, logger } = this;
    return new Sweeper(
      clock,
      async () => {
        if (!health.mayTry()) return;
        // Many leases expiring at once are swept a slice at a time, answering requests in between.
        const { swept, more } = await this.leases.sweepFor(SWEEP_SLICE_MS);
        if (swept > 0) logger.debug({ expired: swept }, 'leases expired');
        return more;
      },
      async (after) => {
        // In a storage fault, look again when the storage may be back rather than at an expiry already past.
        if (health.fault() !== null) return clock.now() + STORAGE_RETRY_MS;
        try {
          return await store.nextExpiry(after);
        } catch (err) {
          if (health.failed(err, 0) === null) throw err;
          return clock.now() + STORAGE_RETRY_MS;
        }
      },
      (err) => {
        if (health.failed(err, 0) === null) logger.error({ err }, 'sweeping expired leases failed');
      },
      60_000,
      (lag) => this.metrics.swept(lag),
    );
  }

  private leaseApi(o: Opened): ServerLeaseApi {
    const { config } = this;
    return new ServerLeaseApi({
      leases: this.leases,
      signer: o.signer,
      clock: this.clock,
      publicJwk: o.publicJwk,
      status: () => this.statusView.current(),
      publicStatus: async () => publicStatus(await this.statusView.current(), this.readiness()),
      groupsOf: (user) => this.rules.groupsOf(user),
      chainOf: (poolId) => this.activations.chainOf(poolId),
      suspended: (listener) => this.doors.isSuspended(listener),
      ...(config.acquireRateLimit === null
        ? {}
        : { acquireRate: new TokenBuckets(config.acquireRateLimit), rateLimited: (remote: string, retryAfterMs: number) => this.warnings.acquireRateLimited(remote, retryAfterMs) }),
    });
  }

  /** For /readyz: leases can be served once started, until stopping begins. */
  readiness(): { ready: boolean; reason: string } {
    if (this.phase.stopping) return { ready: false, reason: 'stopping' };
    if (!this.phase.serving) return { ready: false, reason: 'starting' };
    const fault = this.storage.fault();
    if (fault !== null) return { ready: false, reason: `storage unavailable: ${fault}` };
    const suspended = this.doors.suspended();
    if (suspended.length > 0) return { ready: false, reason: `suspended: ${suspended.join(', ')}` };
    const database = this.cluster?.replication;
    if (database !== null && database !== undefined && database.role === 'primary' && !database.synchronous) {
      return { ready: true, reason: 'serving; the database has no synchronous standby (a failover may lose leases granted just before it)' };
    }
    return { ready: true, reason: 'serving' };
  }

  private async computeStatus(): Promise<ServerStatus> {
    const status = await collectStatus({
      store: this.store,
      pools: this.pools,
      now: this.clock.now(),
      rejectedKeys: this.licenses.rejected().map((r) => ({ id: r.id, code: r.error.code, message: r.error.message })),
      serverKeyFingerprint: this.fingerprint,
      listeners: this.doors.listenerStatus(),
      running: true,
      rules: this.rules.current().summary,
      logAnchor: logAnchorOf(this.store.kind === 'sqlite' ? this.store.latestCheckpoint() : undefined),
      settings: this.settings,
    });
    return this.cluster === null ? status : { ...status, cluster: await clusterStatus(this.cluster, this.store, this.clock.now()) };
  }
}
