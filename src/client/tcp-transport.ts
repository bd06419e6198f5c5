import { connect, type Socket } from 'node:net';
import { NdjsonDecoder, encodeFrame, parseFrame } from '../adapters/tcp/ndjson-codec.js';
import { parseHostPort, DEFAULT_PORT } from '../config/listen-address.js';

export interface ReplyError {
  readonly code: string;
  readonly message: string;
  readonly retryAfterMs?: number;
  readonly reason?: string;
  readonly [key: string]: unknown;
}

export type Reply = { readonly ok: true; readonly [key: string]: unknown } | { readonly ok: false; readonly error: ReplyError };

export class TransportError extends Error {
  constructor(message: string, readonly code = 'SERVER_UNREACHABLE') {
    super(message);
    this.name = 'TransportError';
  }
}

export interface TransportOptions {
  readonly connectTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  readonly maxFrameBytes?: number;
  /**
   * Whether the open connection keeps the Node.js process alive (default true).
   * Requests in flight keep it alive either way, until answered or timed out.
   */
  readonly keepProcessAlive?: boolean;
  /** Unsolicited server messages (`event` instead of `id`). */
  readonly onEvent?: (message: Record<string, unknown>) => void;
  readonly onClose?: (err: Error | null) => void;
}

/** One NDJSON connection to floatd: request/reply by id, plus pushed events. */
export class TcpTransport {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closedError: Error | null = null;

  private constructor(
    private readonly socket: Socket,
    private readonly options: TransportOptions,
  ) {
    const decoder = new NdjsonDecoder(options.maxFrameBytes ?? 1 << 20);
    socket.on('data', (data: Buffer) => {
      for (const frame of decoder.push(data)) {
        if (frame.kind !== 'line') {
          socket.destroy(new TransportError('server sent an oversized line'));
          return;
        }
        const parsed = parseFrame(frame.text);
        if (!parsed.ok) continue;
        const msg = parsed.message;
        const id = msg['id'];
        if (typeof id === 'number' && this.pending.has(id)) {
          const p = this.pending.get(id)!;
          this.pending.delete(id);
          clearTimeout(p.timer);
          p.resolve(msg as unknown as Reply);
        } else if (msg['event'] !== undefined || msg['error'] !== undefined) {
          options.onEvent?.(msg);
        }
      }
    });
    socket.on('error', (err) => {
      this.closedError ??= err;
    });
    socket.on('close', () => {
      const err = this.closedError ?? new TransportError('connection closed by the server');
      this.closedError = err;
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new TransportError(err.message));
      }
      this.pending.clear();
      options.onClose?.(err);
    });
  }

  /** Connects to `host`, `host:port`, `[v6]:port`; a bare host means port 8989. */
  static connect(address: string, options: TransportOptions = {}): Promise<TcpTransport> {
    const { host, port } = parseHostPort(address, DEFAULT_PORT);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: host === '' ? 'localhost' : host, port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TransportError(`cannot reach floatd at ${address}: timed out`));
      }, options.connectTimeoutMs ?? 10_000);
      if (options.keepProcessAlive === false) {
        socket.unref();
        timer.unref();
      }
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new TransportError(`cannot reach floatd at ${address}: ${err.message}`));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setKeepAlive(true, 30_000);
        resolve(new TcpTransport(socket, options));
      });
    });
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  request(op: string, fields: Record<string, unknown> = {}): Promise<Reply> {
    if (this.closedError !== null) return Promise.reject(new TransportError(this.closedError.message));
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new TransportError(`no reply to ${op} within ${(this.options.requestTimeoutMs ?? 15_000) / 1000} s`, 'SERVER_UNREACHABLE'));
      }, this.options.requestTimeoutMs ?? 15_000);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.write(encodeFrame({ ...fields, op, id }));
    });
  }

  close(): void {
    this.socket.end();
    this.socket.destroySoon();
  }
}
