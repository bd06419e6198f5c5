import { rmSync } from 'node:fs';
import { FloatdError, isStorageFault } from '../domain/errors.js';
import { policyNote } from '../domain/log-anchoring.js';
import type { Checkpoint } from '../adapters/sqlite/log-chain.js';
import type { BoundListener } from '../adapters/tcp/tcp-server.js';
import { descriptorHeadroom } from '../config/fd-limit.js';
import type { ClockJump } from './clock-watch.js';
import type { AppContext } from './context.js';
import { recordLicensingSettings } from './data-dir.js';
import { Jobs, type Job } from './jobs.js';
import { anchorFields, checkpointPolicy } from './log-anchor.js';
import { logCertificate, reloadTls } from './tls-certificate.js';
import { VERSION } from './version.js';
import type { ServerStore } from './stores.js';
import type { LeaseEventInput } from '../domain/events.js';

const SECOND_MS = 1000;

/** A lease-log entry that the SQLite log signs a checkpoint of at once (a start, a stop); a cluster's log is checked per writer by floatd log verify. */
async function appendAnchored(store: ServerStore, event: LeaseEventInput): Promise<Checkpoint | undefined> {
  if (store.kind === 'sqlite') return store.appendAnchored(event);
  await store.appendEvent(event);
  return undefined;
}
const HOUR_MS = 3_600_000;

export interface LeaseServerOptions {
  /**
   * Called when a stop has not finished after `forceExitAfterMs` (a client or
   * a storage that never lets go): the process exits rather than hang.
   */
  readonly forceExit?: (code: number) => void;
  readonly forceExitAfterMs?: number;
}

/**
 * A running floatd: starts what the AppContext built, in order, and stops it
 * again. Both are idempotent and safe to call concurrently; a start that fails
 * half-way stops what it started and leaves no trace but its error.
 */
export class LeaseServer {
  private readonly jobs: Jobs;
  private starting: Promise<BoundListener[]> | null = null;
  private stopping: Promise<void> | null = null;
  /** The doors listened: the stop is recorded in the lease log. */
  private listening = false;

  constructor(
    private readonly ctx: AppContext,
    private readonly options: LeaseServerOptions = {},
  ) {
    this.jobs = new Jobs(ctx.clock, ctx.store.cluster, ctx.storage, ctx.logger);
  }

