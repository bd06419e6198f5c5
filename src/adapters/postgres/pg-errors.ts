import { FloatdError } from '../../domain/errors.js';

/** How soon a client may try again after the database was unreachable or read-only. */
export const DATABASE_RETRY_MS = 1000;

/** SQLSTATEs after which the whole unit runs again: its transaction was rolled back and nothing of it kept. */
const RETRY_STATES = new Set(['40001', '40P01']);

/** The holder's unique index: two nodes took the same (user, instance, product) at once; run again, the second finds the first's lease. */
const RETRY_CONSTRAINTS = new Set(['leases_holder']);

/** Node-level socket errors that mean the database is not there. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

interface PgErrorLike {
  readonly code?: unknown;
  readonly constraint?: unknown;
  readonly message?: unknown;
}

/** Whether a unit that failed with `err` should simply run again (a deadlock, a serialization failure, a lost race on the holder index). */
export function isRetryable(err: unknown): boolean {
  const e = err as PgErrorLike | null;
  if (typeof e?.code !== 'string') return false;
  if (RETRY_STATES.has(e.code)) return true;
  return e.code === '23505' && typeof e.constraint === 'string' && RETRY_CONSTRAINTS.has(e.constraint);
}

function reasonOf(err: PgErrorLike): 'database-unreachable' | 'read-only' | 'database-unavailable' | null {
  const code = typeof err.code === 'string' ? err.code : '';
  if (code === '25006') return 'read-only';
  if (SOCKET_CODES.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return 'database-unreachable';
  if (code.startsWith('53') || code === '55P03' || code === '57014') return 'database-unavailable';
  const message = typeof err.message === 'string' ? err.message : '';
  if (/Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|Connection closed/i.test(message)) return 'database-unreachable';
  return null;
}

const PLAIN = {
  'database-unreachable': 'the database cannot be reached',
  'read-only': 'the database refuses writes (a standby, or a primary in read-only mode)',
  'database-unavailable': 'the database is out of resources or cancelled the statement',
} as const;

/**
 * A database error that means the database is not usable now (unreachable, a
 * read-only standby, out of connections) as UNAVAILABLE with a retry hint —
 * never a decision from a stale view; anything else is null. `where` names the
 * database for the server log (host and database, never the password).
 */
export function databaseFault(err: unknown, where: string): FloatdError | null {
  if (err instanceof FloatdError) return err.code === 'UNAVAILABLE' ? err : null;
  if (err === null || typeof err !== 'object') return null;
  const e = err as PgErrorLike;
  const reason = reasonOf(e);
  if (reason === null) return null;
  const message = typeof e.message === 'string' ? e.message : String(err);
  return new FloatdError('UNAVAILABLE', `storage unavailable: ${PLAIN[reason]} (${where}: ${message})`, {
    reason,
    retryAfterMs: DATABASE_RETRY_MS,
    ...(typeof e.code === 'string' ? { sqlState: e.code } : {}),
  });
}
