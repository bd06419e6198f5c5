import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { ErrorCode } from '../../domain/errors.js';
import { closeServer, listenOn } from '../net/listen.js';
import { proxiedAddress, requireProxyProtocol, type ProxyProtocolSettings, type ProxyRefusal } from '../net/proxy-protocol.js';
import { peerCertificate, type PeerCertificate, type TlsContext } from '../tls/tls-context.js';
import { NdjsonDecoder, encodeFrame, parseFrame } from './ndjson-codec.js';
import { Suspension } from '../net/suspension.js';
import { wireError } from './wire-errors.js';

export interface TcpListenerOptions {
  readonly name: string;
  /** '' listens on every interface, dual stack where IPv6 exists. */
  readonly host: string;
  readonly port: number;
  /** NDJSON inside TLS (a `tls://` listener). */
  readonly tls?: boolean;
  /** Every connection starts with a PROXY header from a trusted proxy (before TLS, if any). */
  readonly proxyProtocol?: ProxyProtocolSettings;
}

export interface TcpServerOptions {
  readonly listeners: readonly TcpListenerOptions[];
  readonly frameMaxBytes: number;
  readonly handshakeTimeoutMs: number;
  /** 0 turns the idle timeout off. */
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly backlog: number;
  /** 0 turns TCP keepalive off. */
  readonly keepAliveMs: number;
  /** A peer that leaves this much unread output is dropped. */
  readonly maxPendingWriteBytes?: number;
  /** Certificate, key and client-certificate policy of the `tls` listeners. */
  readonly tls?: TlsContext | null;
  /** Told of each answered request: its op, the transport and how long it took (seconds). */
  readonly answered?: (op: string, transport: 'tcp' | 'tls', seconds: number) => void;
  /** A monotonic clock (ms) for those durations. */
  readonly monotonic?: () => number;
}

/** What the protocol layer sees of one connection. */
export interface Connection {
  readonly id: number;
  readonly remote: string;
  readonly listener: string;
  /** Whether the connection is TLS (a `tls://` listener). */
  readonly tls: boolean;
  /** The verified client certificate of a TLS connection, or null. */
  readonly peer: PeerCertificate | null;
  /** Protocol state the handler keeps per connection. */
  state: unknown;
  /** Call once the client has said hello: stops the handshake timer. */
  markReady(): void;
  send(message: unknown): void;
  close(): void;
}

export interface ConnectionHandler {
  /** Answers one request; the returned object (or what the promise resolves to) is sent as the reply. */
  onMessage(conn: Connection, message: Record<string, unknown>): Promise<unknown> | unknown;
  onClose?(conn: Connection): void;
  /** A reply for a request that threw: logged by the handler, generic for the peer. */
  onError(conn: Connection, message: Record<string, unknown>, err: unknown): unknown;
}

export interface BoundListener {
  readonly name: string;
  readonly address: string;
  readonly family: string;
  readonly port: number;
}

export interface TcpServerEvents {
  protocolError?(conn: Connection, code: ErrorCode, detail: string): void;
  /** A connection was turned away because `maxConnections` are open. */
  connectionRefused?(remote: string): void;
  /** A connection on a PROXY-protocol listener was closed for want of a valid header from a trusted proxy. */
  proxyRefused?(refusal: ProxyRefusal): void;
}

const MAX_BAD_FRAMES = 10;

/**
 * The raw TCP listener(s): NDJSON framing, handshake and idle timeouts,
 * connection cap, back-pressure on slow readers. The protocol itself is
 * the handler's business.
 */
export class TcpServer {
  private servers: Array<{ server: Server; name: string }> = [];
  private readonly sockets = new Set<Socket>();
  private readonly raw = new Set<Socket>();
  /** Listeners that refuse new connections (maintenance); open ones carry on. */
  readonly suspension: Suspension;
  private nextId = 1;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  private stopping = false;

  constructor(
    private readonly options: TcpServerOptions,
    private readonly handler: ConnectionHandler,
    private readonly events: TcpServerEvents = {},
  ) {
    this.suspension = new Suspension(options.listeners.map((l) => l.name));
  }