  /**
   * Loads the keys, listens, and only then records the start (the evaluation
   * clock, the settings commands read, the runtime record).
   */
  start(): Promise<BoundListener[]> {
    if (this.stopping !== null) return Promise.reject(new FloatdError('SHUTTING_DOWN', 'this server was stopped; create a new one'));
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<BoundListener[]> {
    const { ctx } = this;
    let bound: BoundListener[];
    let startAnchor: Checkpoint | undefined;
    try {
      // Pools first (quietly), so the first requests after listening are served.
      await ctx.licenses.loadAtStart();
      bound = await ctx.doors.start();
      this.listening = true;
      startAnchor = await this.recordStart(bound);
    } catch (err) {
      await this.stop();
      if (ctx.createdDataDir) rmSync(ctx.config.dataDir, { recursive: true, force: true });
      throw err;
    }
    ctx.phase.serving = true;
    this.jobs.start(this.jobTable());
    this.logStart(startAnchor);
    return bound;
  }

  /** What a start leaves in the data directory, once the doors listen. */
  private async recordStart(bound: readonly BoundListener[]): Promise<Checkpoint | undefined> {
    const { ctx } = this;
    const { store, pools, clock, config, logger } = ctx;
    await recordLicensingSettings(store, ctx.settings);
    await ctx.licensing.recordEvaluationStart(pools.evaluationPool() !== null);
    await ctx.evaluation.keysFound(pools.licenseKeys().map((k) => k.id), clock.now());
    await ctx.licenses.saveEvaluation();
    if ((await ctx.adminTokens.ensureLocal(config.adminTokenFile)).created) {
      logger.info({ file: config.adminTokenFile }, `admin token "${ctx.adminTokens.localName}" made: it is in ${config.adminTokenFile} (mode 0600); floatd admin uses it`);
    }
    await ctx.licenses.reload(true);
    // On a single server, lease time is the wall clock kept steady; in a cluster it is the database's, which no node's clock moves.
    if (ctx.cluster === null) this.clockJumped(await ctx.clockWatch.atStart());
    else await ctx.cluster.beat();
    ctx.sweeper.start();
    const now = clock.now();
    ctx.runtime.startedAt = now;
    await ctx.runtime.record();
    const listening = bound.map((b) => `${b.address}:${b.port}`).join(', ');
    const started = { ts: now, event: 'server-started' as const, message: `floatd ${VERSION} listening on ${listening}; ${policyNote(checkpointPolicy(config))}` };
    const anchor = await appendAnchored(store, ctx.cluster === null ? started : { ...started, message: `node ${ctx.cluster.nodeId}: floatd ${VERSION} listening on ${listening}` });
    const rules = ctx.rules.current();
    if (rules.book !== null || rules.groups.size > 0) await store.appendEvent({ ts: now, event: 'rules-reloaded', message: `in force at start: ${rules.summary}` });
    return anchor;
  }

  private logStart(startAnchor: Checkpoint | undefined): void {
    const { ctx } = this;
    const { logger, config } = ctx;
    const rules = ctx.rules.current();
    logger.info({ rules: rules.book?.size ?? 0 }, rules.summary);
    logCertificate(ctx, 'TLS certificate in use');
    const listeners = ctx.doors.listenerStatus();
    if (ctx.tls !== null && !listeners.some((l) => l.scheme === 'tls' || l.scheme === 'https')) {
      logger.warn('tls.certFile and tls.keyFile are set, but no listener uses TLS: add https.listen or a tls:// listener');
    }
    this.checkDescriptorLimit();
    for (const l of listeners) logger.info({ listener: l.name, scheme: l.scheme, address: l.address, port: l.port }, 'listening');
    logger.info(startAnchor ? anchorFields(startAnchor) : {}, 'started');
    for (const l of [...config.listeners, ...config.http.listen, ...config.https.listen]) {
      if (!l.proxyProtocol) continue;
      const trustedProxies = l.proxyProtocol.trustedProxies.map((n) => `${n.address}/${n.prefix}`);
      logger.info({ listener: l.name, trustedProxies }, `listener "${l.name}" takes client addresses from PROXY protocol headers sent by ${trustedProxies.join(', ')}`);
    }
  }

  /**
   * The server's periodic work, one table: each job runs on its own period;
   * `once` marks the jobs a cluster runs on one node only.
   */
  private jobTable(): Job[] {
    const { ctx } = this;
    const { store, clock, licenses } = ctx;
    const jobs: Job[] = [
      { name: 'clock-high-water', everyMs: SECOND_MS, storage: true, run: () => licenses.trackClock(clock.now()), failure: 'recording the clock high-water mark failed' },
      { name: 'license-watch', everyMs: SECOND_MS, storage: true, run: () => licenses.tick(clock.now()), failure: 'reloading license keys failed' },
      { name: 'tls-watch', everyMs: SECOND_MS, run: () => void (ctx.tls?.changed() && reloadTls(ctx)), failure: 'reloading the TLS certificate failed' },
      // A node's own activation: each node of a cluster checks its own.
      { name: 'activation-check', everyMs: HOUR_MS, firstAfterMs: 0, once: ctx.cluster === null, run: () => ctx.activations.check(), failure: 'checking activations failed' },
    ];
    if (store.kind === 'sqlite') {
      jobs.push(
        { name: 'clock-watch', everyMs: SECOND_MS, storage: true, run: async () => this.clockJumped(await ctx.clockWatch.check()), failure: 'moving lease expiries after a wall-clock jump failed' },
        { name: 'log-checkpoint', everyMs: SECOND_MS, storage: true, once: true, run: () => void store.checkpointLogIfDue(clock.now()), failure: 'signing a lease-log checkpoint failed' },
        { name: 'wal-checkpoint', everyMs: SECOND_MS, storage: true, run: () => store.checkpoint(), failure: 'checkpointing the database failed' },
      );
    }
    const cluster = ctx.cluster;
    if (cluster !== null) {
      jobs.push(
        // The heartbeat keeps this node's row fresh and its lease time in step with the database's clock.
        { name: 'cluster-heartbeat', everyMs: 5 * SECOND_MS, storage: true, run: () => cluster.beat(), failure: 'writing this node\'s heartbeat failed' },
        { name: 'replication-watch', everyMs: 10 * SECOND_MS, firstAfterMs: 0, storage: true, run: async () => (await cluster.watchReplication(), ctx.statusView.changed()), failure: 'reading the database\'s replication state failed' },
      );
    }
    if (ctx.config.leaseLog.retentionDays > 0) {
      // Looked at every second, run at most once an hour: a turn that falls in a storage fault runs when it is over, not an hour later.
      let lastRun = -Infinity;
      const prune = () => {
        const now = clock.now();
        if (now - lastRun < HOUR_MS) return;
        lastRun = now;
        ctx.retention.start();
      };
      jobs.push({ name: 'retention', everyMs: SECOND_MS, storage: true, once: true, run: prune, failure: 'pruning the lease log failed' });
    }
    return jobs;
  }

  /** The wall clock jumped (or, at start, is behind what the database recorded): a warning, a count, and the sweeper plans afresh. */
  private clockJumped(jump: ClockJump | null): void {
    if (jump === null) return;
    const { ctx } = this;
    ctx.logger.warn({ jumpMs: jump.shiftMs, leases: jump.leases, wallClock: new Date(ctx.clock.wallNow()).toISOString() }, jump.message);
    ctx.metrics.clockJumped();
    ctx.statusView.changed();
    ctx.sweeper.reschedule();
  }

  /** Warns at start when maxConnections is more than the process's file-descriptor limit leaves room for. */
  private checkDescriptorLimit(): void {
    const limit = this.ctx.warnings.fdLimit;
    const max = this.ctx.config.maxConnections;
    if (limit === null) return;
    const room = limit - descriptorHeadroom(limit);
    if (max <= room) return;
    this.ctx.logger.warn(
      { maxConnections: max, fileDescriptorLimit: limit },
      `maxConnections is ${max}, but the file-descriptor limit of ${limit} leaves room for about ${Math.max(0, room)} connections: ` +
        'past that, new clients are reset; raise the limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower maxConnections',
    );
  }

  /**
   * Stops accepting, finishes in-flight replies, stops the jobs, closes the
   * store and releases the data directory last. Idempotent; also cleans up
   * after a start that failed half-way.
   */
  stop(): Promise<void> {
    this.stopping ??= this.withForcedExit(() => this.doStop());
    return this.stopping;
  }

  private async withForcedExit(stop: () => Promise<void>): Promise<void> {
    const { forceExit, forceExitAfterMs = 30_000 } = this.options;
    if (forceExit === undefined) return stop();
    const timer = setTimeout(() => {
      this.ctx.logger.error({ afterMs: forceExitAfterMs }, `the stop did not finish within ${forceExitAfterMs / 1000} s: exiting without it (every acknowledged change is committed)`);
      this.ctx.logger.flush?.();
      forceExit(1);
    }, forceExitAfterMs);
    timer.unref();
    try {
      await stop();
    } finally {
      clearTimeout(timer);
    }
  }

  private async doStop(): Promise<void> {
    const { ctx } = this;
    ctx.phase.stopping = true;
    // No periodic work starts once stopping begins; what runs now is awaited below.
    this.jobs.halt();
    let stopAnchor: Checkpoint | undefined;
    try {
      await ctx.doors.stop();
      await ctx.store.drained();
      ctx.doors.close();
      ctx.sweeper.stop();
      await this.jobs.settled();
      await ctx.retention.stop();
      ctx.storage.stop();
      await ctx.licenses.settled();
      if (this.listening) stopAnchor = await this.recordStop();
    } finally {
      if (ctx.store.kind === 'postgres') await ctx.store.end();
      else ctx.store.close();
      ctx.lock.release();
    }
    // Only a server that started stops; one whose start failed has logged its error.
    if (ctx.phase.serving) ctx.logger.info(stopAnchor ? anchorFields(stopAnchor) : {}, 'stopped');
    ctx.logger.flush?.();
  }

  /** A stopped server leaves the whole log under a signature: the checkpoint of its stop entry. */
  private async recordStop(): Promise<Checkpoint | undefined> {
    const { ctx } = this;
    try {
      await ctx.runtime.clear();
      if (ctx.cluster !== null) await ctx.cluster.leave();
      return await appendAnchored(ctx.store, { ts: ctx.clock.now(), event: 'server-stopped', message: ctx.cluster === null ? 'clean stop' : `node ${ctx.cluster.nodeId}: clean stop` });
    } catch (err) {
      // A storage fault does not stop a stop: every acknowledged change is committed already.
      if (!isStorageFault(err)) throw err;
      if (ctx.phase.serving) ctx.logger.warn({ code: err.code, reason: err.details.reason }, `the stop could not be recorded in the lease log: ${err.message}`);
      return undefined;
    }
  }
}
