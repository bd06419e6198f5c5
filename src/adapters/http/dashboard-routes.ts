import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { packageRoot } from '../package-root.js';
import { SESSION_COOKIE, cookieOf, foreignOrigin, type AdminGate } from './admin-gate.js';
import { SESSION_ABSOLUTE_MS } from './dashboard-sessions.js';

export interface DashboardDeps {
  readonly gate: AdminGate;
  readonly secure: (request: FastifyRequest) => boolean;
  /** The folder with the dashboard's files (default: web/ in the package). */
  readonly assetsDir?: string;
}

/** How long the session cookie lasts: as long as the session at most (it may end sooner: idle, sign-out, token revoked, restart). */
const SESSION_SECONDS = SESSION_ABSOLUTE_MS / 1000;

/** No script, style, image or connection but the server's own; no framing; no inline code. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const ASSETS: Record<string, string> = {
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

const html = { summary: '', tags: ['dashboard'], produces: ['text/html'] };

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function hardened(reply: FastifyReply, type: string): FastifyReply {
  return reply
    .type(type)
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'same-origin')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cache-control', type.startsWith('text/html') ? 'no-store' : 'no-cache');
}

/**
 * The dashboard at `/`: static pages and script from the package's web/
 * folder, behind admin authentication. The login form takes an admin token
 * and opens a server-side session whose random id is the cookie (HttpOnly,
 * SameSite=Strict, Secure on HTTPS); the admin API accepts the cookie in place
 * of the Authorization header, but never the id as a token. Requests that
 * change something must also carry the dashboard's own header.
 */
export function registerDashboard(app: FastifyInstance, deps: DashboardDeps): void {
  const dir = deps.assetsDir ?? join(packageRoot(), 'web');
  const read = (name: string) => readFileSync(join(dir, name), 'utf8');
  const ui = new DashboardReplies(deps, { index: read('index.html'), login: read('login.html') });
  const assets = new Map(Object.keys(ASSETS).map((name) => [name, read(name)]));

  void app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    registerPages(scope, deps, ui);
    registerSignInOut(scope, deps, ui);
    scope.get(
      '/ui/:file',
      { schema: { summary: 'The dashboard\'s script, style sheet and icon', tags: ['dashboard'], params: { type: 'object', required: ['file'], properties: { file: { type: 'string', enum: Object.keys(ASSETS) } } } } },
      async (request, reply) => {
        const name = (request.params as { file: string }).file;
        return hardened(reply, ASSETS[name]!).send(assets.get(name));
      },
    );
  });
}

/** What the dashboard's routes answer with: the session cookie, the login page, refusals. */
class DashboardReplies {
  constructor(
    private readonly deps: DashboardDeps,
    private readonly pages: { readonly index: string; readonly login: string },
  ) {}

  cookie(request: FastifyRequest, value: string, maxAge: number): string {
    return `${SESSION_COOKIE}=${encodeURIComponent(value)}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${this.deps.secure(request) ? '; Secure' : ''}`;
  }

  index(reply: FastifyReply): FastifyReply {
    return hardened(reply, 'text/html; charset=utf-8').send(this.pages.index);
  }

  loginPage(reply: FastifyReply, status: number, message: string): FastifyReply {
    return hardened(reply.code(status), 'text/html; charset=utf-8').send(this.pages.login.replace('{{message}}', escapeHtml(message)));
  }

  /** A form posted from another site, or from an opaque origin, is refused: the browser says where it came from. */
  sameOrigin(request: FastifyRequest): boolean {
    return foreignOrigin(request, this.deps.secure(request)) === null;
  }

  tooMany(reply: FastifyReply, retryAfterMs: number): FastifyReply {
    return this.loginPage(reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000)))), 429, 'Too many failed sign-ins; try again in a minute.');
  }
}

/** The dashboard itself and its login form. */
function registerPages(scope: FastifyInstance, deps: DashboardDeps, ui: DashboardReplies): void {
  scope.get('/', { schema: { ...html, summary: 'The dashboard (a login form without a valid session)' } }, async (request, reply) => {
    const who = await deps.gate.identify(request);
    if (who.actor === null) {
      if (who.how === 'cookie') {
        // A session ended since (sign-out, expiry, token revoked, restart), or a forged cookie.
        const wait = deps.gate.failed(request, who.presented, 'unknown dashboard session');
        void reply.header('set-cookie', ui.cookie(request, '', 0));
        if (wait !== null) return ui.tooMany(reply, wait);
      }
      return reply.code(303).header('location', '/login').header('cache-control', 'no-store').send();
    }
    return ui.index(reply);
  });

  scope.get('/login', { schema: { ...html, summary: 'The dashboard\'s login form: an admin token' } }, async (request, reply) => {
    const who = await deps.gate.identify(request);
    if (who.actor !== null) return reply.code(303).header('location', '/').send();
    if (who.how !== 'none') {
      const wait = deps.gate.failed(request, who.presented, 'unknown dashboard session at the login form');
      if (who.how === 'cookie') void reply.header('set-cookie', ui.cookie(request, '', 0));
      if (wait !== null) return ui.tooMany(reply, wait);
    }
    return ui.loginPage(reply, 200, '');
  });
}

/** Signing in with an admin token (a session opens) and out (it closes). */
function registerSignInOut(scope: FastifyInstance, deps: DashboardDeps, ui: DashboardReplies): void {
  scope.post(
    '/login',
    {
      schema: {
        ...html,
        summary: 'Signs in with an admin token: opens a session whose id is the cookie (HttpOnly, SameSite=Strict, Secure on HTTPS) and redirects to /',
        consumes: ['application/x-www-form-urlencoded'],
        body: { type: 'object', required: ['token'], properties: { token: { type: 'string', maxLength: 1000 } } },
      },
    },
    async (request, reply) => {
      if (!ui.sameOrigin(request)) return ui.loginPage(reply, 403, 'This form may only be sent from this server\'s own page.');
      const token = (request.body as { token: string }).token.trim();
      const signedIn = token === '' ? null : await deps.gate.signIn(token);
      if (signedIn === null) {
        const wait = deps.gate.failed(request, token, 'wrong token at the dashboard login');
        if (wait !== null) return ui.tooMany(reply, wait);
        return ui.loginPage(reply, 401, 'That is not an admin token of this server (see floatd admin token create).');
      }
      const id = deps.gate.sessions.open(signedIn.actor, signedIn.stillValid);
      return reply.code(303).header('set-cookie', ui.cookie(request, id, SESSION_SECONDS)).header('location', '/').header('cache-control', 'no-store').send();
    },
  );

  scope.post('/logout', { schema: { ...html, summary: 'Signs out: ends the session, clears its cookie and redirects to /login' } }, async (request, reply) => {
    if (!ui.sameOrigin(request)) return ui.loginPage(reply, 403, 'This form may only be sent from this server\'s own page.');
    const id = cookieOf(request, SESSION_COOKIE);
    if (id !== null && id !== '') deps.gate.sessions.close(id);
    return reply.code(303).header('set-cookie', ui.cookie(request, '', 0)).header('location', '/login').header('cache-control', 'no-store').send();
  });
}
