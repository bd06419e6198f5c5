import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FloatdError, type Denial, type ErrorCode, type ErrorDetails } from '../../domain/errors.js';
import type { EventFilter } from '../../domain/events.js';
import { BLOCK_PARAMS, LEASE_PARAMS, LEASES_QUERY, LISTENER_BODY, LOG_QUERY, REVOKE_BODY } from '../../domain/messages.js';
import type { Infer } from '../../domain/schema.js';
import { messageSchema, messageValidator } from './schemas.js';

/** What the admin routes ask of the server (the app implements it). */
export interface AdminApi {
  /** The actor these credentials stand for (`token:NAME`, `cert:SUBJECT`), or null. */
  authenticate(bearer: string | null, certificateSubject: string | null): string | null;
  leases(filter: { user?: string; host?: string; product?: string }): object[];
  revoke(leaseId: string, reason: string, actor: string, block?: { seconds: number; scope: 'user' | 'instance' }): Promise<({ ok: true } & object) | Denial>;
  /** Blocks in force (floatd admin blocks). */
  blocks(): object[];
  unblock(blockId: string, actor: string): Promise<({ ok: true } & object) | Denial>;
  reloadRules(actor: string): { ok: boolean } & object;
  reloadTls(actor: string): { ok: boolean; message: string };
  suspend(listener: string | null, actor: string): ({ ok: true; suspended: string[] }) | Denial;
  resume(listener: string | null, actor: string): ({ ok: true; suspended: string[] }) | Denial;
  log(filter: EventFilter): object[];
  /** `floatd report usage` over the lease log (computed off the event loop). */
  usageReport(query: ReportRequest & { by: 'hour' | 'day' | 'week' | 'month'; user?: string }): Promise<object>;
  /** `floatd report users`. */
  usersReport(query: ReportRequest & { top?: number }): Promise<object>;
  /** Readiness, uptime, version, listeners and the server's time, for the dashboard. */
  /** Readiness, uptime, version and listeners, for the dashboard. */
  server(): object;
}

/** What a report route asks for: times are epoch milliseconds. */
export interface ReportRequest {
  readonly fromMs: number;
  readonly toMs: number;
  readonly product?: string;
  readonly trueDenialMs: number;
  readonly utc: boolean;
}

/** The dashboard's session cookie: the admin token itself, HttpOnly and SameSite=Strict, checked against the token store on every request. */
export const SESSION_COOKIE = 'floatd_admin';
/** The header the dashboard sends on every request that changes something (a cross-site form cannot). */
export const DASHBOARD_HEADER = 'x-floatd-dashboard';

/** A cookie's value from the request, or null. */
export function cookieOf(request: FastifyRequest, name: string): string | null {
  const header = request.headers.cookie;
  if (typeof header !== 'string') return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      return null;
    }
  }
  return null;
}

export interface AdminRouteDeps {
  readonly admin: AdminApi;
  /** The caller as the endpoint saw it: address and verified client-certificate subject. */
  readonly who: (request: FastifyRequest) => { remote: string; certificateSubject: string | null };
  /** A refused admin request, for the server log (rate-limited there). */
  readonly refused: (remote: string, why: string) => void;
  readonly fail: (code: ErrorCode, message: string, details?: ErrorDetails) => Error;
  readonly now: () => number;
  /** Wall-clock time (ms), for report ranges. */
  readonly wallClock: () => number;
  /** Whether the request came over HTTPS (for the session cookie's Secure flag and the same-origin check). */
  readonly secure: (request: FastifyRequest) => boolean;
}

/**
 * Who may use the admin API and the dashboard: a bearer token, an admin client
 * certificate, or the dashboard's session cookie. Failures are counted per
 * address; too many in a minute and the address is answered 429 without looking.
 */
export class AdminGate {
  private readonly failures = new Map<string, { count: number; since: number }>();

  constructor(private readonly deps: AdminRouteDeps) {}

  /** Refuses (429) an address with too many recent failures. */
  throttle(remote: string): void {
    const now = this.deps.now();
    const record = this.failures.get(remote);
    if (record !== undefined && now - record.since > FAILURE_WINDOW_MS) this.failures.delete(remote);
    const current = this.failures.get(remote);
    if (current !== undefined && current.count >= FAILURES_ALLOWED) {
      const retryAfterMs = current.since + FAILURE_WINDOW_MS - now;
      throw this.deps.fail('TOO_MANY_REQUESTS', `too many failed admin authentications from ${remote}; try again later`, { retryAfterMs });
    }
  }

  failed(remote: string, why: string): void {
    const entry = this.failures.get(remote) ?? { count: 0, since: this.deps.now() };
    entry.count++;
    this.failures.set(remote, entry);
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
    this.deps.refused(remote, why);
  }

