import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LeaseClient } from '../../src/client/index.js';
import { makeCerts } from '../support/certs.js';
import { FakeClock, tempDir, until } from '../support/helpers.js';
import { call } from '../support/http.js';
import { startServer, type TestServer } from '../support/server.js';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';

const IN_CI = /^(1|true|yes)$/i.test(process.env['CI'] ?? '');

/** Debian's chromium, driven by playwright-core (no browser download). */
function findChromium(): string | null {
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      const path = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
      if (path !== '' && existsSync(path)) return path;
    } catch {
      // not this one
    }
  }
  return null;
}

const CHROMIUM = findChromium();

let server: TestServer | undefined;
const clients: LeaseClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  await server?.stop();
  server = undefined;
});

function webBase(s: TestServer, scheme: 'http' | 'https' = 'http'): string {
  const l = s.floatd.listenerStatus().find((x) => x.scheme === scheme)!;
  return `${scheme}://127.0.0.1:${l.port}`;
}

interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** One request with full control of headers and body (form posts, cookies), over HTTP or HTTPS. */
function raw(url: string, method: 'GET' | 'POST', headers: Record<string, string> = {}, body?: string, tls: RequestOptions = {}): Promise<RawResponse> {
  const u = new URL(url);
  const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(u, { method, ...tls, headers: { ...headers, ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }) }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const form = { 'content-type': 'application/x-www-form-urlencoded' };

async function login(base: string, token: string, tls: RequestOptions = {}): Promise<{ response: RawResponse; cookie: string }> {
  const response = await raw(`${base}/login`, 'POST', form, `token=${encodeURIComponent(token)}`, tls);
  const setCookie = [response.headers['set-cookie'] ?? []].flat()[0] ?? '';
  return { response, cookie: setCookie.split(';')[0]! };
}

describe('the dashboard: sign-in, cookie and CSRF rules', () => {
  it('redirects to the login form without a session, answers 401 to JSON, and keeps the random id of a server-side session (never the token) in an HttpOnly SameSite=Strict cookie', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const base = webBase(server);
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();

    const anonymous = await raw(`${base}/`, 'GET');
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers['location']).toBe('/login');
    expect((await call(`${base}/v1/admin/leases`, 'GET')).status).toBe(401);
    expect((await call(`${base}/v1/admin/reports/usage`, 'GET')).status).toBe(401);

    const page = await raw(`${base}/login`, 'GET');
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body).toContain('name="token"');
    expect(page.body).not.toContain('{{message}}');

    const wrong = await login(base, 'fdt_not-a-token');
    expect(wrong.response.status).toBe(401);
    expect(wrong.response.body).toContain('not an admin token');
    expect(wrong.cookie).toBe('');

    const { response, cookie } = await login(base, token);
    expect(response.status).toBe(303);
    expect(response.headers['location']).toBe('/');
    const flags = String(response.headers['set-cookie']);
    expect(flags).toMatch(/^floatd_admin=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=43200; HttpOnly; SameSite=Strict$/);
    expect(flags).not.toContain('Secure');
    // The cookie is a session id, not the token, and the API does not take it as a token.
    const sessionId = cookie.split('=')[1]!;
    expect(sessionId).not.toBe(token);
    expect(flags).not.toContain(encodeURIComponent(token));
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, { headers: { authorization: `Bearer ${sessionId}` } })).status).toBe(401);

    const dashboard = await raw(`${base}/`, 'GET', { cookie });
    expect(dashboard.status).toBe(200);
    expect(dashboard.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
    expect(dashboard.body).toContain('/ui/app.js');
    expect(dashboard.body).not.toMatch(/https?:\/\//);
    // The script and style sheet need no session and load nothing from elsewhere.
    for (const asset of ['app.js', 'style.css']) {
      const r = await raw(`${base}/ui/${asset}`, 'GET');
      expect(r.status).toBe(200);
      expect(r.body).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    }
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, { headers: { cookie } })).status).toBe(200);
    const usage = await call(`${base}/v1/admin/reports/usage?by=hour`, 'GET', undefined, { headers: { cookie } });
    expect(usage.status).toBe(200);
    expect((usage.body['report'] as { buckets: unknown[] }).buckets.length).toBeGreaterThanOrEqual(168);
    expect((await call(`${base}/v1/admin/server`, 'GET', undefined, { headers: { cookie } })).body).toMatchObject({ ok: true, ready: true, listeners: expect.any(Array) });
    // The dashboard's keys panel reads the full status through its session.
    expect((await call(`${base}/v1/status`, 'GET', undefined, { headers: { cookie } })).body).toMatchObject({ ok: true, view: 'full', keys: [{ licensee: 'Acme' }] });

    // Changing something with the cookie needs the dashboard's header, from the same origin.
    const holder = new LeaseClient({ server: server.address, user: 'alice', instance: 'a-1', product: 'cad', retryIntervalMs: 0 });
    clients.push(holder);
    const { id } = await holder.acquire();
    const revoke = (headers: Record<string, string>) => raw(`${base}/v1/admin/leases/${id}/revoke`, 'POST', { cookie, 'content-type': 'application/json', ...headers }, JSON.stringify({ reason: 'test' }));
    expect((await revoke({})).status).toBe(403);
    expect((await revoke({ 'x-floatd-dashboard': '1', origin: 'https://evil.example' })).status).toBe(403);
    expect(await server.floatd.store.allLeases()).toHaveLength(1);
    expect((await revoke({ 'x-floatd-dashboard': '1', origin: base })).status).toBe(200);
    expect(await server.floatd.store.allLeases()).toHaveLength(0);

    // A form posted from another site, or from an opaque origin, cannot sign anyone in or out.
    expect((await raw(`${base}/login`, 'POST', { ...form, origin: 'https://evil.example' }, `token=${token}`)).status).toBe(403);
    expect((await raw(`${base}/login`, 'POST', { ...form, origin: 'null' }, `token=${token}`)).status).toBe(403);
    expect((await raw(`${base}/logout`, 'POST', { cookie, origin: 'null' })).status).toBe(403);
    expect((await raw(`${base}/`, 'GET', { cookie })).status).toBe(200);

    // Signing out ends the session: its cookie is good for nothing afterwards.
    const out = await raw(`${base}/logout`, 'POST', { cookie });
    expect(out.status).toBe(303);
    expect(String(out.headers['set-cookie'])).toMatch(/^floatd_admin=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict$/);
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, { headers: { cookie } })).status).toBe(401);
    expect((await raw(`${base}/`, 'GET', { cookie })).status).toBe(303);

    // A revoked token ends its sessions at once.
    const tokens = server.floatd.context.adminTokens;
    const ops = await tokens.create('ops', 'test');
    const session = (await login(base, ops)).cookie;
    expect((await raw(`${base}/`, 'GET', { cookie: session })).status).toBe(200);
    await tokens.revoke('ops', 'test');
    const after = await raw(`${base}/`, 'GET', { cookie: session });
    expect(after.status).toBe(303);
    expect(String(after.headers['set-cookie'])).toContain('Max-Age=0');
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, { headers: { cookie: session } })).status).toBe(401);
  });

  it('limits guessing at the login form: GET /login with made-up session cookies and POST /login with wrong tokens get 429 past the limit; the right token still signs in', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const base = webBase(server);
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const gets: number[] = [];
    for (let i = 0; i < 12; i++) gets.push((await raw(`${base}/login`, 'GET', { cookie: `floatd_admin=guess-${i}` })).status);
    expect(gets.slice(0, 10)).toEqual(Array(10).fill(200));
    expect(gets.slice(10)).toEqual([429, 429]);
    const posts: number[] = [];
    for (let i = 0; i < 3; i++) posts.push((await raw(`${base}/login`, 'POST', form, `token=fdt_guess-${i}`, { localAddress: '127.0.0.2' })).status);
    for (let i = 0; i < 10; i++) await raw(`${base}/login`, 'POST', form, `token=fdt_guess-${i}`, { localAddress: '127.0.0.2' });
    expect(posts).toEqual([401, 401, 401]);
    const limited = await raw(`${base}/login`, 'POST', form, 'token=fdt_another', { localAddress: '127.0.0.2' });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    const { response, cookie } = await login(base, token);
    expect(response.status).toBe(303);
    expect((await raw(`${base}/`, 'GET', { cookie })).status).toBe(200);
  });

  it('ends a session unused for two hours (the server\'s monotonic clock decides)', async () => {
    const clock = new FakeClock(Date.now());
    server = await startServer({ clock, flags: { 'http.listen': ['127.0.0.1:0'] } });
    const base = webBase(server);
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const idle = (await login(base, token)).cookie;
    const busy = (await login(base, token)).cookie;
    clock.advance(3600_000);
    expect((await raw(`${base}/`, 'GET', { cookie: busy })).status).toBe(200);
    clock.advance(3600_000);
    expect((await raw(`${base}/`, 'GET', { cookie: busy })).status).toBe(200);
    expect((await raw(`${base}/`, 'GET', { cookie: idle })).status).toBe(303);
    expect((await call(`${base}/v1/admin/leases`, 'GET', undefined, { headers: { cookie: idle } })).status).toBe(401);
  });

  it('marks the cookie Secure on HTTPS', async () => {
    const certs = makeCerts();
    server = await startServer({ flags: { 'http.listen': [], 'https.listen': ['127.0.0.1:0'], 'tls.certFile': certs.serverCert, 'tls.keyFile': certs.serverKey } });
    const base = webBase(server, 'https');
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const { response, cookie } = await login(base, token, { ca: certs.ca });
    expect(response.status).toBe(303);
    expect(String(response.headers['set-cookie'])).toMatch(/; HttpOnly; SameSite=Strict; Secure$/);
    expect((await raw(`${base}/`, 'GET', { cookie }, undefined, { ca: certs.ca })).status).toBe(200);
  });
});

