import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NO_LEASE_STATUS } from '../../src/cli/run.js';
import { cli, floatdAsync, killChildren, requireBuild } from '../support/cli.js';
import { makeCerts, type TestCerts } from '../support/certs.js';
import { startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

let certs: TestCerts;
beforeEach(() => {
  certs = makeCerts();
});

/** A real floatd with a tls:// and an HTTPS listener; `flags` may ask for client certificates. */
async function server(flags: Record<string, unknown> = {}): Promise<{ s: TestServer; tls: string; https: string }> {
  const s = await startServer({
    flags: { listeners: ['tls://127.0.0.1:0'], 'https.listen': ['127.0.0.1:0'], 'tls.certFile': certs.serverCert, 'tls.keyFile': certs.serverKey, ...flags },
  });
  servers.push(s);
  const port = (scheme: string) => s.floatd.listenerStatus().find((l) => l.scheme === scheme)!.port;
  return { s, tls: `tls://127.0.0.1:${port('tls')}`, https: `https://127.0.0.1:${port('https')}` };
}

const node = process.execPath;

describe('floatd run over TLS and HTTPS', () => {
  it('runs the command under a lease taken over https://, trusting the CA it is given, and releases it', async () => {
    const { s, https } = await server();
    const r = await floatdAsync(['run', '--server', https, '--ca', certs.caFile, '--user', 'ci', '--', node, '-e', 'console.log("running"); process.exit(3)']);
    expect(r).toMatchObject({ code: 3, out: 'running' });
    expect(r.err).toMatch(/^floatd run: lease \S+ on cad held \(renewing every 15 min\); starting \S*node\n/);
    expect(r.err).toMatch(/exited with status 3; lease \S+ released$/);
    expect((await s.floatd.store.queryEvents({ user: 'ci' })).map((e) => [e.event, e.listener])).toEqual([
      ['granted', 'https'],
      ['released', 'https'],
    ]);
  });

  it('shows a client certificate to a tls:// listener that requires one', async () => {
    const { s, tls } = await server({ 'tls.clientCertificates': 'require', 'tls.clientCaFile': certs.caFile });
    const r = await floatdAsync(['run', '--server', tls, '--ca', certs.caFile, '--cert', certs.clientCert, '--key', certs.clientKey, '--user', 'ci', '--', node, '-e', 'process.exit(0)']);
    expect(r, r.err).toMatchObject({ code: 0 });
    expect((await s.floatd.store.queryEvents({ user: 'ci' })).map((e) => [e.event, e.listener])).toEqual([
      ['granted', 'tls'],
      ['released', 'tls'],
    ]);
  });

  it(`exits ${NO_LEASE_STATUS} without running the command when the server's certificate is not trusted, saying why once`, async () => {
    const { s, tls, https } = await server();
    const cmd = ['--', node, '-e', 'console.log("ran")'];
    const other = join(certs.dir, 'other-ca.crt');
    const runs = await Promise.all([tls, https].map((address) => floatdAsync(['run', '--server', address, '--ca', other, '--retry-seconds', '0', ...cmd])));
    for (const [r, address] of runs.map((r, i) => [r, [tls, https][i]!] as const)) {
      expect(r, r.err).toMatchObject({ code: NO_LEASE_STATUS, out: '' });
      expect(r.err).toBe(
        `floatd run: no lease, so ${node} was not started: SERVER_UNREACHABLE: cannot reach floatd at ${address}: ` +
          "the server's certificate is not trusted: unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE); check the CA file and the host name",
      );
    }
    expect(await s.floatd.store.allLeases()).toEqual([]);
  });

  it('says what is wrong with its TLS flags: usage (2), or a file it cannot use (1), naming it', async () => {
    const missing = join(certs.dir, 'missing.pem');
    const [noKey, plain, unreadable, mismatched] = await Promise.all([
      cli(['run', '--server', 'tls://127.0.0.1:1', '--cert', certs.clientCert, '--', 'true']),
      cli(['run', '--server', '127.0.0.1:1', '--ca', certs.caFile, '--', 'true']),
      cli(['run', '--server', 'https://127.0.0.1:1', '--ca', missing, '--', 'true']),
      cli(['run', '--server', 'tls://127.0.0.1:1', '--cert', certs.clientCert, '--key', certs.serverKey, '--', 'true']),
    ]);
    expect(noKey).toMatchObject({ code: 2, err: 'floatd run: USAGE: --cert and --key go together: a client certificate needs its key' });
    expect(plain).toMatchObject({ code: 2, err: 'floatd run: USAGE: --ca, --cert and --key are for tls:// and https:// servers; "127.0.0.1:1" is not one' });
    expect(unreadable).toMatchObject({ code: 1, err: `floatd run: INPUT_INVALID: the CA file ${missing} cannot be read: no such file` });
    expect(mismatched).toMatchObject({ code: 1, err: `floatd run: INPUT_INVALID: the client key ${certs.serverKey} does not belong to the client certificate ${certs.clientCert}` });
    const help = await cli(['run', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('tls://HOST[:PORT]');
    expect(help.out).toContain('https://HOST[:PORT]');
    expect(help.out).toMatch(/--ca FILE.*\n.*--cert FILE --key FILE/);
  });
});
