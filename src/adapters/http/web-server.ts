import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { isFloatdError, isWireCode, wireCodeOf, type ErrorDetails, type WireCode } from '../../domain/errors.js';
import { clientAddress, identifyCaller, type ClientClaim } from '../../domain/door-rules.js';
import type { Caller, LeaseApi, Outcome } from '../../domain/lease-api.js';
import type { LeaseProof } from '../../domain/lease.js';
import { closeServer, listenOn, type ListenOn } from '../net/listen.js';
import { proxiedAddress, requireProxyProtocol, type ProxyIntake, type ProxyProtocolSettings, type ProxyRefusal } from '../net/proxy-protocol.js';
import { peerCertificate, type PeerCertificate, type TlsContext } from '../tls/tls-context.js';
import { HTTP_STATUS } from './http-status.js';
import { registerAdminRoutes, type AdminApi } from './admin-routes.js';
import { AdminGate, foreignOrigin } from './admin-gate.js';
import { registerDashboard } from './dashboard-routes.js';
import { Suspension } from '../net/suspension.js';
import type { ConnectionBudget } from '../net/connection-budget.js';
import { messageValidator, routeSchemas } from './schemas.js';
import { parseJson } from '../../domain/schema.js';

type RouteSchemas = ReturnType<typeof routeSchemas>;

export interface WebListener extends ListenOn {
  readonly tls: boolean;
  /** Every connection starts with a PROXY header from a trusted proxy (before TLS and HTTP). */
  readonly proxyProtocol?: ProxyProtocolSettings;
}

export interface WebServerOptions {
  readonly listeners: readonly WebListener[];
  readonly tls: TlsContext | null;
  readonly backlog: number;
  /** The largest request body accepted. */
  readonly bodyLimitBytes: number;
  /** Time allowed for a request's headers and body to arrive (slow clients are cut off, checked a tenth as often, at least every second). */
  readonly requestTimeoutMs: number;
  /** The connection budget shared with the NDJSON listeners: each web connection (from accept, handshakes included) takes a slot. */
  readonly budget?: ConnectionBudget;
  /** How long an idle keep-alive connection stays open between requests. */
  readonly keepAliveTimeoutMs: number;
  /** Time allowed for a TLS handshake. */
  readonly handshakeTimeoutMs: number;
  /** The user is the verified client certificate's common name (HTTPS). */
  readonly identityFromCertificate: boolean;
  readonly version: string;
  /** `admin`: /metrics needs admin credentials. */
  readonly metricsAuth: 'none' | 'admin';
}

export interface WebServerDeps {
  readonly api: LeaseApi;
  /** Whether the server can serve leases now (database open, lease listeners accepting). */
  readonly ready: () => { readonly ready: boolean; readonly reason: string };
  readonly requestFailed: (err: unknown, context: Record<string, unknown>) => void;
  /** The Prometheus text of GET /metrics. */
  readonly metrics: () => Promise<{ readonly contentType: string; readonly body: string }>;
  /** Told of each answered request: its route, the transport and how long it took (seconds). */
  readonly answered?: (route: string, transport: 'http' | 'https', seconds: number) => void;
  /** A monotonic clock (ms) for those durations. */
  readonly monotonic: () => number;
  /** A connection on a PROXY-protocol listener was closed for want of a valid header from a trusted proxy. */
  readonly proxyRefused?: (refusal: ProxyRefusal) => void;
  /** The admin API under /v1/admin (absent: no admin routes). */
  readonly admin?: AdminApi;
  /** A refused admin request (wrong or missing credentials), for the server log. */
  readonly adminRefused?: (remote: string, why: string) => void;
  /** Wrong admin credentials from all callers together passed the global cap, for the server log. */
  readonly adminFailuresCapped?: (retryAfterMs: number) => void;
  /** The wall clock (ms), for report ranges. */
  readonly wallClock: () => number;
  /** A connection was refused because the connection budget is spent and no web connection was idle. */
  readonly connectionRefused?: (remote: string) => void;
  /** The process is out of file descriptors (accept failed). */
  readonly descriptorsExhausted?: (code: string) => void;
  /** The dashboard's files (default: the package's web/ folder). */
  readonly dashboardDir?: string;
}

export interface BoundWebListener {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly tls: boolean;
}

interface SocketInfo {
  readonly listener: string;
  readonly tls: boolean;
  readonly peer: PeerCertificate | null;
}

class HttpError extends Error {
  constructor(
    readonly code: WireCode,
    message: string,
    readonly details: ErrorDetails = {},
  ) {
    super(message);
  }
}

