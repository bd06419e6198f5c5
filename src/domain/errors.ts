/**
 * The closed set of error codes floatd speaks. Every code is documented in
 * docs/errors.md (a test checks that); adapters map codes to wire or HTTP
 * forms in one table each.
 */
export const ERROR_CODES = [
  // protocol
  'BAD_REQUEST',
  'FRAME_TOO_LARGE',
  'HELLO_REQUIRED',
  'UNKNOWN_OP',
  'UNSUPPORTED_VERSION',
  'HANDSHAKE_TIMEOUT',
  'IDLE_TIMEOUT',
  'TOO_MANY_CONNECTIONS',
  'SHUTTING_DOWN',
  'SUSPENDED',
  'UNAVAILABLE',
  // leasing (expected denials)
  'NO_FREE_SEATS',
  'RULE_DENIED',
  'NOT_ACTIVATED',
  'LICENSE_EXPIRED',
  'UNKNOWN_PRODUCT',
  'PRODUCT_REQUIRED',
  'LEASE_EXPIRED',
  'LEASE_NOT_FOUND',
  'LEASE_NOT_YOURS',
  'LEASE_SECRET_MISMATCH',
  'IDENTITY_MISMATCH',
  'EVALUATION_ENDED',
  'CLOCK_SET_BACK',
  'NO_LICENSE',
  // license keys
  'LICENSE_KEY_MALFORMED',
  'LICENSE_KEY_BAD_SIGNATURE',
  'LICENSE_KEY_UNKNOWN_VENDOR',
  'LICENSE_KEY_EXPIRED',
  'LICENSE_KEY_NOT_YET_VALID',
  'LICENSE_KEY_BAD_CLAIMS',
  'LICENSE_KEY_DUPLICATE',
  'LICENSE_KEY_NOT_FOUND',
  'NO_VENDOR_KEYS',
  // activation
  'ACTIVATION_NETWORK',
  'ACTIVATION_PROXY_REFUSED',
  'ACTIVATION_UNKNOWN_KEY',
  'ACTIVATION_LIMIT_REACHED',
  'ACTIVATION_CLOCK_SKEW',
  'ACTIVATION_SERVICE_ERROR',
  'ACTIVATION_HOST_UNBOUND',
  'ACTIVATION_FILE_INVALID',
  'ACTIVATION_FOREIGN',
  'ACTIVATION_STALE',
  'ACTIVATION_REPLAYED',
  'ACTIVATION_NOT_FOUND',
  'ACTIVATION_RELEASED',
  'ACTIVATION_NOT_REQUIRED',
  'PRODUCT_FILE_INVALID',
  // configuration and operation
  'UNAUTHORIZED',
  'FORBIDDEN',
  'TOO_MANY_REQUESTS',
  'BLOCK_NOT_FOUND',
  'CONFIG_INVALID',
  'DATA_DIR_INVALID',
  'DATA_DIR_LOCKED',
  'DATA_DIR_DAMAGED',
  'LISTEN_FAILED',
  'TLS_NOT_CONFIGURED',
  'RULES_INVALID',
  'INPUT_INVALID',
  'USAGE',
  'SERVER_UNREACHABLE',
  'TOKEN_INVALID',
  'SERVER_KEY_CHANGED',
  'LOG_TAMPERED',
  'LOG_UNANCHORED',
  'EXPORT_FAILED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorDetails {
  retryAfterMs?: number;
  reason?: string;
  [key: string]: unknown;
}

/** The one error type of floatd: a stable code, a human message, optional details. */
export class FloatdError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message);
    this.name = 'FloatdError';
    this.code = code;
    this.details = details;
  }
}

export function isFloatdError(err: unknown): err is FloatdError {
  return err instanceof FloatdError;
}

/** An expected refusal, returned as a value rather than thrown. */
export interface Denial {
  readonly ok: false;
  readonly code: ErrorCode;
  readonly message: string;
  readonly details: ErrorDetails;
}

export function deny(code: ErrorCode, message: string, details: ErrorDetails = {}): Denial {
  return { ok: false, code, message, details };
}