  async start(): Promise<BoundListener[]> {
    const bound: BoundListener[] = [];
    try {
      for (const l of this.options.listeners) {
        const server = this.createServer(l);
        this.servers.push({ server, name: l.name });
        await listenOn(server, l, this.options.backlog);
        const a = server.address() as AddressInfo;
        bound.push({ name: l.name, address: a.address, family: a.family, port: a.port });
      }
    } catch (err) {
      await this.closeServers();
      throw err;
    }
    return bound;
  }

  private createServer(l: TcpListenerOptions): Server {
    const socketOptions = { noDelay: true, keepAlive: this.options.keepAliveMs > 0, keepAliveInitialDelay: this.options.keepAliveMs };
    // allowHalfOpen: a client that sends its requests and then shuts its side (nc -N) still gets every reply.
    // (Not under TLS: there a peer's end is the end of the session, and a half-open handshake must not linger.)
    if (!l.tls) return this.track(createServer({ ...socketOptions, allowHalfOpen: true }, (s) => this.accept(s, l.name, false, null)), l);
    const context = this.options.tls;
    if (!context) throw new Error(`listener "${l.name}" is tls:// but no certificate is configured`);
    const server = createTlsServer({ ...socketOptions, ...context.serverOptions(this.options.handshakeTimeoutMs) }, (s: TLSSocket) => {
      const peer = peerCertificate(s);
      // clientCertificates "request": a certificate that was sent must verify.
      if (peer === 'unverified') {
        s.destroy();
        return;
      }
      this.accept(s, l.name, true, peer);
    });
    server.on('tlsClientError', () => {
      // A failed handshake (old protocol, refused suite, bad client certificate): nothing to answer.
    });
    context.register(server);
    return this.track(server, l);
  }

  /** Every raw connection, handshakes (and PROXY headers) included, so stop() can close what never became a session. */
  private track<S extends Server>(server: S, l: TcpListenerOptions): S {
    if (l.proxyProtocol) {
      requireProxyProtocol(server, {
        ...l.proxyProtocol,
        listener: l.name,
        timeoutMs: this.options.handshakeTimeoutMs,
        refused: (refusal) => this.events.proxyRefused?.(refusal),
      });
    }
    server.on('connection', (raw: Socket) => {
      this.raw.add(raw);
      raw.once('close', () => this.raw.delete(raw));
    });
    return server;
  }

