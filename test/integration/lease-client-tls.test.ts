import { spawn } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { SystemClock } from '../../src/adapters/clock/system-clock.js';
import { newEd25519KeyPair } from '../../src/adapters/crypto/keys.js';
import { withLicensing } from '../../src/app/inspect.js';
import {
  HttpTransport,
  LeaseClient,
  LeaseClientError,
  readTlsFiles,
  TcpTransport,
  TransportError,
  type DenialInfo,
  type LeaseClientOptions,
  type Reply,
  type Transport,
} from '../../src/client/index.js';
import { makeCerts, type TestCerts } from '../support/certs.js';
import { advanceUntil, FakeClock } from '../support/fake-clock.js';
import { until } from '../support/helpers.js';
import { leaseOf, startServer, type TestServer, type TestServerOptions } from '../support/server.js';

const servers: TestServer[] = [];
const clients: LeaseClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.stop();
});

// Made afresh for each test: they live in a temp directory that goes after each one.
let certs: TestCerts;
beforeEach(() => {
  certs = makeCerts();
});

/** The CA that signed only the "stranger" certificate: not the server's. */
const otherCa = () => join(certs.dir, 'other-ca.crt');

interface TlsServer {
  readonly s: TestServer;
  /** tls://127.0.0.1:PORT, https://127.0.0.1:PORT, 127.0.0.1:PORT (plain TCP). */
  readonly tls: string;
  readonly https: string;
  readonly tcp: string;
}

/** A real floatd with a plain TCP, a tls:// and an HTTPS listener, on port 0. */
async function tlsServer(opts: TestServerOptions = {}): Promise<TlsServer> {
  const s = await startServer({
    ...opts,
    flags: {
      leaseSeconds: 60,
      listeners: ['127.0.0.1:0', 'tls://127.0.0.1:0'],
      'https.listen': ['127.0.0.1:0'],
      'tls.certFile': certs.serverCert,
      'tls.keyFile': certs.serverKey,
      ...opts.flags,
    },
  });
  servers.push(s);
  const port = (scheme: string) => s.floatd.listenerStatus().find((l) => l.scheme === scheme)!.port;
  return { s, tls: `tls://127.0.0.1:${port('tls')}`, https: `https://127.0.0.1:${port('https')}`, tcp: `127.0.0.1:${port('tcp')}` };
}

function client(opts: Partial<LeaseClientOptions> & { server: string }): LeaseClient {
  const c = new LeaseClient({ user: 'alice', instance: `i-${clients.length}`, caFile: certs.caFile, ...opts });
  clients.push(c);
  return c;
}


function record(c: LeaseClient, clock?: FakeClock): Array<[string, number]> {
  const seen: Array<[string, number]> = [];
  for (const e of ['acquired', 'renewed', 'lost', 'regained', 'revoked', 'denied'] as const) c.on(e, () => seen.push([e, clock?.now() ?? 0]));
  return seen;
}
const names = (seen: Array<[string, number]>) => seen.map(([e]) => e);

/**
 * Replaces the server's license key with a new one, as `floatd license add` then `license remove`
 * do, and has the server notice at once: leases of the removed key are revoked, and seats are
 * had again from the new one.
 */
