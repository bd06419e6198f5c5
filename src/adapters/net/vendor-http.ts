import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ERROR_CODES, FloatdError, type ErrorCode } from '../../domain/errors.js';

export interface PostOptions {
  /** http://[user:password@]host:port of an HTTP proxy that speaks CONNECT, or null. */
  readonly proxy: string | null;
  /** NO_PROXY: comma-separated hosts (a leading dot or none matches subdomains too), host:port, or *. */
  readonly noProxy?: string;
  readonly timeoutMs?: number;
  /** Extra CA certificates for the vendor's TLS certificate (besides the system's and NODE_EXTRA_CA_CERTS). */
  readonly ca?: string | Buffer;
  /** The command that does the same without network, advised when the vendor cannot be reached. */
  readonly offline?: string;
}

export interface PostResult {
  readonly status: number;
  readonly body: unknown;
  /** The vendor's clock, from its Date header. */
  readonly date: number | null;
}

/** Whether NO_PROXY says `host:port` is reached directly. */
export function bypassesProxy(host: string, port: number, noProxy: string): boolean {
  const name = host.replace(/^\[|\]$/g, '').toLowerCase();
  for (const raw of noProxy.split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    const m = /^(.*?)(?::(\d+))?$/.exec(entry.replace(/^\[|\]$/g, ''))!;
    const pattern = m[1]!.replace(/^\*?\./, '.');
    if (m[2] !== undefined && Number(m[2]) !== port) continue;
    if (pattern.startsWith('.') ? name.endsWith(pattern) || name === pattern.slice(1) : name === pattern || name.endsWith(`.${pattern}`)) return true;
  }
  return false;
}

function networkError(target: string, err: NodeJS.ErrnoException, via: string | null, offline: string | undefined): FloatdError {
  const code = err.code ?? '';
  const what =
    code === 'ECONNREFUSED' ? 'the connection was refused'
    : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'the name does not resolve (no DNS or no network?)'
    : code === 'ETIMEDOUT' || code === 'TIMEOUT' ? 'no answer in time'
    : code === 'ENETUNREACH' || code === 'EHOSTUNREACH' ? 'the network is unreachable'
    : code === 'ECONNRESET' ? 'the connection was reset'
    : err.message;
  return new FloatdError(
    'ACTIVATION_NETWORK',
    `cannot reach ${target}${via ? ` through the proxy ${via}` : ''}: ${what}; check the network${via ? ' and the proxy' : ', or set HTTPS_PROXY / --proxy'}${offline ? `, or do it offline (${offline})` : ''}`,
    { errno: code || undefined },
  );
}

function redacted(proxy: URL): string {
  return `${proxy.protocol}//${proxy.username ? `${decodeURIComponent(proxy.username)}:***@` : ''}${proxy.host}`;
}

/** Opens a tunnel to host:port through an HTTP proxy with CONNECT, sending Basic credentials from the proxy URL. */
function tunnel(proxy: URL, host: string, port: number, timeoutMs: number, offline: string | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Host: `${host}:${port}` };
    if (proxy.username !== '') {
      const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
      headers['Proxy-Authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
    }
    const req = httpRequest({ host: proxy.hostname.replace(/^\[|\]$/g, ''), port: Number(proxy.port || 80), method: 'CONNECT', path: `${host.includes(':') ? `[${host}]` : host}:${port}`, headers, timeout: timeoutMs, agent: false });
    req.once('connect', (res: IncomingMessage, socket: Socket) => {
      if (res.statusCode === 200) return resolve(socket);
      socket.destroy();
      const status = `${res.statusCode} ${res.statusMessage ?? ''}`.trim();
      const why =
        res.statusCode === 407
          ? proxy.username === '' ? 'it asks for credentials: give them in the proxy URL (http://user:password@proxy:port)' : 'it refused the credentials given'
          : res.statusCode === 403 ? `it does not allow tunnels to ${host}:${port}` : 'it would not open the tunnel';
      reject(new FloatdError('ACTIVATION_PROXY_REFUSED', `the proxy ${redacted(proxy)} answered CONNECT ${host}:${port} with ${status}: ${why}`, { status: res.statusCode }));
    });
    req.once('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.once('error', (err: NodeJS.ErrnoException) => reject(networkError(`the proxy ${redacted(proxy)}`, err, null, offline)));
    req.end();
  });
}