/** `instancePath` and params of an Ajv error as the field name people wrote. */
/** An HTTP request is never on the connection a lease was granted on: it proves itself with the lease's secret alone. */
function secretOf(body: { leaseSecret?: string | null }): LeaseProof {
  return typeof body.leaseSecret === 'string' ? { secret: body.leaseSecret } : {};
}

function fieldOf(v: { instancePath: string; params?: Record<string, unknown> }, context: string | undefined): string {
  const path = v.instancePath.split('/').filter((p) => p !== '');
  const missing = v.params?.['missingProperty'];
  if (typeof missing === 'string') path.push(missing);
  const extra = v.params?.['additionalProperty'];
  if (typeof extra === 'string') path.push(extra);
  return path.length > 0 ? path.join('.') : (context ?? 'body');
}

/**
 * The web endpoint (HTTP-API.md): one fastify app served on every plain-HTTP
 * and HTTPS listener, the lease routes over the transport-neutral LeaseApi,
 * status, health and the OpenAPI document made from the route schemas.
 */
export class WebServer {
  private readonly servers: Array<{ server: HttpServer; listener: WebListener }> = [];
  private readonly sockets = new WeakMap<Socket, SocketInfo>();
  /** Open web connections as HTTP sees them (the TLS socket on HTTPS), oldest first, and their requests in progress. */
  private readonly open = new Set<Socket>();
  private readonly inProgress = new WeakMap<Socket, number>();
  private readonly proxyIntakes: ProxyIntake[] = [];
  private readonly app: FastifyInstance;
  private bound: BoundWebListener[] = [];
  private readonly gate: AdminGate | null;
  /** Listeners that grant no new leases (maintenance); renewals and releases go on. */
  readonly suspension: Suspension;
  private readonly routeList: Array<{ method: string; url: string }> = [];
  private stopping = false;

  constructor(
    private readonly options: WebServerOptions,
    private readonly deps: WebServerDeps,
  ) {
    this.suspension = new Suspension(options.listeners.map((l) => l.name));
    this.gate = deps.admin === undefined ? null : this.makeGate(deps.admin);
    this.app = Fastify({
      logger: false,
      bodyLimit: options.bodyLimitBytes,
      return503OnClosing: true,
      exposeHeadRoutes: false,
      // A number where a name belongs is a mistake to report, not to coerce (TCP does not coerce either).
      ajv: { customOptions: { coerceTypes: false, allErrors: false } },
      serverFactory: (handler) => this.createServers(handler),
    });
  }

