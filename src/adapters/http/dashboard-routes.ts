import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { packageRoot } from '../package-root.js';
import { SESSION_COOKIE, cookieOf, type AdminGate } from './admin-routes.js';

export interface DashboardDeps {
  readonly gate: AdminGate;
  readonly who: (request: FastifyRequest) => { remote: string; certificateSubject: string | null };
  readonly secure: (request: FastifyRequest) => boolean;
  /** The folder with the dashboard's files (default: web/ in the package). */
  readonly assetsDir?: string;
}

/** How long the session cookie lasts; the token it holds is checked on every request and may be revoked sooner. */
const SESSION_SECONDS = 12 * 3600;

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
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cache-control', type.startsWith('text/html') ? 'no-store' : 'no-cache');
}

/**
 * The dashboard at `/`: static pages and script from the package's web/
 * folder, behind admin authentication. The login form takes an admin token
 * and keeps it in a cookie (HttpOnly, SameSite=Strict, Secure on HTTPS) that
 * the admin API accepts in place of the Authorization header; its requests
 * that change something must also carry the dashboard's own header.
 */
export function registerDashboard(app: FastifyInstance, deps: DashboardDeps): void {
  const dir = deps.assetsDir ?? join(packageRoot(), 'web');
  const read = (name: string) => readFileSync(join(dir, name), 'utf8');
  const pages = { index: read('index.html'), login: read('login.html') };
  const assets = new Map(Object.keys(ASSETS).map((name) => [name, read(name)]));

  const cookie = (request: FastifyRequest, value: string, maxAge: number) =>
    `${SESSION_COOKIE}=${encodeURIComponent(value)}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${deps.secure(request) ? '; Secure' : ''}`;
  const loginPage = (reply: FastifyReply, status: number, message: string) =>
    hardened(reply.code(status), 'text/html; charset=utf-8').send(pages.login.replace('{{message}}', escapeHtml(message)));
  /** A form posted from another site is refused: the browser says where it came from. */
  const sameOrigin = (request: FastifyRequest) => {
    const origin = request.headers.origin;
    return origin === undefined || origin === 'null' || origin === `${deps.secure(request) ? 'https' : 'http'}://${request.headers.host ?? ''}`;
  };

  void app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });

    scope.get('/', { schema: { ...html, summary: 'The dashboard (a login form without a valid session)' } }, async (request, reply) => {
      deps.gate.throttle(deps.who(request).remote);
      const { actor, how } = deps.gate.actorOf(request);
      if (actor === null) {
        if (how === 'cookie') {
          // A token revoked since, or a forged cookie.
          deps.gate.failed(deps.who(request).remote, 'wrong dashboard session cookie');
          void reply.header('set-cookie', cookie(request, '', 0));
        }
        return reply.code(303).header('location', '/login').header('cache-control', 'no-store').send();
      }
      return hardened(reply, 'text/html; charset=utf-8').send(pages.index);
    });

    scope.get('/login', { schema: { ...html, summary: 'The dashboard\'s login form: an admin token' } }, async (request, reply) => {
      if (deps.gate.actorOf(request).actor !== null) return reply.code(303).header('location', '/').send();
      return loginPage(reply, 200, '');
    });

    scope.post(
      '/login',
      {
        schema: {
          ...html,
          summary: 'Signs in with an admin token: sets the session cookie (HttpOnly, SameSite=Strict, Secure on HTTPS) and redirects to /',
          consumes: ['application/x-www-form-urlencoded'],
          body: { type: 'object', required: ['token'], properties: { token: { type: 'string', maxLength: 1000 } } },
        },
      },
      async (request, reply) => {
        const remote = deps.who(request).remote;
        if (!sameOrigin(request)) return loginPage(reply, 403, 'This form may only be sent from this server\'s own page.');
        deps.gate.throttle(remote);
        const token = (request.body as { token: string }).token.trim();
        const actor = token === '' ? null : deps.gate.authenticateToken(token);
        if (actor === null) {
          deps.gate.failed(remote, 'wrong token at the dashboard login');
          return loginPage(reply, 401, 'That is not an admin token of this server (see floatd admin token create).');
        }
        return reply.code(303).header('set-cookie', cookie(request, token, SESSION_SECONDS)).header('location', '/').header('cache-control', 'no-store').send();
      },
    );

    scope.post('/logout', { schema: { ...html, summary: 'Signs out: clears the session cookie and redirects to /login' } }, async (request, reply) => {
      if (!sameOrigin(request)) return loginPage(reply, 403, 'This form may only be sent from this server\'s own page.');
      return reply.code(303).header('set-cookie', cookie(request, '', 0)).header('location', '/login').header('cache-control', 'no-store').send();
    });

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
