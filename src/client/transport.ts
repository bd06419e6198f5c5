export interface ReplyError {
  readonly code: string;
  readonly message: string;
  readonly retryAfterMs?: number;
  readonly reason?: string;
  readonly [key: string]: unknown;
}

export type Reply = { readonly ok: true; readonly [key: string]: unknown } | { readonly ok: false; readonly error: ReplyError };

/** The server could not be reached, or did not answer as floatd does. */
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

/**
 * A way to send the protocol's operations (hello, acquire, renew, release,
 * status) and get their replies: an NDJSON connection over TCP or TLS, or the
 * web endpoint's lease API over HTTP(S). Refusals are replies (`ok: false`);
 * a server that cannot be reached is a rejected promise (TransportError).
 */
export interface Transport {
  /** True once the transport can no longer be used; make a new one. */
  readonly closed: boolean;
  request(op: string, fields?: Record<string, unknown>): Promise<Reply>;
  close(): void;
}
