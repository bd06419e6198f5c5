import { createHash, randomBytes } from 'node:crypto';

/** A session ends this long after sign-in, however busy. */
export const SESSION_ABSOLUTE_MS = 12 * 3600_000;
/** A session unused for this long ends (the dashboard refreshes every few seconds while open). */
export const SESSION_IDLE_MS = 2 * 3600_000;
/** Sessions kept at most; past it the oldest is ended. */
const MAX_SESSIONS = 1000;

interface Session {
  readonly actor: string;
  readonly stillValid: () => Promise<boolean>;
  readonly createdAt: number;
  usedAt: number;
}

/**
 * The dashboard's sign-ins, in memory: the cookie holds a random id (32
 * bytes, base64url), the table only its hash. A session ends at sign-out,
 * when idle or old (above), when the admin token it was opened with is
 * revoked (checked on every use), and when the server restarts.
 */
export class DashboardSessions {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly now: () => number) {}

  /** Opens a session for `actor`; returns the id for the cookie. */
  open(actor: string, stillValid: () => Promise<boolean>): string {
    const id = randomBytes(32).toString('base64url');
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const now = this.now();
    this.sessions.set(key(id), { actor, stillValid, createdAt: now, usedAt: now });
    return id;
  }

  /** The actor of a live session, or null (unknown, expired, or its token revoked: then it is ended). */
  async actorOf(id: string): Promise<string | null> {
    const k = key(id);
    const s = this.sessions.get(k);
    if (s === undefined) return null;
    const now = this.now();
    if (now - s.createdAt >= SESSION_ABSOLUTE_MS || now - s.usedAt >= SESSION_IDLE_MS || !(await s.stillValid())) {
      this.sessions.delete(k);
      return null;
    }
    // Signed out while its token was looked up: over.
    if (this.sessions.get(k) !== s) return null;
    s.usedAt = now;
    return s.actor;
  }

  /** Ends a session (sign-out). */
  close(id: string): void {
    this.sessions.delete(key(id));
  }

  get size(): number {
    return this.sessions.size;
  }
}

/** Sessions are looked up by the id's hash: what the lookup's timing could tell is about the hash, not the id. */
function key(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('base64url');
}