  private createServers(handler: (req: IncomingMessage, res: ServerResponse) => void): HttpServer {
    this.options.budget?.reclaimWith(() => this.closeIdleConnection());
    // Node checks request and header timeouts every connectionsCheckingInterval (30 s by default): check
    // a tenth as often as the timeout, at least every second, so a slow request is cut when the timeout says.
    const checking = { connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(this.options.requestTimeoutMs / 10))) };
    for (const l of this.options.listeners) {
      let server: HttpServer;
      if (l.tls) {
        const context = this.options.tls;
        if (!context) throw new Error(`HTTPS listener "${l.name}" has no certificate`);
        server = createHttpsServer({ ...context.serverOptions(this.options.handshakeTimeoutMs), ...checking }, handler) as unknown as HttpServer;
        context.register(server as unknown as { setSecureContext(): void });
        server.on('connection', (raw: Socket) => this.admit(raw));
        server.on('secureConnection', (socket: TLSSocket) => {
          const peer = peerCertificate(socket);
          if (peer === 'unverified') socket.destroy();
          else {
            this.sockets.set(socket, { listener: l.name, tls: true, peer });
            this.opened(socket);
          }
        });
        server.on('tlsClientError', () => {
          // A refused handshake: nothing to answer.
        });
      } else {
        server = createHttpServer(checking, handler);
        server.on('connection', (socket: Socket) => {
          this.sockets.set(socket, { listener: l.name, tls: false, peer: null });
          if (this.admit(socket)) this.opened(socket);
        });
      }
      server.on('request', (request: IncomingMessage, response: ServerResponse) => {
        const socket = request.socket;
        this.inProgress.set(socket, (this.inProgress.get(socket) ?? 0) + 1);
        response.once('close', () => this.inProgress.set(socket, Math.max(0, (this.inProgress.get(socket) ?? 1) - 1)));
      });
      server.on('error', (err: NodeJS.ErrnoException) => {
        // Accept failing for want of descriptors.
        if (err.code === 'EMFILE' || err.code === 'ENFILE') this.deps.descriptorsExhausted?.(err.code);
      });
      server.headersTimeout = this.options.requestTimeoutMs;
      server.requestTimeout = this.options.requestTimeoutMs;
      server.keepAliveTimeout = this.options.keepAliveTimeoutMs;
      server.maxHeadersCount = 100;
      if (l.proxyProtocol) {
        this.proxyIntakes.push(
          requireProxyProtocol(server, {
            ...l.proxyProtocol,
            listener: l.name,
            timeoutMs: this.options.handshakeTimeoutMs,
            refused: (refusal) => this.deps.proxyRefused?.(refusal),
          }),
        );
      }
      this.servers.push({ server, listener: l });
    }
    // fastify wants one server back; ours are listened on by start().
    return this.servers[0]?.server ?? createHttpServer(handler);
  }

  /** Takes a budget slot for a new connection (given back when it closes), or refuses it: false. */
  private admit(raw: Socket): boolean {
    const budget = this.options.budget;
    if (budget === undefined) return true;
    if (!budget.tryAcquire()) {
      raw.on('error', () => {});
      this.deps.connectionRefused?.(this.remoteOf(raw));
      // Closed unanswered: an HTTP answer would need the request read first, holding the descriptor longer.
      raw.destroy();
      return false;
    }
    raw.once('close', () => budget.release());
    return true;
  }

  private opened(socket: Socket): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
  }

  /** Closes the oldest web connection with no request in progress (a keep-alive connection between requests); 1 if there was one, else 0. */
  private closeIdleConnection(): number {
    for (const socket of this.open) {
      if (socket.destroyed) {
        this.open.delete(socket);
        continue;
      }
      if ((this.inProgress.get(socket) ?? 0) > 0) continue;
      this.open.delete(socket);
      socket.destroy();
      return 1;
    }
    return 0;
  }

  async start(): Promise<BoundWebListener[]> {
    await this.app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: { title: 'floatd web endpoint', version: this.options.version, description: 'Lease operations over HTTP(S), status, health, metrics and the admin API. See docs/http-api.md. Every JSON body besides: no key named __proto__, constructor or prototype at any depth, at most 8 levels of nesting, no number too large to represent; a refused body is 400 BAD_REQUEST with the field named.' },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an admin token (floatd admin token create)' } } },
      },
    });
    const started = new WeakMap<object, number>();
    this.app.addHook('onRequest', async (request) => {
      started.set(request, this.deps.monotonic());
    });
    this.app.addHook('onResponse', async (request) => {
      const t0 = started.get(request);
      if (t0 === undefined || this.deps.answered === undefined) return;
      const info = this.sockets.get(request.socket);
      // The route pattern, never the URL itself: lease ids must not become labels.
      this.deps.answered(`${request.method} ${request.routeOptions.url ?? 'unknown'}`, info?.tls ? 'https' : 'http', (this.deps.monotonic() - t0) / 1000);
    });
    this.app.addHook('onRoute', (route) => {
      for (const method of [route.method].flat()) this.routeList.push({ method, url: route.url });
    });
    this.addRoutes();
    await this.app.ready();
    try {
      for (const { server, listener } of this.servers) {
        await listenOn(server, listener, this.options.backlog);
        const a = server.address() as AddressInfo;
        this.bound.push({ name: listener.name, address: a.address, port: a.port, tls: listener.tls });
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    return this.bound;
  }

  /** Stops accepting, lets requests in progress finish (up to `graceMs`), then closes every connection. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const closing = Promise.all(this.servers.map(({ server }) => closeServer(server)));
    // Connections still sending a PROXY header are not the HTTP server's yet: it would wait for them.
    for (const intake of this.proxyIntakes) intake.close();
    for (const { server } of this.servers) {
      server.closeIdleConnections();
      this.options.tls?.unregister(server as unknown as { setSecureContext(): void });
    }
    const deadline = setTimeout(() => {
      for (const { server } of this.servers) server.closeAllConnections();
    }, graceMs);
    deadline.unref();
    await closing;
    clearTimeout(deadline);
    await this.app.close();
  }

  /** Every route served (for the check that the OpenAPI document lists them all). */
  routes(): ReadonlyArray<{ method: string; url: string }> {
    return this.routeList;
  }

  private secure(request: FastifyRequest): boolean {
    return this.sockets.get(request.socket)?.tls ?? false;
  }

  /** Who may use the admin API, the dashboard, full status and (metrics.auth "admin") /metrics. */
  private makeGate(admin: AdminApi): AdminGate {
    return new AdminGate({
      admin,
      who: (request) => {
        return { remote: clientAddress(this.remoteOf(request.socket)), certificateSubject: this.sockets.get(request.socket)?.peer?.subject ?? null };
      },
      refused: (remote, why) => this.deps.adminRefused?.(remote, why),
      globalCapHit: (retryAfterMs) => this.deps.adminFailuresCapped?.(retryAfterMs),
      fail: (code, message, details) => new HttpError(code, message, details),
      now: () => this.deps.monotonic(),
      secure: (request) => this.secure(request),
    });
  }

  /**
   * The admin actor of a request where admin credentials are optional: null
   * without any (or with a session cookie that is no longer valid, or a
   * client certificate that is not an admin's); 401/429 for a wrong bearer token.
   */
  private async adminOrNull(request: FastifyRequest, reply: FastifyReply): Promise<string | null> {
    if (this.gate === null) return null;
    const who = await this.gate.identify(request);
    if (who.actor !== null || who.how !== 'bearer') return who.actor;
    void reply.header('www-authenticate', 'Bearer realm="floatd admin"');
    this.gate.refuse(request, who.presented, 'wrong credentials');
    throw new HttpError('UNAUTHORIZED', 'wrong admin credentials: "Authorization: Bearer TOKEN" needs an admin token (see floatd admin token); without the header, status shows seats and health only');
  }

  /** The client's address: the one its PROXY header named on a PROXY-protocol listener, else the peer's. */
  private remoteOf(socket: Socket): string {
    return proxiedAddress(socket) ?? socket.remoteAddress ?? 'unknown';
  }

  private caller(request: FastifyRequest, client: ClientClaim): Caller {
    const info = this.sockets.get(request.socket) ?? { listener: 'http', tls: false, peer: null };
    const conn = { listener: info.listener, remote: clientAddress(this.remoteOf(request.socket)), tls: info.tls, certifiedUser: info.peer?.commonName ?? null };
    const who = identifyCaller(client, conn, this.options.identityFromCertificate);
    if (!who.ok) throw new HttpError(who.code, who.message, who.details);
    return who.caller;
  }

  private async answer<T extends object>(reply: FastifyReply, pending: Promise<Outcome<T>>, status: (r: T) => number): Promise<unknown> {
    const outcome = await pending;
    if (!outcome.ok) throw new HttpError(outcome.code, outcome.message, outcome.details as ErrorDetails);
    return reply.code(status(outcome)).send(outcome);
  }

  private addRoutes(): void {
    const app = this.app;
    const schemas = routeSchemas(this.options.identityFromCertificate);
    const validatorCompiler = messageValidator((field, message) => new HttpError('BAD_REQUEST', message, { field }));
    this.readJsonAsNdjson();
    app.setErrorHandler((error: FastifyError | HttpError, request, reply) => this.replyError(error, request, reply));

    // A browser names the page a request comes from: no other origin (nor an opaque one) may change anything here.
    // The dashboard's sign-in and sign-out forms answer such a request with their own page.
    app.addHook('onRequest', async (request) => {
      if (request.url === '/login' || request.url === '/logout') return;
      const foreign = foreignOrigin(request, this.secure(request));
      if (foreign !== null) throw new HttpError('FORBIDDEN', foreign);
    });

    app.setNotFoundHandler((request, reply) =>
      reply.code(HTTP_STATUS.UNKNOWN_OP).send({ ok: false, error: { code: 'UNKNOWN_OP', message: `no route ${request.method} ${request.url.split('?')[0]} (see /openapi.json)` } }),
    );

    this.addLeaseRoutes(schemas, validatorCompiler);
    this.addServerRoutes(schemas);
    if (this.gate !== null) {
      registerAdminRoutes(app, { admin: this.deps.admin!, fail: (code, message, details) => new HttpError(code, message, details), wallClock: () => this.deps.wallClock() }, this.gate);
      registerDashboard(app, { gate: this.gate, secure: (request) => this.secure(request), assetsDir: this.deps.dashboardDir });
    }
  }

  /**
   * JSON bodies are read as the NDJSON door reads a line: reserved keys, deep nesting and numbers
   * too large to represent are refused naming the field, before any schema.
   */
  private readJsonAsNdjson(): void {
    const app = this.app;
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
      const textBody = body as string;
      if (textBody.trim() === '') {
        done(null, undefined);
        return;
      }
      const parsed = parseJson(textBody);
      if (parsed.ok) done(null, parsed.value);
      else done(new HttpError('BAD_REQUEST', parsed.message, { field: parsed.field }), undefined);
    });
  }

  /** Every refusal and fault as `{ ok: false, error: { code, message, ...details } }` with the code's HTTP status. */
  private replyError(error: FastifyError | HttpError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
    let code: WireCode;
    let message: string;
    let details: ErrorDetails = {};
    if (error instanceof HttpError || (isFloatdError(error) && isWireCode(error.code))) {
      // A FloatdError with a wire code reaching here is a fault the server foresaw (storage unavailable): its code says what to do.
      ({ message, details } = error);
      code = wireCodeOf(error.code);
    } else if ('validation' in error && error.validation && error.validation.length > 0) {
      const v = error.validation[0]!;
      const field = fieldOf(v as { instancePath: string; params?: Record<string, unknown> }, error.validationContext);
      code = 'BAD_REQUEST';
      message = v.keyword === 'required' ? `field "${field}" is required` : `field "${field}" ${v.message ?? 'is not valid'}`;
      details = { field };
    } else if (!isFloatdError(error) && typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      code = 'BAD_REQUEST';
      message = error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? `the body is larger than ${this.options.bodyLimitBytes} bytes` : error.message;
    } else {
      // Unforeseen, or an operator's code (a command's, a setting's) that has no meaning for a client.
      this.deps.requestFailed(error, { method: request.method, route: request.routeOptions.url ?? 'unknown', url: request.url, remote: this.remoteOf(request.socket) });
      code = 'INTERNAL';
      message = 'internal server error; the operator can find details in the server log';
    }
    const retryAfterMs = details.retryAfterMs;
    if (typeof retryAfterMs === 'number') void reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
    return reply.code(HTTP_STATUS[code]).send({ ok: false, error: { code, message, ...details } });
  }

  /** Acquire, renew, release: the lease operations over the transport-neutral LeaseApi. */
  private addLeaseRoutes(schemas: RouteSchemas, validatorCompiler: ReturnType<typeof messageValidator>): void {
    const app = this.app;
    const { api } = this.deps;
    app.post('/v1/leases', { schema: schemas.acquire, validatorCompiler }, (request, reply) => {
      const body = request.body as { client: Parameters<WebServer['caller']>[1]; product?: string; leaseSecret?: string | null };
      return this.answer(reply, api.acquire(this.caller(request, body.client), body.product, secretOf(body)), (r) => (r.renewed ? 200 : 201));
    });
    app.post('/v1/leases/:id/renew', { schema: schemas.renew, validatorCompiler }, (request, reply) => {
      const body = request.body as { client: Parameters<WebServer['caller']>[1]; leaseSecret?: string | null };
      return this.answer(reply, api.renew(this.caller(request, body.client), (request.params as { id: string }).id, secretOf(body)), () => 200);
    });
    app.post('/v1/leases/:id/release', { schema: schemas.release, validatorCompiler }, (request, reply) => {
      const body = request.body as { client: Parameters<WebServer['caller']>[1]; leaseSecret?: string | null };
      return this.answer(reply, api.release(this.caller(request, body.client), (request.params as { id: string }).id, secretOf(body)), () => 200);
    });
  }

  /** Status, who the server is, health, the OpenAPI document and metrics. */
  private addServerRoutes(schemas: RouteSchemas): void {
    const app = this.app;
    const { api } = this.deps;
    // Without an admin credential: seats and health; with one (token, admin certificate, dashboard session): everything.
    app.get('/v1/status', { schema: schemas.status }, async (request, reply) => ((await this.adminOrNull(request, reply)) === null ? { ok: true, ...(await api.publicStatus()) } : { ok: true, view: 'full', ...(await api.status()) }));
    app.get('/v1/server', { schema: schemas.server }, async () => ({ ok: true, ...api.hello() }));
    app.get('/healthz', { schema: schemas.healthz }, async () => ({ ok: true }));
    app.get('/readyz', { schema: schemas.readyz }, async (_request, reply) => {
      const { ready, reason } = this.deps.ready();
      return reply.code(ready ? 200 : 503).send({ ok: ready, reason });
    });
    app.get('/openapi.json', { schema: schemas.openapi }, async () => app.swagger());
    app.get('/metrics', { schema: schemas.metrics }, async (request, reply) => {
      if (this.options.metricsAuth === 'admin' && (await this.adminOrNull(request, reply)) === null) {
        void reply.header('www-authenticate', 'Bearer realm="floatd admin"');
        throw new HttpError('UNAUTHORIZED', 'metrics.auth is "admin": /metrics needs an admin token or admin client certificate');
      }
      const { contentType, body } = await this.deps.metrics();
      return reply.type(contentType).send(body);
    });
  }
}
