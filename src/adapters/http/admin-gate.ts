import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { ErrorDetails, WireCode } from '../../domain/errors.js';
import { DashboardSessions } from './dashboard-sessions.js';

/** The dashboard's session cookie: a random session id the server keeps (never an admin token). */
export const SESSION_COOKIE = 'floatd_admin';
/** The header the dashboard sends on every request that changes something (a cross-site form cannot). */
export const DASHBOARD_HEADER = 'x-floatd-dashboard';

/** Failures one presented credential, or one address, may have in a minute before its wrong answers are 429. */
export const FAILURES_ALLOWED = 10;
const FAILURE_WINDOW_MS = 60_000;
/** Failed admin authentications over all callers: 20 at once, one a second after that. */
export const GLOBAL_FAILURES = { perSecond: 1, burst: 20 } as const;

/** What the gate asks of the admin use cases. */
export interface AdminCredentials {
  /** The actor these credentials stand for (`token:NAME`, `cert:SUBJECT`), or null. */
  authenticate(bearer: string | null, certificateSubject: string | null): Promise<string | null>;
  /** An admin token's actor and a check that it has not been revoked since, or null (the dashboard's sign-in). */
  signIn(token: string): Promise<{ actor: string; stillValid: () => Promise<boolean> } | null>;
}

export interface AdminGateDeps {
  readonly admin: AdminCredentials;
  /** The caller as the endpoint saw it: address and verified client-certificate subject. */
  readonly who: (request: FastifyRequest) => { remote: string; certificateSubject: string | null };
  /** A refused admin request, for the server log (rate-limited there). */
  readonly refused: (remote: string, why: string) => void;
  /** Wrong credentials from all callers together passed the global cap (for the log, rate-limited there). */
  readonly globalCapHit: (retryAfterMs: number) => void;
  readonly fail: (code: WireCode, message: string, details?: ErrorDetails) => Error;
  /** A monotonic clock (ms). */
  readonly now: () => number;
  /** Whether the request came over HTTPS (for the session cookie's Secure flag and the same-origin check). */
  readonly secure: (request: FastifyRequest) => boolean;
}

/** A cookie's value from the request, or null. */
export function cookieOf(request: FastifyRequest, name: string): string | null {
  const header = request.headers.cookie;
  if (typeof header !== 'string') return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      return null;
    }
  }
  return null;
}

/** This server's own origin as a browser names it in the Origin header. */
export function ownOrigin(request: FastifyRequest, secure: boolean): string {
  return `${secure ? 'https' : 'http'}://${request.headers.host ?? ''}`;
}

/**
 * Why a request that changes something is refused for where it comes from, or
 * null: a browser names the page's origin in `Origin`; another site's, or
 * `null` (a sandboxed frame, a file, a redirect across origins), may not
 * change anything here. Clients that are not browsers send no Origin.
 */
export function foreignOrigin(request: FastifyRequest, secure: boolean): string | null {
  if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'OPTIONS') return null;
  const origin = request.headers.origin;
  if (origin === undefined) return null;
  if (origin === ownOrigin(request, secure)) return null;
  return `a request that changes something may not come from ${origin === 'null' ? 'an opaque origin (Origin: null)' : `another origin (${origin})`}`;
}

interface Window {
  count: number;
  since: number;
}

export type Identified =
  | { readonly actor: string; readonly how: 'bearer' | 'certificate' | 'cookie' }
  | { readonly actor: null; readonly how: 'bearer' | 'cookie' | 'none'; readonly presented: string | null };

/**
 * Who may use the admin API and the dashboard: a bearer token, an admin
 * client certificate, or a dashboard session. Credentials are always checked
 * first, so a correct one is accepted whatever others tried. Wrong ones are
 * counted per presented credential (by its hash), per address and over all
 * callers: past a limit the wrong ones are answered 429 instead of 401.
 */
export class AdminGate {
  readonly sessions: DashboardSessions;
  private readonly byCredential = new Map<string, Window>();
  private readonly byAddress = new Map<string, Window>();
  /** The global cap as a token bucket: tokens left, and when it was last filled. */
  private global: { tokens: number; at: number } | null = null;

  constructor(private readonly deps: AdminGateDeps) {
    this.sessions = new DashboardSessions(() => deps.now());
  }

