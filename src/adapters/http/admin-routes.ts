import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Denial, ErrorCode, ErrorDetails } from '../../domain/errors.js';
import type { EventFilter } from '../../domain/events.js';
import { LEASE_PARAMS, LEASES_QUERY, LISTENER_BODY, LOG_QUERY, REVOKE_BODY } from '../../domain/messages.js';
import type { Infer } from '../../domain/schema.js';
import { messageSchema, messageValidator } from './schemas.js';

/** What the admin routes ask of the server (the app implements it). */
export interface AdminApi {
  /** The actor these credentials stand for (`token:NAME`, `cert:SUBJECT`), or null. */
  authenticate(bearer: string | null, certificateSubject: string | null): string | null;
  leases(filter: { user?: string; host?: string; product?: string }): object[];
  revoke(leaseId: string, reason: string, actor: string): Promise<({ ok: true } & object) | Denial>;
  reloadRules(actor: string): { ok: boolean } & object;
  reloadTls(actor: string): { ok: boolean; message: string };
  suspend(listener: string | null, actor: string): ({ ok: true; suspended: string[] }) | Denial;
  resume(listener: string | null, actor: string): ({ ok: true; suspended: string[] }) | Denial;
  log(filter: EventFilter): object[];
}

export interface AdminRouteDeps {
  readonly admin: AdminApi;
  /** The caller as the endpoint saw it: address and verified client-certificate subject. */
  readonly who: (request: FastifyRequest) => { remote: string; certificateSubject: string | null };
  /** A refused admin request, for the server log (rate-limited there). */
  readonly refused: (remote: string, why: string) => void;
  readonly fail: (code: ErrorCode, message: string, details?: ErrorDetails) => Error;
  readonly now: () => number;
}

const FAILURES_ALLOWED = 10;
const FAILURE_WINDOW_MS = 60_000;

const leasesQuery = messageSchema(LEASES_QUERY);
const logQuery = messageSchema(LOG_QUERY);
const listenerBody = messageSchema(LISTENER_BODY);
const revokeParams = messageSchema(LEASE_PARAMS);
const revokeBody = messageSchema(REVOKE_BODY);
const anyReply = { type: 'object', additionalProperties: true } as const;
const security = [{ bearer: [] }];

/**
 * /v1/admin: every route needs `Authorization: Bearer TOKEN` or a client
 * certificate whose subject is listed in admin.certificateSubjects. Wrong or
 * missing credentials are 401 with nothing changed, and logged; an address
 * with too many failures in a minute is answered 429 without looking.
 */
export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const failures = new Map<string, { count: number; since: number }>();
  const actors = new WeakMap<FastifyRequest, string>();
  const actorOf = (request: FastifyRequest) => actors.get(request)!;
  const validatorCompiler = messageValidator((field, message) => deps.fail('BAD_REQUEST', message, { field }));

  const authenticate = async (request: FastifyRequest, reply: FastifyReply) => {
    const { remote, certificateSubject } = deps.who(request);
    const now = deps.now();
    const record = failures.get(remote);
    if (record !== undefined && now - record.since > FAILURE_WINDOW_MS) failures.delete(remote);
    const current = failures.get(remote);
    if (current !== undefined && current.count >= FAILURES_ALLOWED) {
      const retryAfterMs = current.since + FAILURE_WINDOW_MS - now;
      throw deps.fail('TOO_MANY_REQUESTS', `too many failed admin authentications from ${remote}; try again later`, { retryAfterMs });
    }
    const header = request.headers.authorization;
    const bearer = typeof header === 'string' && /^Bearer\s+/i.test(header) ? header.replace(/^Bearer\s+/i, '') : null;
    const actor = deps.admin.authenticate(bearer, certificateSubject);
    if (actor === null) {
      const entry = failures.get(remote) ?? { count: 0, since: now };
      entry.count++;
      failures.set(remote, entry);
      if (failures.size > 10_000) failures.delete(failures.keys().next().value!);
      deps.refused(remote, header === undefined && certificateSubject === null ? 'no credentials' : 'wrong credentials');
      void reply.header('www-authenticate', 'Bearer realm="floatd admin"');
      throw deps.fail('UNAUTHORIZED', 'the admin API needs "Authorization: Bearer TOKEN" (see floatd admin token) or an admin client certificate');
    }
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
            summary: 'End a lease at once; its connected holder is told, a later renewal gets LEASE_NOT_FOUND with the reason',
            tags: ['admin'],
            security,
            params: revokeParams,
            body: revokeBody,
            response: { 200: anyReply },
          },
          validatorCompiler,
        },
        async (request) => answer(await deps.admin.revoke((request.params as { id: string }).id, (request.body as { reason: string }).reason, actorOf(request))),
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
            product: q.product,
            pool: q.pool,
            events: q.event?.split(','),
            limit: q.limit === undefined ? 1000 : Number(q.limit),
          };
          return { ok: true, events: deps.admin.log(filter) };
        },
      );
    },
    { prefix: '/v1/admin' },
  );
}
