import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FloatdError, wireCodeOf, type Denial, type ErrorDetails, type WireCode } from '../../domain/errors.js';
import type {
  BlocksReply,
  BlockView,
  LeasesReply,
  LeaseView,
  LogReply,
  RevokeReply,
  RulesReloadReply,
  ServerInfo,
  ServerReply,
  SuspensionReply,
  TlsReloadReply,
  UnblockReply,
  UsageReportReply,
  UsersReportReply,
} from '../../domain/admin-replies.js';
import type { EventFilter, LeaseEvent } from '../../domain/events.js';
import type { UsageReportJson, UsersReportJson } from '../../domain/usage-reports.js';
import { BLOCK_PARAMS, LEASE_PARAMS, LEASES_QUERY, LISTENER_BODY, LOG_QUERY, REVOKE_BODY } from '../../domain/messages.js';
import type { Infer } from '../../domain/schema.js';
import { messageSchema, messageValidator } from './schemas.js';
import type { AdminCredentials, AdminGate } from './admin-gate.js';

/** What the admin routes ask of the server (the app implements it). */
export interface AdminApi extends AdminCredentials {
  leases(filter: { user?: string; host?: string; product?: string }): Promise<readonly LeaseView[]>;
  revoke(leaseId: string, reason: string, actor: string, block?: { seconds: number; scope: 'user' | 'instance' }): Promise<RevokeReply | Denial>;
  /** Blocks in force (floatd admin blocks). */
  blocks(): Promise<readonly BlockView[]>;
  unblock(blockId: string, actor: string): Promise<UnblockReply | Denial>;
  reloadRules(actor: string): Promise<RulesReloadReply>;
  reloadTls(actor: string): Promise<TlsReloadReply | Denial>;
  suspend(listener: string | null, actor: string): Promise<SuspensionReply | Denial>;
  resume(listener: string | null, actor: string): Promise<SuspensionReply | Denial>;
  log(filter: EventFilter): Promise<readonly LeaseEvent[]>;
  /** `floatd report usage` over the lease log (computed off the event loop). */
  usageReport(query: ReportRequest & { by: 'hour' | 'day' | 'week' | 'month'; user?: string }): Promise<UsageReportJson>;
  /** `floatd report users`. */
  usersReport(query: ReportRequest & { top?: number }): Promise<UsersReportJson>;
  /** Readiness, uptime, version, listeners and the server's time, for the dashboard. */
  server(): ServerInfo;
}

/** What a report route asks for: times are epoch milliseconds. */
export interface ReportRequest {
  readonly fromMs: number;
  readonly toMs: number;
  readonly product?: string;
  readonly trueDenialMs: number;
  readonly utc: boolean;
}

export interface AdminRouteDeps {
  readonly admin: AdminApi;
  readonly fail: (code: WireCode, message: string, details?: ErrorDetails) => Error;
  /** Wall-clock time (ms), for report ranges. */
  readonly wallClock: () => number;
}

const leasesQuery = messageSchema(LEASES_QUERY);
const logQuery = messageSchema(LOG_QUERY);
const listenerBody = messageSchema(LISTENER_BODY);
const revokeParams = messageSchema(LEASE_PARAMS);
const revokeBody = messageSchema(REVOKE_BODY);
const blockParams = messageSchema(BLOCK_PARAMS);
const anyReply = { type: 'object', additionalProperties: true } as const;
/** A name in a report route's query (product, user). */
const text = { type: 'string', minLength: 1, maxLength: 256 } as const;
const security = [{ bearer: [] }];

/** What every admin route group shares: the server's port, the caller's actor, how a refusal becomes a reply. */
interface AdminRouteContext {
  readonly deps: AdminRouteDeps;
  readonly actorOf: (request: FastifyRequest) => string;
  /** A success as it is; a `Denial` thrown as the coded error it names. */
  readonly answer: <T extends { ok: boolean }>(outcome: T | Denial) => T;
  readonly validatorCompiler: ReturnType<typeof messageValidator>;
}

/**
 * /v1/admin: every route needs `Authorization: Bearer TOKEN` or a client
 * certificate whose subject is listed in admin.certificateSubjects (or the
 * dashboard's session). Credentials are checked before anything else, the
 * request's body included: wrong or missing ones are 401 with nothing changed,
 * and logged; past the failure limits (AdminGate) wrong ones are 429.
 */
