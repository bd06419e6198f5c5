import { closeSync, openSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { devNull } from 'node:os';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { FloatdError, type WireCode } from '../../domain/errors.js';
import { closeServer, listenOn } from '../net/listen.js';
import { proxiedAddress, requireProxyProtocol, type ProxyProtocolSettings, type ProxyRefusal } from '../net/proxy-protocol.js';
import { peerCertificate, type PeerCertificate, type TlsContext } from '../tls/tls-context.js';
import { encodeFrame } from './ndjson-codec.js';
import { Suspension } from '../net/suspension.js';
import { ConnectionBudget } from '../net/connection-budget.js';
import { wireError } from './wire-errors.js';
import { FairQueue } from './fair-queue.js';
import { OutputBudget } from './output-budget.js';
import { REQUESTS_PER_TURN, TcpConnection, type Connection, type ConnectionEvents, type ConnectionSettings } from './tcp-connection.js';
import { systemTimers, type Timers } from './timers.js';
import { clientAddress } from '../../domain/door-rules.js';

export type { Connection } from './tcp-connection.js';

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
  /** A connection with no complete request for this long is closed; 0 turns the idle timeout off. */
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  /** The connection budget shared with the other listeners (the web endpoint's); absent: one of `maxConnections` for these listeners alone. */
  readonly budget?: ConnectionBudget;
  /** Open connections per client address (the PROXY header's, on PROXY-protocol listeners); 0 or absent: no limit. */
  readonly maxConnectionsPerAddress?: number;
  readonly backlog: number;
  /** 0 turns TCP keepalive off. */
  readonly keepAliveMs: number;
  /** A connection is not read while more than this many bytes of its replies are unsent (64 KiB). */
  readonly replyBufferBytes?: number;
  /** Past this many unsent bytes across all connections, those holding the most are not read either (32 MiB). */
  readonly replyBufferTotalBytes?: number;
  /** A connection paused for its unsent replies that does not drain them within this time is dropped (30 s). */
  readonly drainTimeoutMs?: number;
  /** Certificate, key and client-certificate policy of the `tls` listeners. */
  readonly tls?: TlsContext | null;
  /** Told of each answered request: its op, the transport and how long it took (seconds). */
  readonly answered?: (op: string, transport: 'tcp' | 'tls', seconds: number) => void;
  /** A monotonic clock (ms) for those durations. */
  readonly monotonic?: () => number;
  /** The body of the HTTP 400 an HTTP request line gets as a connection's first line (where the web endpoint is). */
  readonly misdirectedHttp?: () => string;
  /** What the connections' timeouts wait on (the event loop's timers when absent). */
  readonly timers?: Timers;
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

export interface TcpServerEvents extends ConnectionEvents {
  /** A connection was turned away because `maxConnections` are open. */
  connectionRefused?(remote: string): void;
  /** A connection on a PROXY-protocol listener was closed for want of a valid header from a trusted proxy. */
  proxyRefused?(refusal: ProxyRefusal): void;
  /** A connection was turned away because its address holds `maxConnectionsPerAddress` connections. */
  addressLimited?(remote: string, limit: number): void;
  /** The process is out of file descriptors: new connections are reset by the kernel before floatd sees them. */
  descriptorsExhausted?(code: string, connections: number): void;
}

/** What the backpressure machinery holds now, for metrics. */
export interface BackpressureState {
  /** Bytes of replies written by floatd but not yet taken by the kernel, over all connections. */
  readonly unsentBytes: number;
  /** Connections not read now because of their unsent replies. */
  readonly pausedConnections: number;
}

/** How long the connections with requests waiting are served before the event loop gets a turn (ms). */
const SERVE_BUDGET_MS = 3;
/** How long a connection turned away may take to close its side after reading why. */
const TURN_AWAY_LINGER_MS = 1000;
/** How often the server checks whether the process has run out of file descriptors. */
const DESCRIPTOR_PROBE_MS = 1000;

/**
 * The raw TCP listener(s): NDJSON framing, handshake and idle timeouts,
 * connection caps, backpressure on slow readers, and fairness between
 * connections. The protocol itself is the handler's business. The server
 * accepts or turns away; each connection taken is a `TcpConnection`, sharing
 * the server's `OutputBudget` (unsent replies) and `FairQueue` (round-robin).
 *
 * Backpressure: a connection is not read while more than `replyBufferBytes`
 * of its replies are unsent (nor are the requests it already sent handled),
 * and is read again once they drain to half that; one that stays paused for
 * `drainTimeoutMs` is dropped. Past `replyBufferTotalBytes` unsent over all
 * connections, every connection with replies backed up is paused too (one
 * whose client reads has none: the kernel takes them at once).
 * Fairness: a connection's requests are handled as they arrive, a few at a
 * time; what is left waits in a round-robin with the other connections'
 * leftovers, served for at most a few milliseconds per turn of the event loop,
 * so a client that sends one request at a time is answered at once however
 * many others pipeline thousands. Each connection has at most 8 requests
 * awaiting replies (from the database) at once.
 */
export class TcpServer {
  private servers: Array<{ server: Server; name: string }> = [];
  private readonly sockets = new Set<Socket>();
  private readonly raw = new Set<Socket>();
  private readonly budget: ConnectionBudget;
  /** Listeners that refuse new connections (maintenance); open ones carry on. */
  readonly suspension: Suspension;
  private nextId = 1;
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  private stopping = false;
  private readonly perAddress = new Map<string, number>();
  /** Unsent reply bytes over all connections, and which connections are paused for them. */
  private readonly output: OutputBudget;
  private probe: NodeJS.Timeout | undefined;
  /** Connections with requests they can have handled now, in round-robin order. */
  private readonly queue = new FairQueue({ requestsPerTurn: REQUESTS_PER_TURN, budgetMs: SERVE_BUDGET_MS });
  private readonly timers: Timers;
  private readonly connectionSettings: ConnectionSettings;

  constructor(
    private readonly options: TcpServerOptions,
    private readonly handler: ConnectionHandler,
    private readonly events: TcpServerEvents = {},
  ) {
    this.suspension = new Suspension(options.listeners.map((l) => l.name));
    this.budget = options.budget ?? new ConnectionBudget(options.maxConnections);
    this.output = new OutputBudget(options.replyBufferBytes ?? 64 << 10, options.replyBufferTotalBytes ?? 32 << 20);
    this.timers = options.timers ?? systemTimers;
    const { frameMaxBytes, handshakeTimeoutMs, idleTimeoutMs, misdirectedHttp } = options;
    this.connectionSettings = { frameMaxBytes, handshakeTimeoutMs, idleTimeoutMs, drainTimeoutMs: options.drainTimeoutMs ?? 30_000, misdirectedHttp };
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
    this.probe = setInterval(() => this.probeDescriptors(), DESCRIPTOR_PROBE_MS);
    this.probe.unref();
    return bound;
  }

  /**
   * Out of file descriptors, the kernel's accept fails and libuv resets the
   * waiting connections itself, telling nobody: so look whether one more
   * descriptor can be had.
   */
  private probeDescriptors(): void {
    try {
      closeSync(openSync(devNull, 'r'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EMFILE' || code === 'ENFILE') this.events.descriptorsExhausted?.(code, this.sockets.size);
    }
  }

  private createServer(l: TcpListenerOptions): Server {
    // allowHalfOpen: a client that sends its requests and then shuts its sending side (nc -N) still gets
    // every reply, inside TLS too (a TLS handshake the peer gave up on is ended by the handshake timeout).
    const socketOptions = { noDelay: true, keepAlive: this.options.keepAliveMs > 0, keepAliveInitialDelay: this.options.keepAliveMs, allowHalfOpen: true };
    if (!l.tls) return this.track(createServer(socketOptions, (s) => this.accept(s, l.name, false, null)), l);
    const context = this.options.tls;
    if (!context) throw new FloatdError('CONFIG_INVALID', `listener "${l.name}" is tls:// but no certificate is configured (tls.certFile, tls.keyFile)`, { setting: 'listeners' });
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
    server.on('error', (err: NodeJS.ErrnoException) => {
      // Accept failing for want of descriptors (when libuv cannot shed the connection itself).
      if (err.code === 'EMFILE' || err.code === 'ENFILE') this.events.descriptorsExhausted?.(err.code, this.sockets.size);
    });
    return server;
  }

  /** Answers a connection that is not taken with one error line, and closes it. */
  private turnAway(socket: Socket, code: WireCode, message: string): void {
    socket.on('error', () => {});
    // What the peer already sent is read and dropped: closing with it unread would reset the
    // connection, and the peer could lose the line that says why.
    socket.on('data', () => {});
    socket.end(encodeFrame(wireError(undefined, code, message)));
    const linger = this.timers.set(TURN_AWAY_LINGER_MS, () => socket.destroy());
    socket.once('close', () => this.timers.clear(linger));
  }

  private accept(socket: Socket, listener: string, tls: boolean, peer: PeerCertificate | null): void {
    if (this.suspension.has(listener) && !this.stopping) {
      this.turnAway(socket, 'SUSPENDED', `listener "${listener}" is suspended for maintenance and takes no new connections; connect to another server, or retry later`);
      return;
    }
    if (this.stopping) {
      this.turnAway(socket, 'SHUTTING_DOWN', 'the server is shutting down');
      return;
    }
    const remoteAddress = proxiedAddress(socket) ?? socket.remoteAddress ?? 'unknown';
    const remote = clientAddress(remoteAddress);
    const perAddress = this.options.maxConnectionsPerAddress ?? 0;
    const fromAddress = this.perAddress.get(remote) ?? 0;
    if (perAddress > 0 && fromAddress >= perAddress) {
      this.events.addressLimited?.(remote, perAddress);
      this.turnAway(socket, 'TOO_MANY_CONNECTIONS', `${remote} holds its maximum of ${perAddress} connections (maxConnectionsPerAddress); close one, or retry later`);
      return;
    }
    // The budget is shared with the web endpoint: idle HTTP keep-alive connections are closed to make room first.
    if (!this.budget.tryAcquire()) {
      this.events.connectionRefused?.(socket.remoteAddress ?? 'unknown');
      this.turnAway(socket, 'TOO_MANY_CONNECTIONS', `the server holds its maximum of ${this.budget.max} connections; retry later`);
      return;
    }
    this.perAddress.set(remote, fromAddress + 1);
    this.sockets.add(socket);
    // The connection lives on its socket's events, and hands itself back through `closed` at the end.
    new TcpConnection(socket, { id: this.nextId++, remote, listener, tls, peer }, {
      settings: this.connectionSettings,
      timers: this.timers,
      output: this.output,
      queue: this.queue,
      events: this.events,
      dispatch: (c, message, started, done) => this.dispatch(c, message, started, done),
      closed: (c) => this.released(socket, c),
    });
  }

  /** Gives back what a closed connection held: its socket, its budget slot and its address's count. */
  private released(socket: Socket, conn: Connection): void {
    this.sockets.delete(socket);
    this.budget.release();
    const left = (this.perAddress.get(conn.remote) ?? 1) - 1;
    if (left > 0) this.perAddress.set(conn.remote, left);
    else this.perAddress.delete(conn.remote);
    this.handler.onClose?.(conn);
  }

  /** Unsent replies and paused connections now (for metrics). */
  backpressure(): BackpressureState {
    return { unsentBytes: this.output.unsentBytes, pausedConnections: this.output.pausedConnections };
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
    clearInterval(this.probe);
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
