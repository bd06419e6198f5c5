import { closeSync, openSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { devNull } from 'node:os';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { ErrorCode } from '../../domain/errors.js';
import { closeServer, listenOn } from '../net/listen.js';
import { proxiedAddress, requireProxyProtocol, type ProxyProtocolSettings, type ProxyRefusal } from '../net/proxy-protocol.js';
import { peerCertificate, type PeerCertificate, type TlsContext } from '../tls/tls-context.js';
import { NdjsonDecoder, encodeFrame, parseFrame, type DecodeResult } from './ndjson-codec.js';
import { Suspension } from '../net/suspension.js';
import { ConnectionBudget } from '../net/connection-budget.js';
import { wireError } from './wire-errors.js';
import { httpBadRequest, isHttpRequestLine, misdirectedHttpBody } from './misdirected-http.js';

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
  /** A connection was turned away because its address holds `maxConnectionsPerAddress` connections. */
  addressLimited?(remote: string, limit: number): void;
  /** A connection stopped being read because too many of its replies are unsent. */
  paused?(conn: Connection, unsentBytes: number): void;
  /** A connection was dropped because its unsent replies did not drain in time. */
  slowReaderDropped?(conn: Connection, unsentBytes: number): void;
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

const MAX_BAD_FRAMES = 10;
/** Requests of one connection handled at a time before the next connection with requests waiting gets its turn. */
const REQUESTS_PER_TURN = 4;
/** How long the connections with requests waiting are served before the event loop gets a turn (ms). */
const SERVE_BUDGET_MS = 3;
/** Requests of one connection awaiting their replies at once; past this the connection's next request waits. */
const MAX_IN_FLIGHT = 8;

/** A connection as the server's round-robin sees it. */
interface Waiting {
  /** Handles up to `max` of its requests; true if it has more it could handle now. */
  serve(max: number): boolean;
}
/** How long a connection turned away may take to close its side after reading why. */
const TURN_AWAY_LINGER_MS = 1000;
/** How often the server checks whether the process has run out of file descriptors. */
const DESCRIPTOR_PROBE_MS = 1000;

/**
 * The raw TCP listener(s): NDJSON framing, handshake and idle timeouts,
 * connection caps, backpressure on slow readers, and fairness between
 * connections. The protocol itself is the handler's business.
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
  /** Unsent reply bytes over all connections, and how many connections have any. */
  private unsent = 0;
  private withUnsent = 0;
  private pausedNow = 0;
  /** Wakers of the connections paused for their output: run when the total falls back under its cap. */
  private readonly outputWaiters = new Set<() => void>();
  private overTotal = false;
  private probe: NodeJS.Timeout | undefined;
  /** Connections with requests they can have handled now, in round-robin order. */
  private readonly waiting = new Set<Waiting>();
  private serving = false;

  constructor(
    private readonly options: TcpServerOptions,
    private readonly handler: ConnectionHandler,
    private readonly events: TcpServerEvents = {},
  ) {
    this.suspension = new Suspension(options.listeners.map((l) => l.name));
    this.budget = options.budget ?? new ConnectionBudget(options.maxConnections);
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
    server.on('error', (err: NodeJS.ErrnoException) => {
      // Accept failing for want of descriptors (when libuv cannot shed the connection itself).
      if (err.code === 'EMFILE' || err.code === 'ENFILE') this.events.descriptorsExhausted?.(err.code, this.sockets.size);
    });
    return server;
  }

  /** Queues a connection for its next turn. */
  private wait(peer: Waiting): void {
    this.waiting.add(peer);
    if (this.serving) return;
    this.serving = true;
    setImmediate(() => this.serveWaiting());
  }

  /** Round-robin over the waiting connections, a few requests each, until they are done or the time is up. */
  private serveWaiting(): void {
    this.serving = false;
    const deadline = performance.now() + SERVE_BUDGET_MS;
    // A connection served goes to the back; iteration reaches it again after the others.
    for (const peer of this.waiting) {
      this.waiting.delete(peer);
      if (peer.serve(REQUESTS_PER_TURN)) this.waiting.add(peer);
      if (performance.now() >= deadline) break;
    }
    if (this.waiting.size > 0 && !this.serving) {
      this.serving = true;
      setImmediate(() => this.serveWaiting());
    }
  }

  /** Answers a connection that is not taken with one error line, and closes it. */
  private turnAway(socket: Socket, code: ErrorCode, message: string): void {
    socket.on('error', () => {});
    // What the peer already sent is read and dropped: closing with it unread would reset the
    // connection, and the peer could lose the line that says why.
    socket.on('data', () => {});
    socket.end(encodeFrame(wireError(undefined, code, message)));
    const linger = setTimeout(() => socket.destroy(), TURN_AWAY_LINGER_MS);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
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
    const remote = remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
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
    const bound = this.options.replyBufferBytes ?? 64 << 10;
    const total = this.options.replyBufferTotalBytes ?? 32 << 20;
    const drainMs = this.options.drainTimeoutMs ?? 30_000;
    // Replies beyond the bound come only from requests already in flight and from pushes; far beyond, something is wrong.
    const hardLimit = Math.max(1 << 20, 16 * bound);
    const decoder = new NdjsonDecoder(this.options.frameMaxBytes);
    // Bytes read but not yet handled: requests are cut from them one at a time, as they are handled,
    // so a connection that sent a lot while paused holds one read's bytes, not thousands of parsed frames.
    let unread: Buffer | undefined;
    let unreadFrom = 0;
    let badFrames = 0;
    let firstLine = true;
    let closed = false;
    /** No more requests are handled: the connection is closing after an error. */
    let finished = false;
    let inFlight = 0;
    let peerEnded = false;
    let accounted = 0;
    let outputPaused = false;
    let drainTimer: NodeJS.Timeout | undefined;
    let linger: NodeJS.Timeout | undefined;
    let handshake: NodeJS.Timeout | undefined;
    let idle: NodeJS.Timeout | undefined;

    /** Brings this connection's share of the unsent total up to date (after every write, and when it completes). */
    const account = () => {
      const now = closed ? 0 : socket.writableLength;
      if (now === accounted) return;
      this.unsent += now - accounted;
      if (accounted === 0) this.withUnsent++;
      else if (now === 0) this.withUnsent--;
      accounted = now;
      if (this.overTotal && this.unsent <= total) {
        this.overTotal = false;
        for (const wake of [...this.outputWaiters]) wake();
      } else if (this.unsent > total) {
        this.overTotal = true;
      }
    };
    const outputBlocked = (): boolean => {
      if (closed) return false;
      if (accounted > (outputPaused ? bound / 2 : bound)) return true;
      // Over the total, every connection whose replies back up (the kernel took no more of them) waits.
      return this.unsent > total && accounted > 0;
    };
    const wake = () => {
      if (!closed) this.wait(waiting);
    };
    /** Starts or ends a pause for unsent output; true while paused. */
    const checkOutput = (): boolean => {
      const blocked = outputBlocked();
      if (blocked && !outputPaused) {
        outputPaused = true;
        this.pausedNow++;
        this.outputWaiters.add(wake);
        this.events.paused?.(conn, accounted);
        drainTimer = setTimeout(() => {
          if (closed) return;
          this.events.protocolError?.(conn, 'IDLE_TIMEOUT', `peer is not reading its replies (${accounted} bytes unsent for ${drainMs / 1000} s)`);
          this.events.slowReaderDropped?.(conn, accounted);
          socket.destroy();
        }, drainMs);
        drainTimer.unref();
      } else if (!blocked && outputPaused) {
        unpause();
      }
      return blocked;
    };
    const unpause = () => {
      if (!outputPaused) return;
      outputPaused = false;
      this.pausedNow--;
      this.outputWaiters.delete(wake);
      clearTimeout(drainTimer);
    };
    /** Reads from the socket only while there is nothing queued and its replies flow (or to discard input once finished). */
    const flow = () => {
      if (closed) return;
      if (finished || (unread === undefined && !outputPaused)) socket.resume();
      else socket.pause();
    };
    const afterWrite = () => {
      account();
      if (outputPaused) wake();
    };
    // The peer finished sending: close our side once every request it sent is answered.
    const endWhenAnswered = () => {
      if (peerEnded && inFlight === 0 && (unread === undefined || finished) && !closed) socket.end();
    };
    /** Ends the connection after the replies so far, and destroys it if the peer does not close in time. */
    const finish = () => {
      if (finished) return;
      finished = true;
      unread = undefined;
      socket.end();
      linger = setTimeout(() => socket.destroy(), this.options.handshakeTimeoutMs);
      linger.unref();
      flow();
    };

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
        if (closed || socket.destroyed || socket.writableEnded) return;
        socket.write(encodeFrame(message), afterWrite);
        account();
        if (accounted > hardLimit) {
          this.events.protocolError?.(conn, 'IDLE_TIMEOUT', `peer is not reading its replies (${accounted} bytes unsent)`);
          this.events.slowReaderDropped?.(conn, accounted);
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

    /** The next complete line of the unread bytes (or a too-large line), if they hold one; a partial line goes to the decoder. */
    const nextFrame = (): DecodeResult | undefined => {
      const data = unread!;
      const nl = data.indexOf(10, unreadFrom);
      let piece: Buffer;
      if (nl < 0) {
        piece = data.subarray(unreadFrom);
        unread = undefined;
      } else {
        piece = data.subarray(unreadFrom, nl + 1);
        unreadFrom = nl + 1;
        if (unreadFrom >= data.length) unread = undefined;
      }
      return decoder.push(piece)[0];
    };
    /** Handles up to `max` unread requests, while replies flow and not too many await theirs; true if more could be handled now. */
    const serve = (max: number): boolean => {
      if (closed) return false;
      // Once our side is ended (the server stops), nothing more can be answered.
      if (socket.writableEnded) unread = undefined;
      let handled = 0;
      // The replies of these requests leave in one write.
      socket.cork();
      while (unread !== undefined && !finished && handled < max) {
        if (checkOutput() || inFlight >= MAX_IN_FLIGHT) break;
        const frame = nextFrame();
        if (frame === undefined) continue;
        // Complete requests count, not bytes: a byte now and then does not keep a connection open.
        idle?.refresh();
        handled++;
        handle(frame);
      }
      socket.uncork();
      if (unread === undefined) checkOutput();
      flow();
      endWhenAnswered();
      return !closed && !finished && unread !== undefined && !outputPaused && inFlight < MAX_IN_FLIGHT;
    };
    const waiting: Waiting = { serve };
    const handle = (item: DecodeResult) => {
      if (item.kind === 'too-large') {
        fail('FRAME_TOO_LARGE', `a line may hold at most ${this.options.frameMaxBytes} bytes`);
        finish();
        return;
      }
      if (firstLine && isHttpRequestLine(item.text)) {
        this.events.protocolError?.(conn, 'BAD_REQUEST', 'an HTTP request on an NDJSON port');
        socket.write(httpBadRequest(this.options.misdirectedHttp?.() ?? misdirectedHttpBody([])));
        finish();
        return;
      }
      firstLine = false;
      const parsed = parseFrame(item.text);
      if (!parsed.ok) {
        fail('BAD_REQUEST', parsed.message);
        if (++badFrames >= MAX_BAD_FRAMES) finish();
        return;
      }
      badFrames = 0;
      this.dispatch(conn, parsed.message, () => inFlight++, () => {
        inFlight--;
        if (unread !== undefined) wake();
        endWhenAnswered();
      });
    };

    socket.on('end', () => {
      peerEnded = true;
      endWhenAnswered();
    });
    handshake = setTimeout(() => {
      fail('HANDSHAKE_TIMEOUT', `no hello within ${this.options.handshakeTimeoutMs / 1000} s`);
      finish();
    }, this.options.handshakeTimeoutMs);
    handshake.unref();
    if (this.options.idleTimeoutMs > 0) {
      idle = setTimeout(() => {
        if (finished) return;
        fail('IDLE_TIMEOUT', `no request for ${this.options.idleTimeoutMs / 1000} s`);
        finish();
      }, this.options.idleTimeoutMs);
      idle.unref();
    }
    socket.on('data', (data: Buffer) => {
      if (finished) return;
      if (unread === undefined) {
        unread = data;
        unreadFrom = 0;
      } else {
        // Paused sockets emit no data; this is only in case one more chunk was on its way.
        unread = Buffer.concat([unread.subarray(unreadFrom), data]);
        unreadFrom = 0;
      }
      // The first requests at once (a client that sends one at a time waits for nobody); the rest in turn.
      if (serve(REQUESTS_PER_TURN)) wake();
    });
    socket.on('error', () => {
      // Resets and the like: the close handler below does the cleanup.
    });
    socket.on('close', () => {
      closed = true;
      unread = undefined;
      clearTimeout(handshake);
      clearTimeout(idle);
      clearTimeout(linger);
      unpause();
      account();
      this.waiting.delete(waiting);
      this.sockets.delete(socket);
      this.budget.release();
      const left = (this.perAddress.get(remote) ?? 1) - 1;
      if (left > 0) this.perAddress.set(remote, left);
      else this.perAddress.delete(remote);
      this.handler.onClose?.(conn);
    });
  }

  /** Unsent replies and paused connections now (for metrics). */
  backpressure(): BackpressureState {
    return { unsentBytes: this.unsent, pausedConnections: this.pausedNow };
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