export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps, gate: AdminGate): void {
  const actors = new WeakMap<FastifyRequest, string>();
  const authenticate = async (request: FastifyRequest, reply: { header(name: string, value: string): unknown }) => {
    try {
      actors.set(request, await gate.require(request));
    } catch (err) {
      if ((err as { code?: unknown }).code === 'UNAUTHORIZED') void reply.header('www-authenticate', 'Bearer realm="floatd admin"');
      throw err;
    }
  };
  const ctx: AdminRouteContext = {
    deps,
    actorOf: (request) => actors.get(request)!,
    answer: <T extends { ok: boolean }>(outcome: T | Denial): T => {
      if (!outcome.ok && 'code' in outcome) throw deps.fail(wireCodeOf(outcome.code), outcome.message, outcome.details);
      return outcome as T;
    },
    validatorCompiler: messageValidator((field, message) => deps.fail('BAD_REQUEST', message, { field })),
  };

  void app.register(
    async (admin) => {
      // onRequest: before the body is read or validated, so a caller without credentials learns nothing of it.
      admin.addHook('onRequest', authenticate);
      registerHolderRoutes(admin, ctx);
      registerControlRoutes(admin, ctx);
      registerLogRoute(admin, ctx);
      registerReportRoutes(admin, ctx);
      admin.get('/server', { schema: { summary: 'Readiness, uptime, version and listeners (the dashboard\'s health panel)', tags: ['admin'], security, response: { 200: anyReply } } }, async (): Promise<ServerReply> => ({
        ok: true,
        ...deps.admin.server(),
      }));
    },
    { prefix: '/v1/admin' },
  );
}

/** Who holds what: live leases and revoking one; blocks and lifting one. */
function registerHolderRoutes(admin: FastifyInstance, { deps, actorOf, answer, validatorCompiler }: AdminRouteContext): void {
  admin.get(
    '/leases',
    { schema: { summary: 'Live leases (the lmstat -a view)', tags: ['admin'], security, querystring: leasesQuery, response: { 200: anyReply } }, validatorCompiler },
    async (request): Promise<LeasesReply> => ({ ok: true, leases: await deps.admin.leases(request.query as Infer<typeof LEASES_QUERY>) }),
  );
  admin.post(
    '/leases/:id/revoke',
    {
      schema: {
        summary: 'End a lease at once; its connected holder is told, a later renewal gets LEASE_NOT_FOUND with the reason. With blockSeconds, its user (or instance) is kept out of the product that long',
        tags: ['admin'],
        security,
        params: revokeParams,
        body: revokeBody,
        response: { 200: anyReply },
      },
      validatorCompiler,
    },
    async (request): Promise<RevokeReply> => {
      const body = request.body as Infer<typeof REVOKE_BODY>;
      const block = body.blockSeconds === undefined || body.blockSeconds === null ? undefined : { seconds: body.blockSeconds, scope: body.blockScope ?? 'user' };
      if (block === undefined && body.blockScope !== undefined && body.blockScope !== null) throw deps.fail('BAD_REQUEST', 'field "blockScope" needs blockSeconds', { field: 'blockScope' });
      return answer(await deps.admin.revoke((request.params as { id: string }).id, body.reason, actorOf(request), block));
    },
  );
  admin.get(
    '/blocks',
    { schema: { summary: 'Holders kept out after a revoke, until when, and why', tags: ['admin'], security, response: { 200: anyReply } } },
    async (): Promise<BlocksReply> => ({ ok: true, blocks: await deps.admin.blocks() }),
  );
  admin.post(
    '/blocks/:id/lift',
    { schema: { summary: 'Lift a block before its end (recorded in the lease log)', tags: ['admin'], security, params: blockParams, response: { 200: anyReply } }, validatorCompiler },
    async (request): Promise<UnblockReply> => answer(await deps.admin.unblock((request.params as { id: string }).id, actorOf(request))),
  );
}

/** What the operator changes on the running server: rules and TLS reloads, listener suspension. */
function registerControlRoutes(admin: FastifyInstance, { deps, actorOf, answer, validatorCompiler }: AdminRouteContext): void {
  admin.post('/rules/reload', { schema: { summary: 'Re-read the CLT rules and groups', tags: ['admin'], security, response: { 200: anyReply, 400: anyReply } } }, async (request, reply) => {
    const outcome: RulesReloadReply = await deps.admin.reloadRules(actorOf(request));
    return reply.code(outcome.ok ? 200 : 400).send(outcome);
  });
  admin.post('/tls/reload', { schema: { summary: 'Re-read the TLS certificate and key', tags: ['admin'], security, response: { 200: anyReply, 400: anyReply } } }, async (request, reply) => {
    const outcome = await deps.admin.reloadTls(actorOf(request));
    if ('code' in outcome) answer(outcome);
    return reply.code(outcome.ok ? 200 : 400).send(outcome);
  });
  admin.post('/listeners/suspend', { schema: { summary: 'Refuse new lease connections (one listener, or all); open ones keep renewing', tags: ['admin'], security, body: listenerBody, response: { 200: anyReply } }, validatorCompiler }, async (request): Promise<SuspensionReply> =>
    answer(await deps.admin.suspend((request.body as { listener?: string } | undefined)?.listener ?? null, actorOf(request))),
  );
  admin.post('/listeners/resume', { schema: { summary: 'Take new lease connections again', tags: ['admin'], security, body: listenerBody, response: { 200: anyReply } }, validatorCompiler }, async (request): Promise<SuspensionReply> =>
    answer(await deps.admin.resume((request.body as { listener?: string } | undefined)?.listener ?? null, actorOf(request))),
  );
}

