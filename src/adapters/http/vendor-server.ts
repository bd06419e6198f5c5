import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { FloatdError, type ErrorCode, type ErrorDetails } from '../../domain/errors.js';
import { closeServer, listenOn } from '../net/listen.js';
import type { TlsContext } from '../tls/tls-context.js';
import { VENDOR_HTTP_STATUS } from './http-status.js';

/** What the vendor's activation service does; each throws a FloatdError to refuse. */
export interface VendorServiceApi {
  activate(request: unknown, remote: string): Promise<{ activation: string; activationId: string; keyId: string; created: boolean }>;
  revalidate(request: unknown, remote: string): Promise<{ activation: string; activationId: string; keyId: string }>;
  release(proof: unknown, remote: string): Promise<{ receipt: string; activationId: string; keyId: string; releasedAt: number }>;
  registerEvaluation(request: unknown, remote: string): Promise<{ evaluation: string; evaluationId: string; startedAt: number; endsAt: number; created: boolean }>;
}

export interface VendorServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsContext | null;
  /** Requests per minute per client address. */
  readonly ratePerMinute: number;
}

export interface VendorServerDeps {
  readonly api: VendorServiceApi;
  readonly monotonic: () => number;
  readonly now: () => number;
  readonly requestFailed: (err: unknown, context: Record<string, unknown>) => void;
  readonly answered: (route: string, status: number, remote: string, code: string | null) => void;
}

const BODY = (field: 'request' | 'proof') => ({
  body: {
    type: 'object',
    required: [field],
    additionalProperties: false,
    properties: { [field]: { type: 'string', minLength: 1, maxLength: 16384 } },
  },
});

/**
 * The vendor's activation service over HTTP(S): POST /v1/activations,
 * /v1/revalidations, /v1/deactivations, /v1/evaluations, GET /healthz. Rate-limited per
 * client address; refusals carry floatd's codes with the statuses of
 * VENDOR_HTTP_STATUS, as the web endpoint's do with HTTP_STATUS.
 */
