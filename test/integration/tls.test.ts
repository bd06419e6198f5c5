import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, NdjsonDecoder } from '../../src/adapters/tcp/ndjson-codec.js';
import { cli, killChildren, requireBuild, serve } from '../support/cli.js';
import { makeCerts, makeServerCert, type TestCerts } from '../support/certs.js';
import { until } from '../support/helpers.js';
import { call } from '../support/http.js';
import { capturingLogger, startServer, type TestServer } from '../support/server.js';
import type { Logger } from '../../src/adapters/log/logger.js';

beforeAll(requireBuild);
let server: TestServer | undefined;
afterEach(async () => {
  killChildren();
  await server?.stop();
  server = undefined;
});

/** An NDJSON conversation inside TLS: resolves each request with its reply, or rejects if the connection fails or closes. */
async function tlsSession(port: number, options: ConnectionOptions) {
  const socket: TLSSocket = connect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
  const decoder = new NdjsonDecoder(1 << 20);
  const waiting: Array<{ resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }> = [];
  let failure: Error | null = null;
  const fail = (err: Error) => {
    failure ??= err;
    for (const w of waiting.splice(0)) w.reject(failure);
  };
  socket.on('data', (d: Buffer) => {
    for (const f of decoder.push(d)) if (f.kind === 'line') waiting.shift()?.resolve(JSON.parse(f.text) as Record<string, unknown>);
  });
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('connection closed')));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  let id = 0;
  return {
    socket,
    request(op: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        socket.write(encodeFrame({ ...fields, op, id: ++id }));
      });
    },
    close: () => socket.destroy(),
  };
}

async function tlsServer(certs: TestCerts, flags: Record<string, unknown> = {}, logger?: Logger) {
  server = await startServer({
    logger,
    flags: { listeners: ['tls://127.0.0.1:0'], 'https.listen': ['127.0.0.1:0'], 'tls.certFile': certs.serverCert, 'tls.keyFile': certs.serverKey, ...flags },
  });
  const listeners = server.floatd.listenerStatus();
  return { s: server, tlsPort: listeners.find((l) => l.scheme === 'tls')!.port, https: `https://127.0.0.1:${listeners.find((l) => l.scheme === 'https')!.port}` };
}

/** The common name of the certificate a new connection to `port` is served. */
async function servedCommonName(port: number, certs: TestCerts): Promise<string | undefined> {
  const t = await tlsSession(port, { ca: certs.ca });
  const cn = t.socket.getPeerCertificate().subject.CN;
  t.close();
  return typeof cn === 'string' ? cn : cn?.[0];
}

/** Puts a new server certificate (and its key) where the server reads its own from. */
function replaceServerCert(certs: TestCerts, name: string, cn: string): void {
  const next = makeServerCert(certs, name, cn);
  copyFileSync(next.cert, certs.serverCert);
  copyFileSync(next.key, certs.serverKey);
}

/** Whether a full hello round trip works with these client options. */
async function canTalk(port: number, options: ConnectionOptions): Promise<boolean> {
  try {
    const t = await tlsSession(port, options);
    const hello = await t.request('hello', { client: { user: 'alice', instance: 'a-1' } });
    t.close();
    return hello['ok'] === true;
  } catch {
    return false;
  }
}

