import { mkdirSync } from 'node:fs';
import type { JWK } from 'jose';
import type { Config, RulesSettings } from '../config/config.js';
import type { Clock, TimerHandle } from '../domain/clock.js';
import { FloatdError } from '../domain/errors.js';
import { licenseValidity } from '../domain/license.js';
import { EVALUATION_POOL_ID } from '../domain/pool.js';
import { OPEN_GATE } from '../domain/gate.js';
import { RuleGate } from '../domain/rules/rule-gate.js';
import type { LeaseStore } from '../domain/ports.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { loadOrCreateServerKey, readJwkFile, thumbprint } from '../adapters/crypto/keys.js';
import { LeaseTokenSigner } from '../adapters/crypto/lease-tokens.js';
import { trustVendorKeys, type TrustedVendorKey } from '../adapters/crypto/license-keys.js';
import { createLogger, type Logger } from '../adapters/log/logger.js';
import { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import { TcpServer, type BoundListener } from '../adapters/tcp/tcp-server.js';
import { LeaseService } from './lease-service.js';
import { Licensing, type LoadedLicenses } from './licensing.js';
import { PoolRegistry } from './pool-registry.js';
import { LeaseProtocol } from './protocol.js';
import { loadRules, type FileError, type LoadedRules } from './rules.js';
import { collectStatus, type ServerStatus } from './status.js';
import { Sweeper } from './sweeper.js';
import { VERSION } from './version.js';

const DAY_MS = 86_400_000;
const MAINTENANCE_MS = 1000;
export const RUNTIME_META = 'runtime';

export interface FloatdDeps {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /**
   * Where rules come from on reload (`serve` re-reads the config file, so
   * inline rules can change too). Defaults to the settings in `config`.
   */
  readonly rulesSettings?: () => RulesSettings;
}

export type RulesReload =
  | { readonly ok: true; readonly summary: string }
  | { readonly ok: false; readonly message: string; readonly errors: readonly FileError[] };

/** Reads the trusted vendor public keys named in config, naming any bad file. */
export async function loadTrustedVendorKeys(config: Config): Promise<TrustedVendorKey[]> {
  const jwks: JWK[] = config.vendorPublicKeys.map((file) => {
    try {
      return readJwkFile(file, 'public');
    } catch (err) {
      throw new FloatdError('CONFIG_INVALID', `setting vendorPublicKeys: ${(err as Error).message}`, { setting: 'vendorPublicKeys' });
    }
  });
  return trustVendorKeys(jwks);
}

/** Opens the data directory's store (creating the directory and schema on first use). */
export function openStore(config: Config): SqliteLeaseStore {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  return new SqliteLeaseStore(config.dbFile);
}

/**
 * The composition root: builds every part of a running server from Config,
 * and starts and stops them in order.
 */
export class Floatd {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly pools = new PoolRegistry();
  readonly leases: LeaseService;
  private readonly sweeper: Sweeper;
  private readonly tcp: TcpServer;
  private readonly protocol: LeaseProtocol;
  private bound: BoundListener[] = [];
  private rejected: LoadedLicenses['rejected'] = [];
  private maintenance: TimerHandle | null = null;
  private lastChange = -1;
  private lastPrune = 0;
  private keyStates = new Map<string, string>();
  private started = false;
  private stopped = false;
  private reloading: Promise<void> | null = null;
  private rules: LoadedRules;
  private readonly rulesSettings: () => RulesSettings;

  private constructor(
    readonly config: Config,
    readonly store: LeaseStore,
    private readonly licensing: Licensing,
    private readonly fingerprint: string,
    publicJwk: JWK,
    signer: LeaseTokenSigner,
    rules: LoadedRules,
    deps: { clock: Clock; logger: Logger; rulesSettings: () => RulesSettings },
  ) {
    this.clock = deps.clock;
    this.logger = deps.logger;
    this.rules = rules;
    this.rulesSettings = deps.rulesSettings;
    this.leases = new LeaseService(
      store,
      this.clock,
      this.pools,
      { leaseMs: config.leaseSeconds * 1000, logLevel: config.leaseLog.level },
      {
        leaseEnded: (lease, kind, reason) => this.protocol.leaseEnded(lease, kind, reason),
        expiryScheduled: (at) => this.sweeper.expiryAt(at),
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
    );
    this.protocol = new LeaseProtocol({
      leases: this.leases,
      signer,
      clock: this.clock,
      logger: this.logger,
      publicJwk,
      status: () => this.status(),
      groupsOf: (user) => this.rules.groups.get(user) ?? [],
    });
    this.tcp = new TcpServer(
      {
        listeners: config.listeners,
        frameMaxBytes: config.frameMaxBytes,
        handshakeTimeoutMs: config.handshakeTimeoutSeconds * 1000,
        idleTimeoutMs: (config.idleTimeoutSeconds > 0 ? config.idleTimeoutSeconds : config.leaseSeconds + 60) * 1000,
        maxConnections: config.maxConnections,
        backlog: config.backlog,
        keepAliveMs: config.keepAliveSeconds * 1000,
        runBatch: (fn) => store.batch(fn),
      },
      this.protocol,
      {
        protocolError: (conn, code, detail) =>
          this.logger.debug({ remote: conn.remote, listener: conn.listener, code, detail }, 'protocol error'),
      },
    );
    this.applyRules(rules);
  }

  private applyRules(rules: LoadedRules): void {
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
    const clock = deps.clock ?? new SystemClock();
    const logger = deps.logger ?? createLogger(config.log);
    const trusted = await loadTrustedVendorKeys(config);
    const rulesSettings = deps.rulesSettings ?? (() => config.rules);
    const rules = loadRules(rulesSettings());
    const store = openStore(config);
    try {
      const key = await loadOrCreateServerKey(config.serverKeyFile);
      const signer = await LeaseTokenSigner.create(key.privateJwk);
      const licensing = new Licensing(store, clock, trusted, config.products);
      return new Floatd(config, store, licensing, await thumbprint(key.publicJwk), key.publicJwk, signer, rules, { clock, logger, rulesSettings });
    } catch (err) {
      store.close();
      throw err;
    }
  }

  /** Loads keys, sweeps what lapsed while down, then listens. */
  async start(): Promise<BoundListener[]> {
    if (this.started) return this.bound;
    this.started = true;
    await this.reloadLicenses(true);
    this.sweeper.start();
    this.bound = await this.tcp.start();
    const now = this.clock.now();
    this.store.setMeta(RUNTIME_META, JSON.stringify({ pid: process.pid, startedAt: now, listeners: this.bound }));
    this.store.appendEvent({ ts: now, event: 'server-started', message: `floatd ${VERSION} listening on ${this.bound.map((b) => `${b.address}:${b.port}`).join(', ')}` });
    if (this.rules.book !== null || this.rules.groups.size > 0) {
      this.store.appendEvent({ ts: now, event: 'rules-reloaded', message: `in force at start: ${this.rules.summary}` });
    }
    this.logger.info({ rules: this.rules.book?.size ?? 0 }, this.rules.summary);
    this.scheduleMaintenance();
    for (const b of this.bound) this.logger.info({ listener: b.name, address: b.address, port: b.port }, 'listening');
    return this.bound;
  }

  listeners(): readonly BoundListener[] {
    return this.bound;
  }

  status(): ServerStatus {
    return collectStatus({
      store: this.store,
      pools: this.pools,
      now: this.clock.now(),
      rejectedKeys: this.rejected.map((r) => ({ id: r.id, code: r.error.code, message: r.error.message })),
      serverKeyFingerprint: this.fingerprint,
      listeners: this.bound.map((b) => ({ name: b.name, address: b.address, port: b.port })),
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
    const loaded = await this.licensing.load();
    this.rejected = loaded.rejected;
    // Evaluation only while no key is installed at all: a rejected key does not bring it back.
    const noKeys = loaded.keys.length === 0 && loaded.rejected.length === 0;
    const startedAt = this.licensing.evaluationStartedAt(noKeys);
    const evaluation = noKeys ? { seats: this.config.evaluation.seats, periodMs: this.config.evaluation.days * DAY_MS, startedAt } : null;
    const before = new Set(this.pools.all().map((p) => p.id));
    this.pools.set(loaded.keys, evaluation);
    for (const r of loaded.rejected) {
      this.logger.error({ key: r.id, code: r.error.code }, `installed license key ignored: ${r.error.message}`);
    }
    const now = this.clock.now();
    this.checkKeyStates(now, initial);
    const evalPool = this.pools.evaluationPool();
    if (evalPool !== null && (initial || !before.has(evalPool.id))) {
      const daysLeft = Math.max(0, Math.ceil((evalPool.expiresAt! - now) / DAY_MS));
      if (now >= evalPool.expiresAt!) {
        this.logger.error({ endedAt: new Date(evalPool.expiresAt!).toISOString() }, 'evaluation period is over and no license key is installed: no seats can be granted');
      } else {
        this.logger.warn(
          { seats: evalPool.seats, daysLeft, endsAt: new Date(evalPool.expiresAt!).toISOString() },
          `evaluation mode: no license key installed; ${evalPool.seats} seat(s) for ${daysLeft} more day(s)`,
        );
      }
    } else if (this.pools.all().length === 0) {
      this.logger.error('no usable license key is installed and evaluation is off: no seats can be granted');
    }
    const current = new Set(this.pools.all().map((p) => p.id));
    const revoked = this.leases.revokeInvalid((poolId) =>
      current.has(poolId) ? null : poolId === EVALUATION_POOL_ID ? 'evaluation ended: a license key is installed' : 'its license key was removed',
    );
    if (revoked > 0) this.logger.warn({ revoked }, 'leases revoked: their license key is gone');
  }

  private checkKeyStates(now: number, initial: boolean): void {
    for (const key of this.pools.licenseKeys()) {
      const validity = licenseValidity(key, now);
      const previous = this.keyStates.get(key.id);
      if (previous === validity.state) continue;
      this.keyStates.set(key.id, validity.state);
      const info = { key: key.id, product: key.product, licensee: key.licensee, seats: key.seats };
      if (validity.state === 'valid') {
        if (initial || previous !== undefined) this.logger.info({ ...info, expires: key.expiresAt ? new Date(key.expiresAt).toISOString() : null }, 'license key in force');
      } else {
        this.logger.error(info, `${validity.message}: no seats of ${key.product} are granted from it`);
        if (validity.state === 'expired' && this.store.getMeta(`key-expired:${key.id}`) === undefined) {
          this.store.setMeta(`key-expired:${key.id}`, String(now));
          this.store.appendEvent({ ts: now, event: 'key-expired', poolId: key.id, product: key.product, message: validity.message });
        }
      }
    }
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

  /** Every second: notice key changes made by `floatd license` and key expiry, checkpoint the WAL, prune the lease log. */
  private maintain(): void {
    const now = this.clock.now();
    if (this.store.changeCounter() !== this.lastChange) {
      this.reloadLicenses().catch((err: unknown) => this.logger.error({ err }, 'reloading license keys failed'));
    }
    this.checkKeyStates(now, false);
    this.store.checkpoint();
    if (this.config.leaseLog.retentionDays > 0 && now - this.lastPrune > 3_600_000) {
      this.lastPrune = now;
      const pruned = this.store.pruneEvents(now - this.config.leaseLog.retentionDays * DAY_MS);
      if (pruned > 0) this.logger.info({ pruned }, 'old lease-log entries pruned');
    }
  }

  /** Stops accepting, finishes in-flight replies, stops timers, closes the database last. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.tcp.stop();
    this.maintenance?.cancel();
    this.sweeper.stop();
    await this.reloading;
    if (this.started) {
      this.store.appendEvent({ ts: this.clock.now(), event: 'server-stopped' });
      this.store.setMeta(RUNTIME_META, '');
    }
    this.store.close();
    this.logger.info('stopped');
    this.logger.flush?.();
  }
}