describe('the dashboard in a real browser (headless Chromium)', () => {
  if (CHROMIUM === null) {
    // Never a silent pass: in CI a missing browser fails; elsewhere the skip is listed by name.
    it.skipIf(!IN_CI)('needs chromium, which is not installed (apt-get install chromium)', () => {
      throw new Error('chromium is not on PATH: the dashboard cannot be tested in a browser');
    });
    return;
  }

  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('signs in, shows the seats status reports, draws the chart, and revokes a lease that reaches its holder', async () => {
    server = await startServer({ seats: 2, flags: { 'http.listen': ['127.0.0.1:0'] } });
    const base = webBase(server);
    const token = readFileSync(server.config.adminTokenFile, 'utf8').trim();
    const alice = new LeaseClient({ server: server.address, user: 'alice', instance: 'a-1', product: 'cad', retryIntervalMs: 0 });
    const bob = new LeaseClient({ server: base, user: 'bob', instance: 'b-1', product: 'cad', retryIntervalMs: 0 });
    const carol = new LeaseClient({ server: server.address, user: 'carol', instance: 'c-1', product: 'cad', retryIntervalMs: 0 });
    clients.push(alice, bob, carol);
    const revoked: string[] = [];
    alice.on('revoked', (e) => revoked.push(e.reason));
    const aliceLease = await alice.acquire();
    await bob.acquire();
    await expect(carol.acquire()).rejects.toMatchObject({ code: 'NO_FREE_SEATS' });

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const requests: string[] = [];
    const problems: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    try {
      await page.goto(`${base}/`);
      expect(new URL(page.url()).pathname).toBe('/login');
      await page.fill('#token', 'fdt_wrong');
      await page.click('button[type=submit]');
      await expect(page.textContent('#message')).resolves.toContain('not an admin token');
      // (The refused sign-in's 401 is the one error the console may show.)
      problems.length = 0;
      await page.fill('#token', token);
      await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
      await page.waitForFunction(() => document.body.dataset['loaded'] === 'true' || document.getElementById('updated')!.textContent!.startsWith('update failed'));
      expect({ updated: await page.textContent('#updated'), problems }).toMatchObject({ updated: expect.stringMatching(/^updated /), problems: [] });
      const cookies = await context.cookies();
      expect(cookies.find((c) => c.name === 'floatd_admin')).toMatchObject({ httpOnly: true, sameSite: 'Strict', secure: false });

      // Seats per product as status reports them.
      const status = await server.floatd.status();
      for (const p of status.products) {
        const card = page.locator(`.seat[data-product="${p.product}"]`);
        await expect(card.locator('.in-use').textContent()).resolves.toBe(String(p.seatsInUse));
        await expect(card.locator('.total').textContent()).resolves.toBe(String(p.seatsTotal));
      }
      expect(status.products.find((p) => p.product === 'cad')).toMatchObject({ seatsInUse: 2, seatsTotal: 2 });

      // The chart: a bar per hour, the last ones as high as the two seats held, and the pool size as a line.
      await page.waitForSelector('#chart svg rect.bar', { state: 'attached' });
      const chart = await page.evaluate(() => {
        const svg = document.querySelector('#chart svg')!;
        const bars = [...svg.querySelectorAll('rect.bar')].map((r) => Number(r.getAttribute('height')));
        return { buckets: Number(svg.getAttribute('data-buckets')), bars, pool: svg.querySelector('polyline.pool')?.getAttribute('points') ?? '' };
      });
      expect(chart.bars.length).toBe(chart.buckets);
      expect(chart.buckets).toBeGreaterThanOrEqual(24);
      expect(chart.bars.at(-1)).toBeGreaterThan(0);
      expect(chart.pool.split(' ').length).toBe(2 * chart.buckets);
      await expect(page.textContent('#usage-total')).resolves.toMatch(/peak 2 of 2/);

      // Leases, denials, keys and health.
      await expect(page.locator('#leases tbody tr').count()).resolves.toBe(2);
      await expect(page.textContent('#leases')).resolves.toContain('alice@');
      await expect(page.textContent('#denials')).resolves.toContain('NO_FREE_SEATS');
      await expect(page.textContent('#denials')).resolves.toContain('carol@');
      await expect(page.textContent('#keys')).resolves.toContain('cad');
      await expect(page.textContent('#health')).resolves.toBe('ready');

      // Revoke alice's lease from the page, keeping her out for 30 minutes: her client hears it with the reason.
      await page.click(`button[data-lease="${aliceLease.id}"]`);
      await page.fill('#revoke-reason', 'needed for the night build');
      await page.selectOption('#revoke-block', '1800');
      await page.click('#revoke-confirm');
      await until(() => revoked.length === 1, 'the holder to be told of the revocation');
      expect(revoked[0]).toMatch(/^by token:local: needed for the night build; the user is kept out of cad until \S+Z$/);
      expect((await server.floatd.store.blocks(Date.now())).map((b) => [b.user, b.scope, b.product])).toEqual([['alice', 'user', 'cad']]);
      await page.waitForFunction(() => document.querySelectorAll('#leases tbody tr').length === 1);
      expect((await server.floatd.store.allLeases()).map((l) => l.user)).toEqual(['bob']);

      const shot = join(tempDir('floatd-dashboard-'), 'dashboard.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(readFileSync(shot).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

      // On a phone: nothing wider than the screen.
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForTimeout(100);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);

      // Signing out leads back to the login form.
      await Promise.all([page.waitForURL(`${base}/login`), page.click('.logout button')]);
      expect((await context.cookies()).find((c) => c.name === 'floatd_admin')).toBeUndefined();

      expect(requests.filter((u) => !u.startsWith(base))).toEqual([]);
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  }, 60_000);
});