describe('TLS', () => {
  it('speaks NDJSON inside TLS on a tls:// listener: hello, acquire, renew, release', async () => {
    const certs = makeCerts();
    const { s, tlsPort } = await tlsServer(certs);
    const t = await tlsSession(tlsPort, { ca: certs.ca });
    expect(t.socket.getProtocol()).toBe('TLSv1.3');
    expect(await t.request('hello', { client: { user: 'alice', instance: 'a-1' } })).toMatchObject({ ok: true, server: 'floatd' });
    const acquired = await t.request('acquire', { product: 'cad' });
    const id = (acquired['lease'] as { id: string }).id;
    expect(await t.request('renew', { lease: id })).toMatchObject({ ok: true, lease: { id } });
    expect(await t.request('release', { lease: id })).toEqual({ id: 4, ok: true, released: true });
    expect((await s.floatd.store.queryEvents({ events: ['granted'] }))[0]).toMatchObject({ listener: 'tls', user: 'alice' });
    t.close();
  });

  it('refuses TLS 1.1, a CBC suite and RSA key exchange; accepts TLS 1.2 with an ECDHE AEAD suite; modern refuses TLS 1.2', async () => {
    const certs = makeCerts();
    const { tlsPort, https } = await tlsServer(certs);
    const old = { ca: certs.ca, minVersion: 'TLSv1' as const, maxVersion: 'TLSv1.1' as const, ciphers: 'DEFAULT:@SECLEVEL=0' };
    expect(await canTalk(tlsPort, old)).toBe(false);
    expect(await canTalk(tlsPort, { ca: certs.ca, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384' })).toBe(false);
    expect(await canTalk(tlsPort, { ca: certs.ca, maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256:AES256-GCM-SHA384' })).toBe(false);
    expect(await canTalk(tlsPort, { ca: certs.ca, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' })).toBe(true);
    // The HTTPS listener has the same profile.
    await expect(call(`${https}/healthz`, 'GET', undefined, { ca: certs.ca, maxVersion: 'TLSv1.1', minVersion: 'TLSv1', ciphers: 'DEFAULT:@SECLEVEL=0' })).rejects.toThrow();
    expect((await call(`${https}/healthz`, 'GET', undefined, { ca: certs.ca })).status).toBe(200);
    await server!.stop();
    server = undefined;
    const modern = await tlsServer(certs, { 'tls.profile': 'modern' });
    expect(await canTalk(modern.tlsPort, { ca: certs.ca, maxVersion: 'TLSv1.2' })).toBe(false);
    expect(await canTalk(modern.tlsPort, { ca: certs.ca })).toBe(true);
  });

  it('with client certificates required, refuses a connection without one or with one from another CA', async () => {
    const certs = makeCerts();
    const { tlsPort, https } = await tlsServer(certs, { 'tls.clientCertificates': 'require', 'tls.clientCaFile': certs.caFile });
    expect(await canTalk(tlsPort, { ca: certs.ca })).toBe(false);
    expect(await canTalk(tlsPort, { ca: certs.ca, cert: readPem(certs.strangerCert), key: readPem(certs.strangerKey) })).toBe(false);
    expect(await canTalk(tlsPort, { ca: certs.ca, cert: readPem(certs.clientCert), key: readPem(certs.clientKey) })).toBe(true);
    await expect(call(`${https}/healthz`, 'GET', undefined, { ca: certs.ca })).rejects.toThrow();
    expect((await call(`${https}/healthz`, 'GET', undefined, { ca: certs.ca, cert: readPem(certs.clientCert), key: readPem(certs.clientKey) })).status).toBe(200);
  });

  it('takes the user from the client certificate, and refuses a request naming another with IDENTITY_MISMATCH', async () => {
    const certs = makeCerts();
    const { s, tlsPort, https } = await tlsServer(certs, { 'tls.clientCertificates': 'require', 'tls.clientCaFile': certs.caFile, 'tls.identityFromCertificate': true });
    const mine = { ca: certs.ca, cert: readPem(certs.clientCert), key: readPem(certs.clientKey) };
    const t = await tlsSession(tlsPort, mine);
    expect(await t.request('hello', { client: { user: 'bob', instance: 'b-1' } })).toMatchObject({ ok: false, error: { code: 'IDENTITY_MISMATCH' } });
    expect(await t.request('hello', { client: { instance: 'a-1' } })).toMatchObject({ ok: true });
    expect(await t.request('acquire', { product: 'cad' })).toMatchObject({ ok: true });
    t.close();
    const other = await call(`${https}/v1/leases`, 'POST', { client: { user: 'bob', instance: 'b-1' }, product: 'cad' }, mine);
    expect(other).toMatchObject({ status: 403, body: { error: { code: 'IDENTITY_MISMATCH' } } });
    const own = await call(`${https}/v1/leases`, 'POST', { client: { instance: 'a-2' }, product: 'cad' }, mine);
    expect(own.status).toBe(201);
    expect((await s.floatd.store.allLeases()).map((l) => l.user)).toEqual(['alice', 'alice']);
  });

  it('reloads the certificate for new connections; a broken new pair is refused and the old one stays', async () => {
    const certs = makeCerts();
    const { logger, lines } = capturingLogger();
    const { s, tlsPort } = await tlsServer(certs, {}, logger);
    const subject = () => servedCommonName(tlsPort, certs);
    expect(await subject()).toBe('localhost');
    replaceServerCert(certs, 'next', 'next.example');
    expect(s.floatd.reloadTls()).toMatchObject({ ok: true });
    expect(await subject()).toBe('next.example');
    // A certificate whose key does not match: refused, logged, the pair in use stays.
    const third = makeServerCert(certs, 'third', 'third.example');
    copyFileSync(third.cert, certs.serverCert);
    expect(s.floatd.reloadTls()).toMatchObject({ ok: false, message: expect.stringContaining('tls.keyFile') });
    expect(lines.some((l) => l['level'] === 50 && String(l['msg']).startsWith('TLS certificate reload refused'))).toBe(true);
    expect(await subject()).toBe('next.example');
  });

  it('serve: SIGHUP serves a new certificate to new connections; start-up refuses a missing certificate naming the setting, and warns of one that expires soon', async () => {
    const certs = makeCerts({ serverDays: 10 });
    const data = `${certs.dir}/data`;
    const started = await serve(['--data-dir', data, '--https-listen', '127.0.0.1:0', '--tls-cert', certs.serverCert, '--tls-key', certs.serverKey]);
    await until(() => /"scheme":"https"[^\n]*"msg":"listening"/.test(started.log()), 'the HTTPS listener');
    const port = Number(/"scheme":"https","address":"[^"]+","port":(\d+)/.exec(started.log())![1]);
    expect(started.log()).toMatch(/"level":40,[^\n]*"subject":"CN=localhost"[^\n]*"msg":"the TLS certificate expires in (9|10) days:/);
    const cn = () => servedCommonName(port, certs);
    expect(await cn()).toBe('localhost');
    replaceServerCert(certs, 'next', 'next.example');
    started.child.kill('SIGHUP');
    await until(() => started.log().includes('TLS certificate reloaded'), 'the reload');
    expect(await cn()).toBe('next.example');

    // Refused start-ups are checked in this process; the server above is the built one.
    const missing = await cli(['serve', '--data-dir', `${certs.dir}/d2`, '--listen', 'tls://127.0.0.1:0', '--tls-cert', `${certs.dir}/nope.crt`, '--tls-key', certs.serverKey]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain(`CONFIG_INVALID: setting tls.certFile: cannot read ${certs.dir}/nope.crt: no such file`);
    // Settings are checked before the data directory is made: nothing is left behind.
    expect(existsSync(`${certs.dir}/d2`)).toBe(false);
    const none = await cli(['serve', '--data-dir', `${certs.dir}/d3`, '--https-listen', '127.0.0.1:0']);
    expect(none.err).toMatch(/CONFIG_INVALID: setting https.listen \(command line\) has TLS listeners, which need tls.certFile and tls.keyFile/);
  });
});

function readPem(file: string): string {
  return readFileSync(file, 'utf8');
}
