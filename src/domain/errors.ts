/**
 * The closed set of error codes floatd speaks. Every code is documented in
 * docs/errors.md (a test checks that); adapters map codes to wire or HTTP
 * forms in one table each.
 */
/**
 * What the server's doors may answer: NDJSON replies and the web endpoint's
 * bodies (lease API, status, admin API). Only these have an HTTP status.
 */
export const WIRE_CODES = [
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
  'LICENSE_KEY_NOT_YET_VALID',
  // the admin API
  'UNAUTHORIZED',
  'FORBIDDEN',
  'TOO_MANY_REQUESTS',
  'BLOCK_NOT_FOUND',
  'TLS_NOT_CONFIGURED',
  'INTERNAL',
] as const;

/** What the vendor's activation service answers a customer's server (besides BAD_REQUEST, TOO_MANY_REQUESTS and INTERNAL). */
export const ACTIVATION_SERVICE_CODES = [
  'ACTIVATION_UNKNOWN_KEY',
  'ACTIVATION_LIMIT_REACHED',
  'ACTIVATION_CLOCK_SKEW',
  'ACTIVATION_HOST_UNBOUND',
  'ACTIVATION_FILE_INVALID',
  'ACTIVATION_FOREIGN',
  'ACTIVATION_STALE',
  'ACTIVATION_REPLAYED',
  'ACTIVATION_NOT_FOUND',
  'ACTIVATION_RELEASED',
  'ACTIVATION_NOT_REQUIRED',
] as const;

/**
 * What people read from commands, start-up, configuration, the lease log and
 * the client SDK; never a door's answer (one reaching a door is INTERNAL there).
 */
export const OPERATOR_CODES = [
  // license keys
  'LICENSE_KEY_MALFORMED',
  'LICENSE_KEY_BAD_SIGNATURE',
  'LICENSE_KEY_UNKNOWN_VENDOR',
  'LICENSE_KEY_EXPIRED',
  'LICENSE_KEY_BAD_CLAIMS',
  'LICENSE_KEY_DUPLICATE',
  'LICENSE_KEY_NOT_FOUND',
  'NO_VENDOR_KEYS',
  // activation, as the customer's server sees it
  'ACTIVATION_NETWORK',
  'ACTIVATION_PROXY_REFUSED',
  'ACTIVATION_SERVICE_ERROR',
  'PRODUCT_FILE_INVALID',
  // configuration and operation
  'CONFIG_INVALID',
  'DATA_DIR_INVALID',
  'DATA_DIR_LOCKED',
  'DATA_DIR_DAMAGED',
  'STORE_SCHEMA_NEWER',
  'CLUSTER_KEY_MISMATCH',
  'LISTEN_FAILED',
  'RULES_INVALID',
  'INPUT_INVALID',
  'USAGE',
  'SERVER_UNREACHABLE',
  'TOKEN_INVALID',
  'SERVER_KEY_CHANGED',
  'LOG_TAMPERED',
  'LOG_UNANCHORED',
  'EXPORT_FAILED',
] as const;

/** The closed set of error codes floatd speaks, every audience together. */
export const ERROR_CODES = [...WIRE_CODES, ...ACTIVATION_SERVICE_CODES, ...OPERATOR_CODES] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];
export type WireCode = (typeof WIRE_CODES)[number];
export type ActivationServiceCode = (typeof ACTIVATION_SERVICE_CODES)[number];
export type OperatorCode = (typeof OPERATOR_CODES)[number];

const WIRE: ReadonlySet<ErrorCode> = new Set(WIRE_CODES);

export function isWireCode(code: ErrorCode): code is WireCode {
  return WIRE.has(code);
}

/** The code a door answers for an error: its own when it is a wire code, else INTERNAL (an operator's code never reaches a client). */
export function wireCodeOf(code: ErrorCode): WireCode {
  return isWireCode(code) ? code : 'INTERNAL';
}

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

/**
 * Whether an error is a storage fault (the disk full or failing, the database
 * locked): the operation changed nothing and may be tried again (`retryAfterMs`).
 * Every store reports its faults as UNAVAILABLE; this is the one test for them.
 */
export function isStorageFault(err: unknown): err is FloatdError & { readonly code: 'UNAVAILABLE' } {
  return err instanceof FloatdError && err.code === 'UNAVAILABLE';
}

/** An expected refusal, returned as a value rather than thrown. */
export interface Denial<C extends ErrorCode = ErrorCode> {
  readonly ok: false;
  readonly code: C;
  readonly message: string;
  readonly details: ErrorDetails;
}

export function deny<C extends ErrorCode>(code: C, message: string, details: ErrorDetails = {}): Denial<C> {
  return { ok: false, code, message, details };
}
