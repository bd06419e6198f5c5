import { readFileSync } from 'node:fs';

/** The connection cap when the descriptor limit cannot be read (not Linux, or no /proc). */
export const FALLBACK_MAX_CONNECTIONS = 20_000;

/**
 * The soft limit on open file descriptors of this process (RLIMIT_NOFILE),
 * from /proc/self/limits (Node has no API for it); null where that cannot be
 * read or the limit is "unlimited".
 */
export function softFdLimit(read: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number | null {
  let text: string;
  try {
    text = read();
  } catch {
    return null;
  }
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (!m || !/^\d+$/.test(m[1]!)) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/**
 * Descriptors kept back from connections (NDJSON and web share maxConnections):
 * for the database (and its WAL and shared-memory files), the log, the
 * listeners and the commands the server runs: a tenth of the limit, at least 64.
 */
export function descriptorHeadroom(limit: number): number {
  return Math.max(64, Math.ceil(limit / 10));
}

/** The default `maxConnections`: what the descriptor limit leaves after the headroom (at least 1), or 20,000 when it is unknown. */
export function defaultMaxConnections(limit: number | null = softFdLimit()): number {
  if (limit === null) return FALLBACK_MAX_CONNECTIONS;
  return Math.max(1, limit - descriptorHeadroom(limit));
}
