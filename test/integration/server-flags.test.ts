import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cli, killChildren, requireBuild } from '../support/cli.js';
import { adminCertificateFlags, makeCerts } from '../support/certs.js';
import { tempDir } from '../support/helpers.js';
import { startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
let server: TestServer | undefined;
afterEach(async () => {
  killChildren();
  await server?.stop();
  server = undefined;
});

const portOf = (s: TestServer, scheme: string) => s.floatd.listenerStatus().find((l) => l.scheme === scheme)!.port;

describe('--server and the TLS flags of status and admin', () => {
  it('admin takes a bare host:port (http://, or https:// with --ca or --cert), and a client certificate instead of a token', async () => {
    const certs = makeCerts();
    server = await startServer({
      flags: adminCertificateFlags(certs),
    });
    const tokenFile = server.config.adminTokenFile;
    // No data directory where the CLI runs: everything comes from the flags.
    const elsewhere = join(tempDir(), 'none');
    const admin = (...args: string[]) => cli(['admin', 'leases', '--data-dir', elsewhere, ...args]);
    const plain = await admin('--server', `127.0.0.1:${portOf(server, 'http')}`, '--token-file', tokenFile);
    expect(plain.err).toBe('');
    expect(plain).toMatchObject({ code: 0, out: 'no leases held' });
    expect(await admin('--server', `http://127.0.0.1:${portOf(server, 'http')}/`, '--token-file', tokenFile)).toMatchObject({ code: 0, out: 'no leases held' });
    const secure = await admin('--server', `127.0.0.1:${portOf(server, 'https')}`, '--ca', certs.caFile, '--token-file', tokenFile);
    expect(secure.err).toBe('');
    expect(secure.code).toBe(0);
    const byCertificate = await admin('--server', `localhost:${portOf(server, 'https')}`, '--ca', certs.caFile, '--cert', certs.clientCert, '--key', certs.clientKey);
    expect(byCertificate.err).toBe('');
    expect(byCertificate).toMatchObject({ code: 0, out: 'no leases held' });
    // Wrong doors are said, never INTERNAL.
    const ndjson = await admin('--server', `tls://127.0.0.1:${portOf(server, 'https')}`, '--token-file', tokenFile);
    expect(ndjson.code).toBe(2);
    expect(ndjson.err).toMatch(/USAGE: --server "tls:\/\/127\.0\.0\.1:\d+": the admin API is on the web endpoint/);
    const caOnHttp = await admin('--server', `http://127.0.0.1:${portOf(server, 'http')}`, '--ca', certs.caFile, '--token-file', tokenFile);
    expect(caOnHttp).toMatchObject({ code: 2, err: expect.stringContaining('--ca, --cert and --key are for tls:// and https:// servers') });
    const path = await admin('--server', '127.0.0.1:8990/admin', '--token-file', tokenFile);
    expect(path.code).toBe(2);
    expect(path.err).toMatch(/USAGE: --server: .*without a path/);
    for (const r of [ndjson, caOnHttp, path]) expect(r.err).not.toContain('INTERNAL');
  });

  it('status --server tls:// takes --ca, and --cert/--key for a listener that asks for a client certificate', async () => {
    const certs = makeCerts();
    server = await startServer({
      flags: { listeners: ['tls://127.0.0.1:0'], 'tls.certFile': certs.serverCert, 'tls.keyFile': certs.serverKey, 'tls.clientCertificates': 'require', 'tls.clientCaFile': certs.caFile },
    });
    const address = `tls://localhost:${portOf(server, 'tls')}`;
    const status = (...args: string[]) => cli(['status', '--server', address, ...args]);
    const ok = await status('--ca', certs.caFile, '--cert', certs.clientCert, '--key', certs.clientKey, '--json');
    expect(ok.err).toBe('');
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out)).toMatchObject({ mode: 'licensed' });
    const untrusted = await status();
    expect(untrusted.code).toBe(1);
    expect(untrusted.err).toMatch(/SERVER_UNREACHABLE: .*certificate is not trusted/);
    const noClientCert = await status('--ca', certs.caFile);
    expect(noClientCert.code).toBe(1);
    expect(noClientCert.err).toMatch(/SERVER_UNREACHABLE/);
    expect(await status('--ca', join(certs.dir, 'missing.crt'))).toMatchObject({ code: 1, err: expect.stringContaining('INPUT_INVALID: the CA file') });
    expect(await status('--cert', certs.clientCert)).toMatchObject({ code: 2, err: expect.stringContaining('--cert and --key go together') });
    const plainWithCa = await cli(['status', '--server', '127.0.0.1:8989', '--ca', certs.caFile]);
    expect(plainWithCa).toMatchObject({ code: 2, err: expect.stringContaining('--ca, --cert and --key are for tls:// and https:// servers') });
  });
});
