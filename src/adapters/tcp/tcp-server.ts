import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { FloatdError, type ErrorCode } from '../../domain/errors.js';
import { NdjsonDecoder, encodeFrame, parseFrame } from './ndjson-codec.js';

export interface TcpListenerOptions {
  readonly name: string;
  /** '' listens on every interface, dual stack where IPv6 exists. */
  readonly host: string;
  readonly port: number;
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
  /**
   * Wraps the handling of every request read in one event-loop turn (group
   * commit). If it throws, each request of the batch is answered with the
   * handler's error reply and none of their own replies is sent.
   */
  readonly runBatch?: (fn: () => void) => void;
}

/** What the protocol layer sees of one connection. */
export interface Connection {
  readonly id: number;
  readonly remote: string;
  readonly listener: string;
  /** Protocol state the handler keeps per connection. */
  state: unknown;
  /** Call once the client has said hello: stops the handshake timer. */
  markReady(): void;
  send(message: unknown): void;
  close(): void;
}

export interface ConnectionHandler {
  /** Answers one request; the returned object is sent as the reply. */
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
}

const MAX_BAD_FRAMES = 10;

const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use (is another floatd, or another program, listening there?)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'this machine has no such address',
  ENOTFOUND: 'no such host name',
  EAI_AGAIN: 'the host name cannot be resolved now',
};

function listenFailed(err: NodeJS.ErrnoException, l: TcpListenerOptions): FloatdError {
  const where = `${l.host === '' ? '[::]' : l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
  const why = (err.code !== undefined ? LISTEN_ERRORS[err.code] : undefined) ?? err.message;
  return new FloatdError('LISTEN_FAILED', `cannot listen on ${where} (listener "${l.name}"): ${why}`, { listener: l.name, cause: err.code });
}

function errorFrame(id: unknown, code: ErrorCode, message: string): unknown {
  return id === undefined ? { ok: false, error: { code, message } } : { id, ok: false, error: { code, message } };
}

/**
 * The raw TCP listener(s): NDJSON framing, handshake and idle timeouts,
 * connection cap, back-pressure on slow readers. The protocol itself is
 * the handler's business.
 */
export class TcpServer {
  private servers: Array<{ server: Server; name: string }> = [];
  private readonly sockets = new Set<Socket>();
  private nextId = 1;
  private inFlight = 0;
  private queue: Array<[Connection, Record<string, unknown>]> = [];
  private flushScheduled = false;
  private idleWaiters: Array<() => void> = [];
  private stopping = false;

  constructor(
    private readonly options: TcpServerOptions,
    private readonly handler: ConnectionHandler,
    private readonly events: TcpServerEvents = {},
  ) {}

  async start(): Promise<BoundListener[]> {
    const bound: BoundListener[] = [];
    try {
      for (const l of this.options.listeners) {
        const server = createServer({ noDelay: true, keepAlive: this.options.keepAliveMs > 0, keepAliveInitialDelay: this.options.keepAliveMs }, (s) =>
          this.accept(s, l.name),
        );
        await this.listen(server, l).catch((err: NodeJS.ErrnoException) => {
          throw listenFailed(err, l);
        });
        this.servers.push({ server, name: l.name });
        const a = server.address() as AddressInfo;
        bound.push({ name: l.name, address: a.address, family: a.family, port: a.port });
      }
    } catch (err) {
      await this.closeServers();
      throw err;
    }
    return bound;
  }

  private listen(server: Server, l: TcpListenerOptions): Promise<void> {
    const attempt = (host: string, ipv6Only?: boolean) =>
      new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        server.once('error', onError);
        server.listen({ host, port: l.port, backlog: this.options.backlog, ipv6Only }, () => {
          server.off('error', onError);
          resolve();
        });
      });
    if (l.host !== '') return attempt(l.host);
    // Every interface: IPv6 dual stack, or IPv4 alone on hosts without IPv6.
    return attempt('::', false).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL') return attempt('0.0.0.0');
      throw err;
    });
  }

  private accept(socket: Socket, listener: string): void {
    if (this.stopping || this.sockets.size >= this.options.maxConnections) {
      if (!this.stopping) this.events.connectionRefused?.(socket.remoteAddress ?? 'unknown');
      socket.end(encodeFrame(errorFrame(undefined, this.stopping ? 'SHUTTING_DOWN' : 'TOO_MANY_CONNECTIONS',
        this.stopping ? 'the server is shutting down' : `the server holds its maximum of ${this.options.maxConnections} connections; retry later`)));
      socket.destroySoon();
      socket.on('error', () => {});
      return;
    }
    this.sockets.add(socket);
    const remoteAddress = socket.remoteAddress ?? 'unknown';
    const remote = remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
    const decoder = new NdjsonDecoder(this.options.frameMaxBytes);
    const maxPending = this.options.maxPendingWriteBytes ?? 4 << 20;
    let badFrames = 0;
    let closed = false;
    let handshake: NodeJS.Timeout | undefined;
    const conn: Connection = {
      id: this.nextId++,
      remote,
      listener,
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
      conn.send(errorFrame(id, code, message));
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
        this.dispatch(conn, parsed.message);
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

  private dispatch(conn: Connection, message: Record<string, unknown>): void {
    this.queue.push([conn, message]);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.inFlight++;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    const replies: unknown[] = [];
    try {
      const run = () => {
        for (const [conn, message] of batch) {
          try {
            replies.push(this.handler.onMessage(conn, message));
          } catch (err) {
            replies.push(this.handler.onError(conn, message, err));
          }
        }
      };
      if (this.options.runBatch) this.options.runBatch(run);
      else run();
    } catch (err) {
      // The commit failed: nothing of the batch is kept, so no success may be reported.
      for (const [i, [conn, message]] of batch.entries()) {
        const r = replies[i];
        if (r instanceof Promise) r.catch(() => {});
        conn.send(this.handler.onError(conn, message, err));
      }
      this.settled();
      return;
    }
    for (const [i, [conn, message]] of batch.entries()) {
      const reply = replies[i];
      if (reply instanceof Promise) {
        this.inFlight++;
        reply
          .then(
            (r) => conn.send(r),
            (err: unknown) => conn.send(this.handler.onError(conn, message, err)),
          )
          .finally(() => this.settled());
      } else if (reply !== undefined) {
        conn.send(reply);
      }
    }
    this.settled();
  }

  private settled(): void {
    if (--this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private closeServers(): Promise<void> {
    const servers = this.servers.splice(0);
    return Promise.all(servers.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())))).then(() => undefined);
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
    }, 1000);
    deadline.unref();
    await closing;
    clearTimeout(deadline);
  }
}