  /**
   * The actor of a request's credentials: the Authorization header, else an
   * admin client certificate, else the session cookie; null without any
   * (`how` says which was tried).
   */
  actorOf(request: FastifyRequest): { actor: string | null; how: 'bearer' | 'certificate' | 'cookie' | 'none' } {
    const { certificateSubject } = this.deps.who(request);
    const header = request.headers.authorization;
    if (typeof header === 'string') {
      const bearer = /^Bearer\s+/i.test(header) ? header.replace(/^Bearer\s+/i, '') : null;
      return { actor: this.deps.admin.authenticate(bearer, certificateSubject), how: 'bearer' };
    }
    if (certificateSubject !== null) {
      const actor = this.deps.admin.authenticate(null, certificateSubject);
      if (actor !== null) return { actor, how: 'certificate' };
    }
    const cookie = cookieOf(request, SESSION_COOKIE);
    if (cookie !== null && cookie !== '') return { actor: this.deps.admin.authenticate(cookie, null), how: 'cookie' };
    return { actor: null, how: 'none' };
  }

  /** The actor an admin token stands for, or null (the dashboard's login form). */
  authenticateToken(token: string): string | null {
    return this.deps.admin.authenticate(token, null);
  }

  /** A request carried by the session cookie that changes something must come from the dashboard itself. */
  checkSameOrigin(request: FastifyRequest): void {
    if (request.method === 'GET' || request.method === 'HEAD') return;
    if (request.headers[DASHBOARD_HEADER] !== '1') {
      throw this.deps.fail('FORBIDDEN', `a request signed in by the dashboard's cookie that changes something needs the header "${DASHBOARD_HEADER}: 1" (cross-site requests are refused)`);
    }
    const origin = request.headers.origin;
    if (origin !== undefined && origin !== `${this.deps.secure(request) ? 'https' : 'http'}://${request.headers.host ?? ''}`) {
      throw this.deps.fail('FORBIDDEN', `a request from ${origin} may not use the dashboard's cookie`);
    }
  }
}

const FAILURES_ALLOWED = 10;
const FAILURE_WINDOW_MS = 60_000;

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

/**
 * /v1/admin: every route needs `Authorization: Bearer TOKEN` or a client
 * certificate whose subject is listed in admin.certificateSubjects. Wrong or
 * missing credentials are 401 with nothing changed, and logged; an address
 * with too many failures in a minute is answered 429 without looking.
 */