async function removeKey(s: TestServer): Promise<void> {
  const keyId = (await s.floatd.status()).keys[0]!.id;
  const renewal = await s.vendor.issue({ product: 'cad', seats: 5 });
  await withLicensing(s.config, new SystemClock(), async (l) => {
    await l.add(renewal);
    await l.remove(keyId);
  });
  await s.floatd.reloadLicenses();
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('LeaseClient over tls://', () => {
  it('acquires, renews at half-lease, hears a revocation at once, regains, and releases, all inside TLS', async () => {
    const clock = new FakeClock(Date.now());
    const { s, tls } = await tlsServer({ clock });
    const c = client({ server: tls, clock });
    const seen = record(c, clock);
    const start = clock.now();
    const lease = await c.acquire();
    expect(lease).toMatchObject({ leaseMs: 60_000, renewAfterMs: 30_000, product: 'cad' });
    expect(await s.floatd.store.allLeases()).toMatchObject([{ id: lease.id, listener: 'tls', user: 'alice' }]);

    clock.advance(29_999);
    await tick();
    expect(names(seen)).toEqual(['acquired']);
    clock.advance(1);
    await once(c, 'renewed');
    expect(seen).toEqual([
      ['acquired', start],
      ['renewed', start + 30_000],
    ]);

    // The server pushes the revocation down the TLS connection: no clock needs to move for the client to know.
    const at = clock.now();
    await removeKey(s);
    await until(() => names(seen).includes('regained'), 'the lease regained');
    expect(seen.slice(2)).toEqual([
      ['revoked', at],
      ['regained', at],
    ]);
    const again = c.lease!;
    expect(again.id).not.toBe(lease.id);
    await c.close();
    expect(await s.floatd.store.allLeases()).toEqual([]);
    expect((await s.floatd.store.queryEvents({ user: 'alice' })).map((e) => [e.event, e.leaseId === lease.id ? 'first' : 'second'])).toEqual([
      ['granted', 'first'],
      ['renewed', 'first'],
      ['revoked', 'first'],
      ['granted', 'second'],
      ['released', 'second'],
    ]);
  });
});

describe('LeaseClient over https://', () => {
  it('acquires, renews at half-lease and releases over the web endpoint, on one kept-alive connection', async () => {
    const reused: boolean[] = [];
    const onResponse = (message: unknown) => void reused.push((message as { request: ClientRequest }).request.reusedSocket);
    diagnostics.subscribe('http.client.response.finish', onResponse);
    onTestFinished(() => void diagnostics.unsubscribe('http.client.response.finish', onResponse));
    const clock = new FakeClock(Date.now());
    const { s, https } = await tlsServer({ clock });
    const c = client({ server: https, clock });
    const seen = record(c, clock);
    let connected = 0;
    c.on('connected', () => connected++);
    const start = clock.now();
    const lease = await c.acquire();
    expect(lease).toMatchObject({ leaseMs: 60_000, renewAfterMs: 30_000, product: 'cad' });
    expect(lease.claims).toMatchObject({ leaseId: lease.id, user: 'alice', instance: c.instance, product: 'cad' });
    expect(await s.floatd.store.allLeases()).toMatchObject([{ id: lease.id, listener: 'https', user: 'alice', instance: c.instance }]);

    clock.advance(29_999);
    await tick();
    expect(names(seen)).toEqual(['acquired']);
    clock.advance(1);
    await once(c, 'renewed');
    clock.advance(30_000);
    await once(c, 'renewed');
    expect(seen).toEqual([
      ['acquired', start],
      ['renewed', start + 30_000],
      ['renewed', start + 60_000],
    ]);
    expect((await s.floatd.store.allLeases())[0]!.expiresAt).toBe(start + 120_000);
    // One GET /v1/server for the whole run: every request reached the server.
    expect(connected).toBe(1);

    await c.close();
    await c.close();
    // GET /v1/server, acquire, two renewals, release: one connection, opened for the first.
    expect(reused).toEqual([false, true, true, true, true]);
    expect(await s.floatd.store.allLeases()).toEqual([]);
    expect((await s.floatd.store.queryEvents({ user: 'alice' })).map((e) => e.event)).toEqual(['granted', 'renewed', 'renewed', 'released']);
    await expect(c.acquire()).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
  });

  it('learns of a revoked lease at its next renewal (LEASE_NOT_FOUND with the reason), reports it revoked, and takes a seat again', async () => {
    const clock = new FakeClock(Date.now());
    const { s, https } = await tlsServer({ clock });
    const c = client({ server: https, clock });
    const seen = record(c, clock);
    const revoked = new Promise<{ leaseId: string; reason: string }>((r) => c.once('revoked', r));
    const start = clock.now();
    const lease = await c.acquire();

    await removeKey(s);
    expect((await s.floatd.store.queryEvents({ user: 'alice', events: ['revoked'] })).map((e) => e.leaseId)).toEqual([lease.id]);
    // Nothing is pushed over HTTP: until it renews, the client still believes it holds the lease.
    clock.advance(29_000);
    for (let i = 0; i < 20; i++) await tick();
    expect(c.lease?.id).toBe(lease.id);
    expect(names(seen)).toEqual(['acquired']);

    // To the renewal at 30 s, and no further: the rest is real I/O, however long a loaded machine takes.
    clock.advance(1_000);
    await advanceUntil(clock, () => names(seen).includes('regained'), 0, 250, 400);
    expect(seen).toEqual([
      ['acquired', start],
      ['revoked', start + 30_000],
      ['regained', start + 30_000],
    ]);
    expect(await revoked).toMatchObject({ leaseId: lease.id, reason: 'its license key was removed' });
    // The server grants from the new key.
    expect(c.lease!.id).not.toBe(lease.id);
    expect(await s.floatd.store.allLeases()).toMatchObject([{ id: c.lease!.id, listener: 'https' }]);
  });

  it('passes refusals through as over TCP: no free seat (409) and a rule denial (403) with its reason', async () => {
    const { https } = await tlsServer({ seats: 1, flags: { 'rules.inline': 'CLT carol BLOCK' } });
    await client({ server: https, user: 'bob' }).acquire();
    const waiting = client({ server: https, retryIntervalMs: 0 });
    const denied = new Promise<DenialInfo>((r) => waiting.once('denied', r));
    await expect(waiting.acquire()).rejects.toMatchObject({ code: 'NO_FREE_SEATS', message: expect.stringContaining('in use') });
    expect(await denied).toMatchObject({ code: 'NO_FREE_SEATS', retryInMs: null });
    await expect(client({ server: https, user: 'carol', retryIntervalMs: 0 }).acquire()).rejects.toMatchObject({ code: 'RULE_DENIED', reason: 'blocked' });
    // A refusal no wait can fix ends acquire() even with retrying on.
    await expect(client({ server: https, product: 'paint' }).acquire()).rejects.toMatchObject({ code: 'UNKNOWN_PRODUCT' });
  });

  it('refuses a server whose lease-signing key is not the pinned one, and takes the pinned one', async () => {
    const { s, https } = await tlsServer();
    const other = await newEd25519KeyPair();
    await expect(client({ server: https, serverPublicKey: other.publicJwk, retryIntervalMs: 5 }).acquire()).rejects.toMatchObject({
      code: 'TOKEN_INVALID',
      message: expect.stringContaining('pinned'),
    });
    const fingerprint = (await s.floatd.status()).serverKeyFingerprint!;
    await expect(client({ server: https, serverKeyFingerprint: fingerprint }).acquire()).resolves.toMatchObject({ product: 'cad' });
  });

  it('lets a product that is done exit while it holds a lease (kept-alive connections do not hold it), releasing it on the way', async () => {
    const { s, https } = await tlsServer();
    const script = `
      import { LeaseClient } from 'floatd/client';
      const c = new LeaseClient({ server: ${JSON.stringify(https)}, caFile: ${JSON.stringify(certs.caFile)}, user: 'leaving', releaseOnExit: true });
      const lease = await c.acquire();
      console.log(lease.id);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '..', '..') });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(killer);
    expect({ code, out }).toMatchObject({ code: 0, out: expect.stringMatching(/^[0-9a-f-]{36}\n$/) });
    expect((await s.floatd.store.queryEvents({ user: 'leaving' })).map((e) => [e.event, e.leaseId, e.listener])).toEqual([
      ['granted', out.trim(), 'https'],
      ['released', out.trim(), 'https'],
    ]);
  });
});

describe('HttpTransport', () => {
  it('gives the replies TcpTransport gives, operation for operation, error bodies included', async () => {
    const { tls, https } = await tlsServer({ seats: 1 });
    const material = readTlsFiles({ caFile: certs.caFile });
    const identity = { user: 'alice', host: 'ws-1', instance: 'same' };
    /** The replies to one conversation, with what differs from run to run (ids, tokens, times) made generic. */
    async function conversation(t: Transport): Promise<unknown[]> {
      const replies: Reply[] = [];
      replies.push(await t.request('hello', { v: 1, client: identity, product: 'cad' }));
      replies.push(await t.request('status'));
      const acquired = await t.request('acquire', { product: 'cad' });
      replies.push(acquired);
      const id = leaseOf(acquired).id;
      // With the lease's secret, as the SDK sends it: HTTP needs it, TCP takes it on any connection.
      const leaseSecret = (acquired as Record<string, unknown>)['leaseSecret'];
      replies.push(await t.request('acquire', { leaseSecret }));
      replies.push(await t.request('renew', { lease: id, leaseSecret }));
      replies.push(await t.request('release', { lease: id, leaseSecret }));
      replies.push(await t.request('release', { lease: id, leaseSecret }));
      replies.push(await t.request('renew', { lease: id, leaseSecret }));
      replies.push(await t.request('renew', { lease: 'no-such-lease' }));
      replies.push(await t.request('acquire', { product: 'paint' }));
      t.close();
      return replies.map((r) => generic(r, id));
    }
    const overTls = await conversation(await TcpTransport.connect(tls, { tls: material }));
    const overHttps = await conversation(new HttpTransport(https, { tls: material }));
    // The web endpoint adds "renewed" to an acquisition (201 or 200); everything else is alike.
    expect(overHttps).toEqual(overTls.map((r, i) => (i === 2 || i === 3 ? { ...(r as object), renewed: i === 3 } : r)));
    expect(overHttps[0]).toMatchObject({ ok: true, server: 'floatd', protocol: 1, publicKey: { kty: 'OKP', crv: 'Ed25519' } });
    expect(overHttps.slice(-3)).toEqual([
      { ok: false, error: { code: 'LEASE_NOT_FOUND', message: '…' } },
      { ok: false, error: { code: 'LEASE_NOT_FOUND', message: '…' } },
      { ok: false, error: { code: 'UNKNOWN_PRODUCT', message: '…' } },
    ]);

    // No free seat: the body's retryAfterMs, as over TCP (the web endpoint sends Retry-After too).
    const holder = new HttpTransport(https, { tls: material });
    await holder.request('hello', { v: 1, client: { user: 'bob', instance: 'b-1' } });
    await holder.request('acquire', {});
    const waiting = new HttpTransport(https, { tls: material });
    await waiting.request('hello', { v: 1, client: identity });
    expect(await waiting.request('acquire', {})).toMatchObject({ ok: false, error: { code: 'NO_FREE_SEATS', retryAfterMs: expect.any(Number) } });
    // What the HTTP lease API has no route for, and what needs hello first, are refusals as over TCP.
    expect(await waiting.request('ping')).toMatchObject({ ok: false, error: { code: 'UNKNOWN_OP' } });
    expect(await new HttpTransport(https, { tls: material }).request('renew', { lease: 'x' })).toMatchObject({ ok: false, error: { code: 'HELLO_REQUIRED' } });
    holder.close();
    waiting.close();
    expect(waiting.closed).toBe(true);
    await expect(waiting.request('status')).rejects.toBeInstanceOf(TransportError);
  });
});

/** A reply with its run-to-run values replaced by their kind, and messages by "…". */
function generic(value: unknown, leaseId: string, key = ''): unknown {
  if (key === 'message' && typeof value === 'string') return '…';
  if (value === leaseId) return '<lease id>';
  if (typeof value === 'number' && key !== 'protocol') return '<number>';
  if (key === 'token' || key === 'version' || key === 'x' || key === 'kid' || key === 'leaseSecret') return '<string>';
  if (Array.isArray(value)) return value.map((v) => generic(v, leaseId));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).filter(([k]) => k !== 'id' || typeof (value as { ok?: unknown }).ok !== 'boolean').map(([k, v]) => [k, generic(v, leaseId, k)]));
  }
  return value;
}

describe('TLS failures are refusals with a reason, never a crash', () => {
  it('a server certificate from another CA, or none trusted at all: SERVER_UNREACHABLE saying so, over tls:// and https://', async () => {
    const { s, tls, https } = await tlsServer();
    for (const server of [tls, https]) {
      for (const caFile of [otherCa(), undefined]) {
        const c = client({ server, retryIntervalMs: 0, caFile });
        const denied = new Promise<DenialInfo>((r) => c.once('denied', r));
        const err = (await c.acquire().catch((e: unknown) => e)) as LeaseClientError;
        expect(err, `${server} with ${caFile ?? 'the built-in CAs'}`).toBeInstanceOf(LeaseClientError);
        expect(err).toMatchObject({
          code: 'SERVER_UNREACHABLE',
          message: `cannot reach floatd at ${server}: the server's certificate is not trusted: unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE); check the CA file and the host name`,
        });
        expect(err.message).not.toMatch(/\n\s+at /);
        expect(await denied).toMatchObject({ code: 'SERVER_UNREACHABLE', retryInMs: null });
      }
    }
    // With retrying on it keeps trying, as for any server it cannot reach, and does not give up.
    const clock = new FakeClock(Date.now());
    const patient = client({ server: tls, caFile: otherCa(), clock });
    const denials: DenialInfo[] = [];
    patient.on('denied', (d) => denials.push(d));
    const pending = patient.acquire();
    await until(() => denials.length >= 1, 'a refusal');
    clock.advance(10_000);
    await until(() => denials.length >= 2, 'a second refusal');
    expect(denials.map((d) => [d.code, d.retryInMs])).toEqual([
      ['SERVER_UNREACHABLE', 10_000],
      ['SERVER_UNREACHABLE', 10_000],
    ]);
    await patient.close();
    await expect(pending).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    expect(await s.floatd.store.allLeases()).toEqual([]);
  });

  it('a server that requires client certificates: taken with the right one, refused without or with a stranger', async () => {
    const { s, tls, https } = await tlsServer({ flags: { 'tls.clientCertificates': 'require', 'tls.clientCaFile': certs.caFile } });
    for (const server of [tls, https]) {
      await expect(client({ server, certFile: certs.clientCert, keyFile: certs.clientKey }).acquire(), server).resolves.toMatchObject({ product: 'cad' });
      await expect(client({ server, retryIntervalMs: 0 }).acquire(), server).rejects.toMatchObject({
        code: 'SERVER_UNREACHABLE',
        message: expect.stringContaining("the server refused this client's certificate (tlsv13 alert certificate required); check the client certificate and key"),
      });
      // The server hangs up on a certificate from another CA (without an alert the client could name).
      await expect(client({ server, retryIntervalMs: 0, certFile: certs.strangerCert, keyFile: certs.strangerKey }).acquire(), server).rejects.toMatchObject({
        code: 'SERVER_UNREACHABLE',
      });
    }
    expect((await s.floatd.store.allLeases()).map((l) => l.listener).sort()).toEqual(['https', 'tls']);
  });

  it('a server that takes the user from the certificate: another user is IDENTITY_MISMATCH, not retried', async () => {
    const { https } = await tlsServer({
      flags: { 'tls.clientCertificates': 'require', 'tls.clientCaFile': certs.caFile, 'tls.identityFromCertificate': true },
    });
    const mine = { certFile: certs.clientCert, keyFile: certs.clientKey };
    await expect(client({ server: https, ...mine, user: 'alice' }).acquire()).resolves.toMatchObject({ claims: { user: 'alice' } });
    const other = client({ server: https, ...mine, user: 'mallory' });
    const denied = new Promise<DenialInfo>((r) => other.once('denied', r));
    await expect(other.acquire()).rejects.toMatchObject({ code: 'IDENTITY_MISMATCH' });
    expect(await denied).toMatchObject({ retryInMs: null });
  });

  it('the wrong door: TLS to a plain port, HTTPS to the NDJSON port, plain HTTP to the HTTPS port are SERVER_UNREACHABLE', async () => {
    const { tls, https, tcp } = await tlsServer();
    const port = (address: string) => address.split(':').at(-1);
    const cases = [
      [`tls://${tcp}`, /: the server did not answer in TLS \(wrong version number\); are the address's scheme and port right\?$/],
      [`https://${tcp}`, /: the server did not answer in TLS \(wrong version number\)/],
      [`https://127.0.0.1:${port(tls)}`, /: the server did not answer in HTTP \(Parse Error: .*\); are the address's scheme and port right\?$/],
      [`http://127.0.0.1:${port(https)}`, /: socket hang up$/],
    ] as const;
    for (const [server, message] of cases) {
      await expect(client({ server, retryIntervalMs: 0, requestTimeoutMs: 3000, ...(server.startsWith('http:') ? { caFile: undefined } : {}) }).acquire(), server).rejects.toMatchObject({
        code: 'SERVER_UNREACHABLE',
        message,
      });
    }
  });

  it('says at once what is wrong with the TLS options, naming the file', () => {
    const make = (opts: Partial<LeaseClientOptions>) => () => new LeaseClient({ server: 'tls://127.0.0.1:1', ...opts });
    const codeOf = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return [(err as LeaseClientError).code, (err as Error).message];
      }
      return null;
    };
    expect(codeOf(make({ caFile: '/nonexistent/ca.pem' }))).toEqual(['INPUT_INVALID', 'the CA file /nonexistent/ca.pem cannot be read: no such file']);
    expect(codeOf(make({ caFile: certs.clientKey }))).toEqual(['INPUT_INVALID', `the CA file ${certs.clientKey} holds no PEM certificate`]);
    expect(codeOf(make({ certFile: certs.clientCert, keyFile: certs.serverKey }))).toEqual([
      'INPUT_INVALID',
      `the client key ${certs.serverKey} does not belong to the client certificate ${certs.clientCert}`,
    ]);
    expect(codeOf(make({ certFile: certs.clientCert }))).toEqual(['BAD_REQUEST', expect.stringContaining('give certFile and keyFile together')]);
    expect(codeOf(() => new LeaseClient({ server: '127.0.0.1:1', caFile: certs.caFile }))).toEqual(['BAD_REQUEST', expect.stringContaining('are for tls:// and https:// servers')]);
    expect(codeOf(() => new LeaseClient({ server: 'http://127.0.0.1:1', caFile: certs.caFile }))).toEqual(['BAD_REQUEST', expect.stringContaining('is plain HTTP')]);
    expect(codeOf(make({ caFile: certs.caFile, certFile: certs.clientCert, keyFile: certs.clientKey }))).toBeNull();
  });
});
