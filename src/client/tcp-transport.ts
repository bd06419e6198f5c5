import { connect, type LookupFunction, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { NdjsonDecoder, encodeFrame, parseFrame } from '../adapters/tcp/ndjson-codec.js';
import { parseServerAddress } from './server-address.js';
import { explainConnectError, tlsConnectOptions, type TlsMaterial } from './tls-material.js';
import { TransportError, type Reply, type Transport, type TransportOptions } from './transport.js';

export { TransportError } from './transport.js';
export type { Reply, ReplyError, TransportOptions } from './transport.js';

export interface TcpTransportOptions extends TransportOptions {
  /** For `tls://` addresses: the CA and client certificate (read by readTlsFiles). */
  readonly tls?: TlsMaterial;
  /**
   * Resolves the host name to the one address to connect to (see pinnedLookup), so a
   * client can try each address of a name in turn; the name still serves for TLS.
   */
  readonly lookup?: LookupFunction;
  /** The address as messages name it (default: as given). */
  readonly label?: string;
}

/** One NDJSON connection to floatd, over TCP or inside TLS: request/reply by id, plus pushed events. */
export class TcpTransport implements Transport {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closedError: Error | null = null;
  /** An error the server sent without an id (SUSPENDED, SHUTTING_DOWN, IDLE_TIMEOUT…), to say why it closed. */
  private serverError: string | null = null;

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
          const error = msg['error'] as { code?: unknown; message?: unknown } | undefined;
          if (msg['id'] === undefined && typeof error?.code === 'string') this.serverError = `${error.code}: ${String(error.message ?? '')}`;
          options.onEvent?.(msg);
        }
      }
    });
    socket.on('error', (err) => {
      this.closedError ??= err;
    });
    socket.on('close', () => {
      const err = this.closedError ?? new TransportError(`connection closed by the server${this.serverError !== null ? ` (${this.serverError})` : ''}`);
      this.closedError = err;
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new TransportError(explainConnectError(err)));
      }
      this.pending.clear();
      options.onClose?.(err);
    });
  }

  /**
   * Connects to `host`, `host:port`, `[v6]:port` (a bare host means port 8989)
   * or `tls://host[:port]` (NDJSON inside TLS, port 8991).
   */
  static connect(address: string, options: TcpTransportOptions = {}): Promise<TcpTransport> {
    const target = parseServerAddress(address);
    if (target.scheme !== 'tcp' && target.scheme !== 'tls') {
      return Promise.reject(new TransportError(`${address}: the NDJSON protocol runs over host[:port] or tls://host[:port]; use HttpTransport for ${target.scheme}://`));
    }
    const name = options.label ?? address;
    const lookup = options.lookup !== undefined ? { lookup: options.lookup } : {};
    return new Promise((resolve, reject) => {
      const socket =
        target.scheme === 'tls' ? tlsConnect({ ...tlsConnectOptions(target, options.tls ?? {}), ...lookup }) : connect({ host: target.host, port: target.port, ...lookup });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TransportError(`cannot reach floatd at ${name}: timed out`));
      }, options.connectTimeoutMs ?? 10_000);
      if (options.keepProcessAlive === false) {
        socket.unref();
        timer.unref();
      }
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new TransportError(`cannot reach floatd at ${name}: ${explainConnectError(err)}`));
      });
      // A TLS socket is ready once the handshake is done and the server's certificate verified.
      socket.once(target.scheme === 'tls' ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
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