/** The lease log with floatd log's filters. */
function registerLogRoute(admin: FastifyInstance, { deps, validatorCompiler }: AdminRouteContext): void {
  admin.get(
    '/log',
    {
      schema: {
        summary: 'The lease log, with floatd log\'s filters',
        tags: ['admin'],
        security,
        querystring: logQuery,
        response: { 200: anyReply },
      },
      validatorCompiler,
    },
    async (request): Promise<LogReply> => {
      const q = request.query as Infer<typeof LOG_QUERY>;
      const time = (name: 'since' | 'until') => {
        const value = q[name];
        if (value === undefined) return undefined;
        const t = value.trim().toLowerCase() === 'now' ? deps.wallClock() : Date.parse(value);
        if (Number.isNaN(t)) throw deps.fail('BAD_REQUEST', `field "${name}" must be an ISO date/time or now`, { field: name });
        return t;
      };
      const filter: EventFilter = {
        sinceMs: time('since'),
        untilMs: time('until'),
        user: q.user,
        host: q.host,
        instance: q.instance,
        product: q.product,
        pool: q.pool,
        leaseId: q.lease,
        listener: q.listener,
        actor: q.actor,
        events: q.event?.split(','),
        limit: q.limit === undefined ? 1000 : Number(q.limit),
      };
      return { ok: true, events: await deps.admin.log(filter) };
    },
  );
}

const reportFields = {
  from: { type: 'string', description: 'ISO date/time; default: 7 days before "to"' },
  to: { type: 'string', description: 'ISO date/time; default: now' },
  product: text,
  trueDenialMinutes: { type: 'string', pattern: '^[0-9]{1,6}$', description: 'a denial not followed by a grant to the same user and instance within this many minutes is a true denial (default 5)' },
  utc: { type: 'string', enum: ['true', 'false'], description: 'buckets start on UTC hours and midnights rather than the server\'s local ones' },
} as const;

/** A report's own refusal (a range of too many buckets) is the caller's mistake, not the server's. */
async function reported<T>(deps: AdminRouteDeps, pending: Promise<T>): Promise<T> {
  try {
    return await pending;
  } catch (err) {
    if (err instanceof FloatdError && err.code === 'USAGE') throw deps.fail('BAD_REQUEST', err.message);
    throw err;
  }
}

/** A report route's range, product, true-denial time and time zone from its query. */
function reportQuery(deps: AdminRouteDeps, q: Record<string, string | undefined>, dayDefault: number): ReportRequest {
  const now = deps.wallClock();
  const time = (name: 'from' | 'to', fallback: number) => {
    const v = q[name];
    if (v === undefined) return fallback;
    const t = v.trim().toLowerCase() === 'now' ? now : Date.parse(v);
    if (Number.isNaN(t)) throw deps.fail('BAD_REQUEST', `field "${name}" must be an ISO date/time or now`, { field: name });
    return t;
  };
  const toMs = time('to', now);
  const fromMs = time('from', toMs - dayDefault * 86_400_000);
  if (!(toMs > fromMs)) throw deps.fail('BAD_REQUEST', 'field "to" must come after "from"', { field: 'to' });
  if (fromMs > now) throw deps.fail('BAD_REQUEST', 'field "from" is in the future', { field: 'from' });
  const minutes = q['trueDenialMinutes'];
  if (minutes !== undefined && !/^\d{1,6}$/.test(minutes)) throw deps.fail('BAD_REQUEST', 'field "trueDenialMinutes" must be a whole number of minutes', { field: 'trueDenialMinutes' });
  return { fromMs, toMs, product: q['product'], trueDenialMs: Number(minutes ?? 5) * 60_000, utc: q['utc'] === 'true' };
}

/** floatd report usage and floatd report users over the lease log. */
function registerReportRoutes(admin: FastifyInstance, { deps }: AdminRouteContext): void {
  admin.get(
    '/reports/usage',
    {
      schema: {
        summary: 'floatd report usage: per bucket peak and average seats in use, pool size, utilisation, grants, denials, true denials, unique users',
        tags: ['admin'],
        security,
        querystring: { type: 'object', properties: { ...reportFields, by: { type: 'string', enum: ['hour', 'day', 'week', 'month'] }, user: text } },
        response: { 200: anyReply },
      },
    },
    async (request): Promise<UsageReportReply> => {
      const q = request.query as Record<string, string | undefined>;
      const by = (q['by'] ?? 'day') as 'hour' | 'day' | 'week' | 'month';
      return { ok: true, report: await reported(deps, deps.admin.usageReport({ ...reportQuery(deps, q, 7), by, user: q['user'] })) };
    },
  );
  admin.get(
    '/reports/users',
    {
      schema: {
        summary: 'floatd report users: usage hours, peak concurrent leases and denials per user, most usage first',
        tags: ['admin'],
        security,
        querystring: { type: 'object', properties: { ...reportFields, top: { type: 'string', pattern: '^[1-9][0-9]{0,5}$' } } },
        response: { 200: anyReply },
      },
    },
    async (request): Promise<UsersReportReply> => {
      const q = request.query as Record<string, string | undefined>;
      return { ok: true, report: await reported(deps, deps.admin.usersReport({ ...reportQuery(deps, q, 7), top: q['top'] === undefined ? undefined : Number(q['top']) })) };
    },
  );
}
