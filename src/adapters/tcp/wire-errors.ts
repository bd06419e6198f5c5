import type { ErrorDetails, WireCode } from '../../domain/errors.js';

/**
 * The one shape of an NDJSON error, for framing errors and refused requests
 * alike: `{"id":…,"ok":false,"error":{"code","message",…details}}` (no `id`
 * when the error belongs to no request). Only wire codes go on the wire;
 * docs/errors.md lists them.
 */
export function wireError(id: unknown, code: WireCode, message: string, details: ErrorDetails = {}): Record<string, unknown> {
  const error = { code, message, ...details };
  return id === undefined ? { ok: false, error } : { id, ok: false, error };
}