/**
 * POSTs JSON to the vendor's activation service and reads its JSON answer.
 * HTTPS goes through an HTTP proxy by CONNECT when one is set and NO_PROXY
 * does not exempt the host. Errors are coded: no network, proxy refused,
 * vendor service error; the vendor's own coded refusals are raised as is.
 */
export async function postToVendor(url: string, body: unknown, opts: PostOptions): Promise<PostResult> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new FloatdError('USAGE', `the activation URL "${url}" is not a URL`);
  }
  if (target.protocol !== 'https:' && target.protocol !== 'http:') throw new FloatdError('USAGE', `the activation URL ${url} must be http(s)`);
  const secure = target.protocol === 'https:';
  const host = target.hostname.replace(/^\[|\]$/g, '');
  const port = Number(target.port || (secure ? 443 : 80));
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const proxy = opts.proxy !== null && !bypassesProxy(host, port, opts.noProxy ?? '') ? new URL(opts.proxy) : null;
  const via = proxy === null ? null : redacted(proxy);
  const raw: Socket = proxy !== null
    ? await tunnel(proxy, host, port, timeoutMs, opts.offline)
    : await new Promise<Socket>((resolve, reject) => {
        const s = netConnect({ host, port, timeout: timeoutMs });
        s.once('connect', () => resolve(s));
        s.once('timeout', () => s.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
        s.once('error', (err: NodeJS.ErrnoException) => reject(networkError(`${host}:${port}`, err, null, opts.offline)));
      });
  const socket: Socket = secure
    ? await new Promise<Socket>((resolve, reject) => {
        const s = tlsConnect({ socket: raw, servername: /^[\d.]+$|:/.test(host) ? undefined : host, ca: opts.ca, ALPNProtocols: ['http/1.1'] });
        s.once('secureConnect', () => resolve(s));
        s.once('error', (err: NodeJS.ErrnoException) => {
          raw.destroy();
          reject(new FloatdError('ACTIVATION_NETWORK', `TLS with ${host}:${port}${via ? ` (through ${via})` : ''} failed: ${err.message}; if the vendor's certificate is from a private CA, add it with NODE_EXTRA_CA_CERTS`, { errno: err.code }));
        });
      })
    : raw;
  const payload = Buffer.from(JSON.stringify(body));
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req: ClientRequest = httpRequest({
      host,
      port,
      method: 'POST',
      path: `${target.pathname}${target.search}`,
      headers: { 'content-type': 'application/json', 'content-length': payload.length, accept: 'application/json', host: target.host },
      createConnection: () => socket,
      timeout: timeoutMs,
    });
    req.once('response', resolve);
    req.once('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.once('error', (err: NodeJS.ErrnoException) => reject(networkError(`${host}:${port}`, err, via, opts.offline)));
    req.end(payload);
  });
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  socket.destroy();
  const text = Buffer.concat(chunks).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new FloatdError('ACTIVATION_SERVICE_ERROR', `the activation service at ${url} answered ${res.statusCode} with something other than JSON: ${text.slice(0, 200)}`, { status: res.statusCode });
  }
  const dateHeader = res.headers['date'];
  const date = dateHeader ? Date.parse(dateHeader) : NaN;
  const status = res.statusCode ?? 0;
  if (status >= 400 || (parsed as { ok?: unknown }).ok === false) {
    const error = (parsed as { error?: { code?: unknown; message?: unknown } }).error;
    const code = typeof error?.code === 'string' && (ERROR_CODES as readonly string[]).includes(error.code) ? (error.code as ErrorCode) : null;
    const message = typeof error?.message === 'string' ? error.message : `HTTP ${status}`;
    if (code !== null && (code.startsWith('ACTIVATION_') || code === 'TOO_MANY_REQUESTS')) {
      const { code: _c, message: _m, ...details } = error as Record<string, unknown>;
      throw new FloatdError(code, `the vendor's activation service says: ${message}`, details);
    }
    throw new FloatdError('ACTIVATION_SERVICE_ERROR', `the activation service at ${url} failed (HTTP ${status}${code ? `, ${code}` : ''}): ${message}`, { status });
  }
  return { status, body: parsed, date: Number.isNaN(date) ? null : date };
}