export class VendorServer {
  private readonly app: FastifyInstance;
  private server: HttpServer | null = null;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly options: VendorServerOptions,
    private readonly deps: VendorServerDeps,
  ) {
    this.app = Fastify({
      logger: false,
      bodyLimit: 65_536,
      return503OnClosing: true,
      ajv: { customOptions: { coerceTypes: false } },
      serverFactory: (handler) => this.createServer(handler),
    });
  }

  private createServer(handler: (req: IncomingMessage, res: ServerResponse) => void): HttpServer {
    const tls = this.options.tls;
    this.server = tls === null ? createHttpServer(handler) : (createHttpsServer(tls.serverOptions(10_000), handler) as unknown as HttpServer);
    this.server.headersTimeout = 15_000;
    this.server.requestTimeout = 30_000;
    return this.server;
  }

  /** Token bucket per address: `ratePerMinute` requests a minute, bursts of as many. */
  private admit(remote: string): number | null {
    const now = this.deps.monotonic();
    const rate = this.options.ratePerMinute;
    const b = this.buckets.get(remote) ?? { tokens: rate, at: now };
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) * rate) / 60_000);
    b.at = now;
    this.buckets.set(remote, b);
    if (this.buckets.size > 10_000) for (const [k, v] of this.buckets) if (v.tokens >= rate) this.buckets.delete(k);
    if (b.tokens < 1) return Math.ceil(((1 - b.tokens) * 60_000) / rate);
    b.tokens -= 1;
    return null;
  }

  async start(): Promise<{ host: string; port: number }> {
    const app = this.app;
    const { api } = this.deps;
    app.addHook('onRequest', async (request) => {
      const wait = request.url === '/healthz' ? null : this.admit(request.ip);
      if (wait !== null) throw new FloatdError('TOO_MANY_REQUESTS', `too many requests from ${request.ip}; at most ${this.options.ratePerMinute} a minute`, { retryAfterMs: wait });
    });
    app.addHook('onResponse', async (request, reply) => {
      this.deps.answered(`${request.method} ${request.routeOptions.url ?? request.url}`, reply.statusCode, request.ip, (reply as unknown as { floatdCode?: string }).floatdCode ?? null);
    });
    app.setErrorHandler((error: FastifyError | FloatdError, request, reply) => {
      let code: ErrorCode;
      let message: string;
      let details: ErrorDetails = {};
      if (error instanceof FloatdError) {
        ({ code, message, details } = error);
      } else if ('validation' in error && error.validation && error.validation.length > 0) {
        const v = error.validation[0]!;
        const field = v.instancePath.replace(/^\//, '') || String((v.params as Record<string, unknown>)['missingProperty'] ?? (v.params as Record<string, unknown>)['additionalProperty'] ?? 'body');
        code = 'BAD_REQUEST';
        message = v.keyword === 'required' ? `field "${field}" is required` : `field "${field}" ${v.message ?? 'is not valid'}`;
        details = { field };
      } else if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
        code = 'BAD_REQUEST';
        message = error.message;
      } else {
        this.deps.requestFailed(error, { method: request.method, url: request.url, remote: request.ip });
        code = 'INTERNAL';
        message = 'internal error of the activation service; the vendor can find details in its log';
      }
      if (typeof details.retryAfterMs === 'number') void reply.header('retry-after', String(Math.max(1, Math.ceil(details.retryAfterMs / 1000))));
      (reply as unknown as { floatdCode?: string }).floatdCode = code;
      return reply.code(VENDOR_HTTP_STATUS[code]).send({ ok: false, error: { code, message, ...details } });
    });
    app.setNotFoundHandler((request, reply) =>
      reply.code(404).send({ ok: false, error: { code: 'UNKNOWN_OP', message: `no route ${request.method} ${request.url.split('?')[0]} (routes: POST /v1/activations, /v1/revalidations, /v1/deactivations, /v1/evaluations)` } }),
    );
    app.addHook('onSend', async (_request, reply, payload) => {
      void reply.header('date', new Date(this.deps.now()).toUTCString());
      return payload;
    });
    app.get('/healthz', async () => ({ ok: true, time: new Date(this.deps.now()).toISOString() }));
    app.post('/v1/activations', { schema: BODY('request') }, async (request) => {
      const r = await api.activate((request.body as { request: string }).request, request.ip);
      return { ok: true, ...r, serverTime: new Date(this.deps.now()).toISOString() };
    });
    app.post('/v1/revalidations', { schema: BODY('request') }, async (request) => {
      const r = await api.revalidate((request.body as { request: string }).request, request.ip);
      return { ok: true, ...r, serverTime: new Date(this.deps.now()).toISOString() };
    });
    app.post('/v1/deactivations', { schema: BODY('proof') }, async (request) => {
      const r = await api.release((request.body as { proof: string }).proof, request.ip);
      return { ok: true, ...r, releasedAt: new Date(r.releasedAt).toISOString() };
    });
    app.post('/v1/evaluations', { schema: BODY('request') }, async (request) => {
      const r = await api.registerEvaluation((request.body as { request: string }).request, request.ip);
      return { ok: true, ...r, startedAt: new Date(r.startedAt).toISOString(), endsAt: new Date(r.endsAt).toISOString(), serverTime: new Date(this.deps.now()).toISOString() };
    });
    await app.ready();
    await listenOn(this.server!, { name: 'vendor', host: this.options.host, port: this.options.port }, 511);
    const addr = this.server!.address() as AddressInfo;
    return { host: addr.address, port: addr.port };
  }

  /**
   * Stops listening and closes every connection, then closes the app. The server was
   * bound by listenOn, not by fastify's listen, so fastify's close would leave it
   * listening (answering 503 to everything): it is closed here.
   */
  async stop(): Promise<void> {
    const server = this.server;
    if (server !== null && server.listening) {
      const closing = closeServer(server);
      server.closeAllConnections();
      await closing;
    }
    await this.app.close();
  }
}