export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps, gate: AdminGate): void {
  const actors = new WeakMap<FastifyRequest, string>();
  const actorOf = (request: FastifyRequest) => actors.get(request)!;
  const validatorCompiler = messageValidator((field, message) => deps.fail('BAD_REQUEST', message, { field }));

  const authenticate = async (request: FastifyRequest, reply: FastifyReply) => {
    const { remote, certificateSubject } = deps.who(request);
    gate.throttle(remote);
    const { actor, how } = gate.actorOf(request);
    if (actor === null) {
      gate.failed(remote, how === 'none' && certificateSubject === null ? 'no credentials' : 'wrong credentials');
      void reply.header('www-authenticate', 'Bearer realm="floatd admin"');
      throw deps.fail('UNAUTHORIZED', 'the admin API needs "Authorization: Bearer TOKEN" (see floatd admin token) or an admin client certificate');
    }
    if (how === 'cookie') gate.checkSameOrigin(request);
    actors.set(request, actor);
  };

  const answer = <T extends { ok: boolean }>(outcome: T | Denial): T => {
    if (!outcome.ok && 'code' in outcome) throw deps.fail(outcome.code, outcome.message, outcome.details);
    return outcome as T;
  };

  void app.register(
    async (admin) => {
      admin.addHook('preHandler', authenticate);
      admin.get(
        '/leases',
        { schema: { summary: 'Live leases (the lmstat -a view)', tags: ['admin'], security, querystring: leasesQuery, response: { 200: anyReply } }, validatorCompiler },
        async (request) => ({ ok: true, leases: deps.admin.leases(request.query as Infer<typeof LEASES_QUERY>) }),
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
        async (request) => {
          const body = request.body as Infer<typeof REVOKE_BODY>;
          const block = body.blockSeconds === undefined || body.blockSeconds === null ? undefined : { seconds: body.blockSeconds, scope: body.blockScope ?? 'user' };
          if (block === undefined && body.blockScope !== undefined && body.blockScope !== null) throw deps.fail('BAD_REQUEST', 'field "blockScope" needs blockSeconds', { field: 'blockScope' });
          return answer(await deps.admin.revoke((request.params as { id: string }).id, body.reason, actorOf(request), block));
        },
      );
      admin.get(
        '/blocks',
        { schema: { summary: 'Holders kept out after a revoke, until when, and why', tags: ['admin'], security, response: { 200: anyReply } } },
        async () => ({ ok: true, blocks: deps.admin.blocks() }),
      );
      admin.post(
        '/blocks/:id/lift',
        { schema: { summary: 'Lift a block before its end (recorded in the lease log)', tags: ['admin'], security, params: blockParams, response: { 200: anyReply } }, validatorCompiler },
        async (request) => answer(await deps.admin.unblock((request.params as { id: string }).id, actorOf(request))),
      );
      admin.post('/rules/reload', { schema: { summary: 'Re-read the CLT rules and groups', tags: ['admin'], security, response: { 200: anyReply, 400: anyReply } } }, async (request, reply) => {
        const outcome = deps.admin.reloadRules(actorOf(request));
        return reply.code(outcome.ok ? 200 : 400).send(outcome);
      });
      admin.post('/tls/reload', { schema: { summary: 'Re-read the TLS certificate and key', tags: ['admin'], security, response: { 200: anyReply, 400: anyReply } } }, async (request, reply) => {
        const outcome = deps.admin.reloadTls(actorOf(request));
        return reply.code(outcome.ok ? 200 : 400).send(outcome);
      });
      admin.post('/listeners/suspend', { schema: { summary: 'Refuse new lease connections (one listener, or all); open ones keep renewing', tags: ['admin'], security, body: listenerBody, response: { 200: anyReply } }, validatorCompiler }, async (request) =>
        answer(deps.admin.suspend((request.body as { listener?: string } | undefined)?.listener ?? null, actorOf(request))),
      );
      admin.post('/listeners/resume', { schema: { summary: 'Take new lease connections again', tags: ['admin'], security, body: listenerBody, response: { 200: anyReply } }, validatorCompiler }, async (request) =>
        answer(deps.admin.resume((request.body as { listener?: string } | undefined)?.listener ?? null, actorOf(request))),
      );
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
        async (request) => {
          const q = request.query as Infer<typeof LOG_QUERY>;
          const time = (name: 'since' | 'until') => {
            const value = q[name];
            if (value === undefined) return undefined;
            const t = Date.parse(value);
            if (Number.isNaN(t)) throw deps.fail('BAD_REQUEST', `field "${name}" must be an ISO date/time`, { field: name });
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
          return { ok: true, events: deps.admin.log(filter) };
        },
      );
      /** A report's own refusal (a range of too many buckets) is the caller's mistake, not the server's. */
      const reported = async (pending: Promise<object>) => {
        try {
          return await pending;
        } catch (err) {
          if (err instanceof FloatdError && err.code === 'USAGE') throw deps.fail('BAD_REQUEST', err.message);
          throw err;
        }
      };
      const reportQuery = (q: Record<string, string | undefined>, dayDefault: number) => {
        const now = deps.wallClock();
        const time = (name: 'from' | 'to', fallback: number) => {
          const v = q[name];
          if (v === undefined) return fallback;
          const t = Date.parse(v);
          if (Number.isNaN(t)) throw deps.fail('BAD_REQUEST', `field "${name}" must be an ISO date/time`, { field: name });
          return t;
        };
        const toMs = time('to', now);
        const fromMs = time('from', toMs - dayDefault * 86_400_000);
        if (!(toMs > fromMs)) throw deps.fail('BAD_REQUEST', 'field "to" must come after "from"', { field: 'to' });
        if (fromMs > now) throw deps.fail('BAD_REQUEST', 'field "from" is in the future', { field: 'from' });
        const minutes = q['trueDenialMinutes'];
        if (minutes !== undefined && !/^\d{1,6}$/.test(minutes)) throw deps.fail('BAD_REQUEST', 'field "trueDenialMinutes" must be a whole number of minutes', { field: 'trueDenialMinutes' });
        return { fromMs, toMs, product: q['product'], trueDenialMs: Number(minutes ?? 5) * 60_000, utc: q['utc'] === 'true' };
      };
      const reportFields = {
        from: { type: 'string', description: 'ISO date/time; default: 7 days before "to"' },
        to: { type: 'string', description: 'ISO date/time; default: now' },
        product: text,
        trueDenialMinutes: { type: 'string', pattern: '^[0-9]{1,6}$', description: 'a denial not followed by a grant to the same user and instance within this many minutes is a true denial (default 5)' },
        utc: { type: 'string', enum: ['true', 'false'], description: 'buckets start on UTC hours and midnights rather than the server\'s local ones' },
      } as const;
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
        async (request) => {
          const q = request.query as Record<string, string | undefined>;
          const by = (q['by'] ?? 'day') as 'hour' | 'day' | 'week' | 'month';
          return { ok: true, report: await reported(deps.admin.usageReport({ ...reportQuery(q, 7), by, user: q['user'] })) };
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
        async (request) => {
          const q = request.query as Record<string, string | undefined>;
          return { ok: true, report: await reported(deps.admin.usersReport({ ...reportQuery(q, 7), top: q['top'] === undefined ? undefined : Number(q['top']) })) };
        },
      );
      admin.get('/server', { schema: { summary: 'Readiness, uptime, version and listeners (the dashboard\'s health panel)', tags: ['admin'], security, response: { 200: anyReply } } }, async () => ({
        ok: true,
        ...deps.admin.server(),
      }));
    },
    { prefix: '/v1/admin' },
  );
}