  private accept(socket: Socket, listener: string, tls: boolean, peer: PeerCertificate | null): void {
    if (this.suspension.has(listener) && !this.stopping) {
      socket.end(encodeFrame(wireError(undefined, 'SUSPENDED', `listener "${listener}" is suspended for maintenance and takes no new connections; connect to another server, or retry later`)));
      socket.destroySoon();
      socket.on('error', () => {});
      return;
    }
    if (this.stopping || this.sockets.size >= this.options.maxConnections) {
      if (!this.stopping) this.events.connectionRefused?.(socket.remoteAddress ?? 'unknown');
      socket.end(encodeFrame(wireError(undefined, this.stopping ? 'SHUTTING_DOWN' : 'TOO_MANY_CONNECTIONS',
        this.stopping ? 'the server is shutting down' : `the server holds its maximum of ${this.options.maxConnections} connections; retry later`)));
      socket.destroySoon();
      socket.on('error', () => {});
      return;
    }
    this.sockets.add(socket);
    const remoteAddress = proxiedAddress(socket) ?? socket.remoteAddress ?? 'unknown';
    const remote = remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
    const decoder = new NdjsonDecoder(this.options.frameMaxBytes);
    const maxPending = this.options.maxPendingWriteBytes ?? 4 << 20;
    let badFrames = 0;
    let closed = false;
    let replying = 0;
    let peerEnded = false;
    // The peer finished sending: close our side once every reply it asked for is out.
    const endWhenAnswered = () => {
      if (peerEnded && replying === 0 && !closed) socket.end();
    };
    socket.on('end', () => {
      peerEnded = true;
      endWhenAnswered();
    });
    let handshake: NodeJS.Timeout | undefined;
    const conn: Connection = {
      id: this.nextId++,
      remote,
      listener,
      tls,
      peer,
      state: undefined,
      markReady: () => {
        if (handshake !== undefined) clearTimeout(handshake);
        handshake = undefined;
      },
      send: (message) => {
        if (closed || socket.destroyed) return;
        socket.write(encodeFrame(message));
        if (socket.writableLength > maxPending) {
          this.events.protocolError?.(conn, 'IDLE_TIMEOUT', 'peer is not reading its replies');
          socket.destroy();
        }
      },
      close: () => {
        if (!closed) socket.end();
      },
    };
    const fail = (code: ErrorCode, message: string, id?: unknown) => {
      this.events.protocolError?.(conn, code, message);
      conn.send(wireError(id, code, message));
    };
    handshake = setTimeout(() => {
      fail('HANDSHAKE_TIMEOUT', `no hello within ${this.options.handshakeTimeoutMs / 1000} s`);
      socket.end();
    }, this.options.handshakeTimeoutMs);
    handshake.unref();
    if (this.options.idleTimeoutMs > 0) {
      socket.setTimeout(this.options.idleTimeoutMs, () => {
        fail('IDLE_TIMEOUT', `no request for ${this.options.idleTimeoutMs / 1000} s`);
        socket.end();
      });
    }
    socket.on('data', (data: Buffer) => {
      for (const frame of decoder.push(data)) {
        if (frame.kind === 'too-large') {
          fail('FRAME_TOO_LARGE', `a line may hold at most ${this.options.frameMaxBytes} bytes`);
          socket.end();
          socket.pause();
          return;
        }
        const parsed = parseFrame(frame.text);
        if (!parsed.ok) {
          fail('BAD_REQUEST', parsed.message);
          if (++badFrames >= MAX_BAD_FRAMES) socket.end();
          continue;
        }
        badFrames = 0;
        this.dispatch(conn, parsed.message, () => replying++, () => {
          replying--;
          endWhenAnswered();
        });
      }
    });
    socket.on('error', () => {
      // Resets and the like: the close handler below does the cleanup.
    });
    socket.on('close', () => {
      closed = true;
      if (handshake !== undefined) clearTimeout(handshake);
      this.sockets.delete(socket);
      this.handler.onClose?.(conn);
    });
  }

  /** Open NDJSON connections (for metrics). */
  connections(): number {
    return this.sockets.size;
  }

  /** Hands one request to the handler; its reply goes out when ready (replies may overtake each other). */
  private dispatch(conn: Connection, message: Record<string, unknown>, started: () => void, done: () => void): void {
    const { answered, monotonic } = this.options;
    const t0 = answered && monotonic ? monotonic() : 0;
    const observe = () => {
      if (answered && monotonic) answered(typeof message['op'] === 'string' ? message['op'] : 'invalid', conn.tls ? 'tls' : 'tcp', (monotonic() - t0) / 1000);
    };
    let reply: unknown;
    try {
      reply = this.handler.onMessage(conn, message);
    } catch (err) {
      reply = this.handler.onError(conn, message, err);
    }
    if (!(reply instanceof Promise)) {
      if (reply !== undefined) conn.send(reply);
      observe();
      return;
    }
    this.inFlight++;
    started();
    reply
      .then(
        (r) => conn.send(r),
        (err: unknown) => conn.send(this.handler.onError(conn, message, err)),
      )
      .finally(() => {
        observe();
        done();
        this.settled();
      });
  }

  private settled(): void {
    if (--this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private closeServers(): Promise<void> {
    const servers = this.servers.splice(0);
    for (const { server } of servers) {
      if ('setSecureContext' in server) this.options.tls?.unregister(server as unknown as { setSecureContext(): void });
    }
    return Promise.all(servers.map(({ server }) => closeServer(server))).then(() => undefined);
  }

  /** Stops accepting, lets in-flight replies go out (up to `graceMs`), then closes every connection. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const closing = this.closeServers();
    if (this.inFlight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref()),
      ]);
    }
    for (const s of this.sockets) s.end();
    const deadline = setTimeout(() => {
      for (const s of this.sockets) s.destroy();
      for (const s of this.raw) s.destroy();
    }, 1000);
    deadline.unref();
    await closing;
    clearTimeout(deadline);
  }
}
