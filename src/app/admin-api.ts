import { deny } from '../domain/errors.js';
import type { AdminApi } from '../adapters/http/admin-routes.js';
import type { AppContext } from './context.js';
import { logAnchorOf } from './log-anchor.js';
import { reloadTls } from './tls-certificate.js';
import { runReport } from './report-runner.js';
import { usageReportJson, usersReportJson } from './reports.js';
import { VERSION } from './version.js';

/** The admin API's use cases, for the web endpoint's /v1/admin routes; every change is logged with its actor. */
export function serverAdminApi(ctx: AppContext): AdminApi {
  const { config, logger, clock } = ctx;
  const subjects = config.admin.certificateSubjects;
  return {
    authenticate: async (bearer, subject) => {
      if (bearer !== null && bearer.trim() !== '') return ctx.adminTokens.actorOf(bearer);
      return subject !== null && subjects.includes(subject) ? `cert:${subject}` : null;
    },
    signIn: (token) => ctx.adminTokens.signIn(token),
    leases: (filter) => ctx.admin.leases(filter),
    revoke: async (id, reason, actor, block) => {
      const outcome = await ctx.admin.revoke(id, reason, actor, block);
      if (outcome.ok) {
        const { lease } = outcome;
        const kept = outcome.block === undefined ? '' : `; kept out of ${outcome.block.product} until ${outcome.block.until}`;
        logger.warn({ lease: lease.id, user: lease.user, host: lease.host, actor, reason, blockedUntil: outcome.block?.until }, `lease ${lease.id} of ${lease.user}@${lease.host} revoked by ${actor}: ${reason}${kept}`);
      }
      return outcome;
    },
    blocks: () => ctx.admin.blocks(),
    unblock: async (id, actor) => {
      const outcome = await ctx.admin.unblock(id, actor);
      if (outcome.ok) logger.warn({ block: outcome.block.id, user: outcome.block.user, actor }, `block ${outcome.block.id} of ${outcome.block.user} on ${outcome.block.product} lifted by ${actor}`);
      return outcome;
    },
    reloadRules: (actor) => {
      logger.info({ actor }, 'rules reload asked through the admin API');
      return ctx.rules.reload();
    },
    reloadTls: async (actor) => {
      if (ctx.tls === null) return deny('TLS_NOT_CONFIGURED', 'this server has no TLS certificate (tls.certFile and tls.keyFile are not set): there is nothing to reload');
      const outcome = reloadTls(ctx);
      if (outcome.ok) await ctx.admin.record('tls-reloaded', actor, outcome.message);
      return outcome;
    },
    suspend: (listener, actor) => suspendListeners(ctx, listener, actor, true),
    resume: (listener, actor) => suspendListeners(ctx, listener, actor, false),
    log: (filter) => ctx.admin.log(filter),
    usageReport: async (q) => usageReportJson(await runReport({ dbFile: config.dbFile, kind: 'usage', query: { ...q, nowMs: clock.now() } }, ctx.store)),
    usersReport: async (q) => usersReportJson(await runReport({ dbFile: config.dbFile, kind: 'users', query: { ...q, nowMs: clock.now() } }, ctx.store)),
    server: () => serverFacts(ctx),
  };
}

/** Readiness, uptime, version, listeners and the server's time, for the dashboard. */
function serverFacts(ctx: AppContext) {
  const now = ctx.clock.now();
  const { ready, reason } = ctx.readiness();
  const startedAt = ctx.runtime.startedAt;
  return {
    version: VERSION,
    now: new Date(now).toISOString(),
    ready,
    reason,
    startedAt: startedAt === 0 ? null : new Date(startedAt).toISOString(),
    uptimeSeconds: startedAt === 0 ? 0 : Math.max(0, Math.round((now - startedAt) / 1000)),
    listeners: ctx.doors.listenerStatus(),
    leaseSeconds: ctx.config.leaseSeconds,
    logAnchor: logAnchorOf(ctx.store.kind === 'sqlite' ? ctx.store.latestCheckpoint() : undefined),
  };
}

/** Suspends or resumes lease listeners (one by name, or all), NDJSON and web alike; recorded in the lease log. */
async function suspendListeners(ctx: AppContext, listener: string | null, actor: string, suspend: boolean) {
  const outcome = ctx.doors.suspend(listener, suspend);
  if (!outcome.ok) return outcome;
  const { suspended } = outcome;
  ctx.statusView.changed();
  await ctx.runtime.record();
  const what = listener === null ? 'every listener' : `listener "${listener}"`;
  await ctx.admin.record(suspend ? 'listener-suspended' : 'listener-resumed', actor, `${what} ${suspend ? 'suspended' : 'resumed'}; suspended now: ${suspended.join(', ') || 'none'}`);
  ctx.logger.warn({ actor, listener, suspended }, `${what} ${suspend ? 'suspended: new lease connections are refused' : 'resumed'} by ${actor}`);
  return outcome;
}
