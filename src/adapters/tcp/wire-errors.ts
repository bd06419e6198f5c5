import type { ErrorCode, ErrorDetails } from '../../domain/errors.js';

/**
 * The one shape of an NDJSON error, for framing errors and refused requests
 * alike: `{"id":…,"ok":false,"error":{"code","message",…details}}` (no `id`
 * when the error belongs to no request). Every code goes on the wire as is;
 * docs/errors.md lists them.
 */
export function wireError(id: unknown, code: ErrorCode, message: string, details: ErrorDetails = {}): Record<string, unknown> {
  const error = { code, message, ...details };
  return id === undefined ? { ok: false, error } : { id, ok: false, error };
}
