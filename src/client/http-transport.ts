import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import type { LookupFunction } from 'node:net';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { parseServerAddress, type ServerAddress } from './server-address.js';
import { explainConnectError, tlsConnectOptions, type TlsMaterial } from './tls-material.js';
import { TransportError, type Reply, type ReplyError, type Transport, type TransportOptions } from './transport.js';

export interface HttpTransportOptions extends Pick<TransportOptions, 'requestTimeoutMs' | 'onClose'> {
  /** For `https://` addresses: the CA and client certificate (read by readTlsFiles). */
  readonly tls?: TlsMaterial;
  /** Resolves the host name to the one address to connect to (see pinnedLookup); the name still serves for TLS and `Host`. */
  readonly lookup?: LookupFunction;
  /** The address as messages name it (default: as given). */
  readonly label?: string;
  /** Largest reply body accepted. Default 1 MiB. */
  readonly maxBodyBytes?: number;
}

/** The protocol version this client speaks (`protocol` in `GET /v1/server`). */
const PROTOCOL = 1;

interface Call {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly body?: Record<string, unknown>;
}

/**
 * The protocol's operations over the web endpoint's lease API (HTTP-API.md),
 * with the same replies TcpTransport gives, so LeaseClient need not know which
 * it talks to:
 *
 * - `hello` is `GET /v1/server` (version and lease-signing key); it also keeps
 *   the client identity and product, which every later request carries in its
 *   body, as a TCP connection keeps them for its session.
 * - `acquire`, `renew`, `release` are `POST /v1/leases[/{id}/renew|release]`,
 *   `status` is `GET /v1/status`.
 * - An error body (`{"ok":false,"error":…}`) is returned as a reply, whatever
 *   the HTTP status; `Retry-After` becomes `retryAfterMs` when the body has none.
 * - No reply, or one that is not floatd's JSON (a proxy's error page), is a
 *   TransportError (SERVER_UNREACHABLE), and the transport counts as closed:
 *   the caller makes a new one, and says hello again, as after a dropped
 *   TCP connection.
 *
 * Connections are kept alive between requests, but an idle one never keeps
 * the Node.js process alive; a request in flight does. The server cannot push
 * events over HTTP: a revoked lease shows at its next renewal.
 */
export class HttpTransport implements Transport {
  private readonly target: ServerAddress;
  /** The address as messages name it. */
  private readonly name: string;
  private readonly agent: HttpAgent;
  private identity: Record<string, unknown> | null = null;
  private product: string | undefined;
  private closedError: Error | null = null;
  private inFlight = 0;