  /** The actor of a request's credentials: the Authorization header, else an admin client certificate, else the session cookie. */
  async identify(request: FastifyRequest): Promise<Identified> {
    const { certificateSubject } = this.deps.who(request);
    const header = request.headers.authorization;
    if (typeof header === 'string') {
      const bearer = /^Bearer\s+/i.test(header) ? header.replace(/^Bearer\s+/i, '') : null;
      const actor = await this.deps.admin.authenticate(bearer, certificateSubject);
      return actor === null ? { actor: null, how: 'bearer', presented: header } : { actor, how: 'bearer' };
    }
    if (certificateSubject !== null) {
      const actor = await this.deps.admin.authenticate(null, certificateSubject);
      if (actor !== null) return { actor, how: 'certificate' };
    }
    const cookie = cookieOf(request, SESSION_COOKIE);
    if (cookie !== null && cookie !== '') {
      const actor = await this.sessions.actorOf(cookie);
      return actor === null ? { actor: null, how: 'cookie', presented: cookie } : { actor, how: 'cookie' };
    }
    return { actor: null, how: 'none', presented: null };
  }

  /** An admin token's actor and its revocation check, or null (the dashboard's sign-in form). */
  signIn(token: string): Promise<{ actor: string; stillValid: () => Promise<boolean> } | null> {
    return this.deps.admin.signIn(token);
  }

  /** The actor of a request to the admin API: 401 (or 429 past the limits) without a valid credential; 403 for a cross-site use of the cookie. */
  async require(request: FastifyRequest): Promise<string> {
    const who = await this.identify(request);
    if (who.actor === null) {
      const { certificateSubject } = this.deps.who(request);
      this.refuse(request, who.presented, who.how === 'none' && certificateSubject === null ? 'no credentials' : 'wrong credentials');
      throw this.deps.fail('UNAUTHORIZED', 'the admin API needs "Authorization: Bearer TOKEN" (see floatd admin token) or an admin client certificate');
    }
    if (who.how === 'cookie') this.checkDashboardRequest(request);
    return who.actor;
  }

  /**
   * Counts a failed authentication (per presented credential, per address and
   * over all callers) and logs it; throws 429 when one of them is past its
   * limit. The caller answers 401 otherwise.
   */
  refuse(request: FastifyRequest, presented: string | null, why: string): void {
    const retryAfterMs = this.failed(request, presented, why);
    if (retryAfterMs !== null) throw this.deps.fail('TOO_MANY_REQUESTS', 'too many failed admin authentications; try again later', { retryAfterMs });
  }

  /** As refuse(), but returns the wait (ms) past a limit, or null, for pages that answer in HTML. */
  failed(request: FastifyRequest, presented: string | null, why: string): number | null {
    const { remote } = this.deps.who(request);
    const now = this.deps.now();
    this.deps.refused(remote, why);
    const credential = presented === null ? 'none' : createHash('sha256').update(presented, 'utf8').digest('base64url');
    const waits = [count(this.byCredential, credential, now), count(this.byAddress, remote, now)];
    const globalWait = this.takeGlobal(now);
    if (globalWait !== null) {
      this.deps.globalCapHit(globalWait);
      waits.push(globalWait);
    }
    const over = waits.filter((w): w is number => w !== null);
    return over.length === 0 ? null : Math.max(...over);
  }

  /** Takes one failure from the global bucket: null if there was room, else the ms until there is. */
  private takeGlobal(now: number): number | null {
    const { perSecond, burst } = GLOBAL_FAILURES;
    const g = this.global ?? { tokens: burst, at: now };
    g.tokens = Math.min(burst, g.tokens + (Math.max(0, now - g.at) * perSecond) / 1000);
    g.at = now;
    this.global = g;
    if (g.tokens >= 1) {
      g.tokens -= 1;
      return null;
    }
    return Math.max(1, Math.ceil(((1 - g.tokens) * 1000) / perSecond));
  }

  /** A request carried by the session cookie that changes something must come from the dashboard itself. */
  private checkDashboardRequest(request: FastifyRequest): void {
    if (request.method === 'GET' || request.method === 'HEAD') return;
    if (request.headers[DASHBOARD_HEADER] !== '1') {
      throw this.deps.fail('FORBIDDEN', `a request signed in by the dashboard's cookie that changes something needs the header "${DASHBOARD_HEADER}: 1" (cross-site requests are refused)`);
    }
    const foreign = foreignOrigin(request, this.deps.secure(request));
    if (foreign !== null) throw this.deps.fail('FORBIDDEN', foreign);
  }
}

/** Counts one failure for `key` in its minute: the ms until the minute is over once past the limit, else null. */
function count(table: Map<string, Window>, key: string, now: number): number | null {
  let entry = table.get(key);
  if (entry === undefined || now - entry.since > FAILURE_WINDOW_MS) {
    if (entry === undefined && table.size >= 10_000) forgetOld(table, now);
    entry = { count: 0, since: now };
    table.set(key, entry);
  }
  entry.count++;
  return entry.count > FAILURES_ALLOWED ? Math.max(1, entry.since + FAILURE_WINDOW_MS - now) : null;
}

function forgetOld(table: Map<string, Window>, now: number): void {
  for (const [key, w] of table) if (now - w.since > FAILURE_WINDOW_MS) table.delete(key);
  if (table.size >= 10_000) table.clear();
}