  constructor(
    address: string,
    private readonly options: HttpTransportOptions = {},
  ) {
    this.target = parseServerAddress(address);
    this.name = options.label ?? this.target.text;
    if (this.target.scheme !== 'http' && this.target.scheme !== 'https') {
      throw new TransportError(`${address}: HttpTransport speaks to http:// and https:// addresses; use TcpTransport for host[:port] and tls://`);
    }
    if (this.target.scheme === 'https') {
      const { host: _host, port: _port, ...tls } = tlsConnectOptions(this.target, options.tls ?? {});
      this.agent = new HttpsAgent({ keepAlive: true, maxSockets: 4, ...tls });
    } else {
      this.agent = new HttpAgent({ keepAlive: true, maxSockets: 4 });
    }
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  request(op: string, fields: Record<string, unknown> = {}): Promise<Reply> {
    if (this.closedError !== null) return Promise.reject(new TransportError(this.closedError.message));
    if (op === 'hello') {
      this.identity = typeof fields['client'] === 'object' && fields['client'] !== null ? (fields['client'] as Record<string, unknown>) : null;
      this.product = typeof fields['product'] === 'string' ? fields['product'] : undefined;
      return this.call(op, { method: 'GET', path: '/v1/server' }).then((reply) => this.checkHello(reply));
    }
    if (op === 'status') return this.call(op, { method: 'GET', path: '/v1/status' });
    if (op !== 'acquire' && op !== 'renew' && op !== 'release') {
      return Promise.resolve(denied('UNKNOWN_OP', `"${op}" is not an operation of the HTTP lease API`));
    }
    if (this.identity === null) return Promise.resolve(denied('HELLO_REQUIRED', `say hello (with the client identity) before ${op}`));
    const secret = typeof fields['leaseSecret'] === 'string' ? { leaseSecret: fields['leaseSecret'] } : {};
    if (op === 'acquire') {
      const product = typeof fields['product'] === 'string' ? fields['product'] : this.product;
      return this.call(op, { method: 'POST', path: '/v1/leases', body: { client: this.identity, ...(product !== undefined ? { product } : {}), ...secret } });
    }
    const lease = fields['lease'];
    if (typeof lease !== 'string' || lease === '') return Promise.resolve(denied('BAD_REQUEST', `${op} needs the lease id`));
    return this.call(op, { method: 'POST', path: `/v1/leases/${encodeURIComponent(lease)}/${op}`, body: { client: this.identity, ...secret } });
  }

  /** Stops taking requests; connections close once those in flight (a last release) are answered. */
  close(): void {
    this.closedError ??= new TransportError('the client closed the transport');
    if (this.inFlight === 0) this.agent.destroy();
  }

  private checkHello(reply: Reply): Reply {
    if (!reply.ok) return reply;
    const protocol = reply['protocol'];
    if (protocol !== undefined && protocol !== PROTOCOL) {
      return denied('UNSUPPORTED_VERSION', `the server speaks protocol version ${String(protocol)}; this client speaks ${PROTOCOL}`);
    }
    return reply;
  }

  /** One HTTP exchange; a request on a kept-alive connection the server had just closed is sent again once. */
  private async call(op: string, call: Call): Promise<Reply> {
    this.inFlight++;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.exchange(op, call);
        } catch (err) {
          const stale = (err as { reusedSocket?: boolean }).reusedSocket === true && /^(ECONNRESET|EPIPE)$/.test(String((err as NodeJS.ErrnoException).code));
          // Every lease operation may be repeated safely: acquire is idempotent per instance, renew and release too.
          if (stale && attempt === 0 && this.closedError === null) continue;
          const failure = err instanceof TransportError ? err : new TransportError(`cannot reach floatd at ${this.name}: ${explainConnectError(err as Error)}`);
          this.fail(failure);
          throw failure;
        }
      }
    } finally {
      this.inFlight--;
      if (this.inFlight === 0 && this.closedError !== null) this.agent.destroy();
    }
  }

  private fail(err: TransportError): void {
    if (this.closedError !== null) return;
    this.closedError = err;
    this.options.onClose?.(err);
  }

  private exchange(op: string, call: Call): Promise<Reply> {
    const timeoutMs = this.options.requestTimeoutMs ?? 15_000;
    const maxBytes = this.options.maxBodyBytes ?? 1 << 20;
    const payload = call.body === undefined ? undefined : Buffer.from(JSON.stringify(call.body));
    const send = this.target.scheme === 'https' ? httpsRequest : httpRequest;
    return new Promise<Reply>((resolve, reject) => {
      const req = send({
        host: this.target.host,
        port: this.target.port,
        method: call.method,
        path: call.path,
        agent: this.agent,
        ...(this.options.lookup !== undefined ? { lookup: this.options.lookup } : {}),
        headers: {
          accept: 'application/json',
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
        },
      });
      const timer = setTimeout(() => req.destroy(new TransportError(`no reply to ${op} within ${timeoutMs / 1000} s`)), timeoutMs);
      req.once('error', (err) => {
        clearTimeout(timer);
        (err as { reusedSocket?: boolean }).reusedSocket = req.reusedSocket;
        reject(err);
      });
      req.once('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) req.destroy(new TransportError(`${this.name} sent a reply larger than ${maxBytes} bytes`));
          else chunks.push(chunk);
        });
        res.once('end', () => {
          clearTimeout(timer);
          try {
            resolve(this.reply(res, Buffer.concat(chunks).toString('utf8')));
          } catch (err) {
            reject(err);
          }
        });
        res.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
      req.end(payload);
    });
  }

  /** floatd's JSON reply, as TcpTransport gives it; anything else is a TransportError. */
  private reply(res: IncomingMessage, text: string): Reply {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const status = `HTTP ${res.statusCode ?? '?'}${res.statusMessage ? ` ${res.statusMessage}` : ''}`;
    if (typeof body !== 'object' || body === null || Array.isArray(body) || typeof (body as { ok?: unknown }).ok !== 'boolean') {
      throw new TransportError(`${this.name} answered ${status} without a floatd reply: is it floatd's web endpoint?`);
    }
    const reply = body as Record<string, unknown>;
    if (reply['ok'] === true) return reply as Reply;
    const error = reply['error'];
    if (typeof error !== 'object' || error === null || typeof (error as { code?: unknown }).code !== 'string') {
      throw new TransportError(`${this.name} answered ${status} with an error that has no code`);
    }
    const e = error as ReplyError;
    const retryAfterMs = e.retryAfterMs ?? retryAfter(res.headers['retry-after']);
    return { ok: false, error: { ...e, message: typeof e.message === 'string' ? e.message : status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) } };
  }
}

function denied(code: string, message: string): Reply {
  return { ok: false, error: { code, message } };
}

/** `Retry-After` in seconds (the form floatd sends); a date form is ignored. */
function retryAfter(header: string | undefined): number | undefined {
  return header !== undefined && /^\d+$/.test(header.trim()) ? Number(header.trim()) * 1000 : undefined;
}
