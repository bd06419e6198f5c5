import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers.js';

export interface TestCerts {
  readonly dir: string;
  /** The CA that signed the server and client certificates. */
  readonly caFile: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** A client certificate for user "alice" from the same CA. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** A client certificate for "alice" from another CA. */
  readonly strangerCert: string;
  readonly strangerKey: string;
  readonly ca: Buffer;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function ca(dir: string, name: string): void {
  openssl(['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '30', '-subj', `/CN=${name}`], dir);
}

function leaf(dir: string, name: string, signer: string, cn: string, ext: string, days = 30): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.crt`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', String(days), '-extfile', `${name}.ext`], dir);
}

/** Real certificates made with openssl for this test: a CA, a server certificate for localhost/127.0.0.1, client certificates. */
export function makeCerts(options: { serverDays?: number } = {}): TestCerts {
  const dir = tempDir('floatd-certs-');
  ca(dir, 'test-ca');
  ca(dir, 'other-ca');
  leaf(dir, 'server', 'test-ca', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n', options.serverDays ?? 30);
  leaf(dir, 'client', 'test-ca', 'alice', 'extendedKeyUsage=clientAuth\n');
  leaf(dir, 'stranger', 'other-ca', 'alice', 'extendedKeyUsage=clientAuth\n');
  const f = (n: string) => join(dir, n);
  return {
    dir,
    caFile: f('test-ca.crt'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
    strangerCert: f('stranger.crt'),
    strangerKey: f('stranger.key'),
    ca: readFileSync(f('test-ca.crt')),
  };
}

/** A second server certificate from the same CA (for reload tests), with its subject's CN. */
export function makeServerCert(certs: TestCerts, name: string, cn: string): { cert: string; key: string } {
  leaf(certs.dir, name, 'test-ca', cn, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  return { cert: join(certs.dir, `${name}.crt`), key: join(certs.dir, `${name}.key`) };
}

/**
 * Server settings for the web endpoint on HTTP and HTTPS (port 0) with `certs`,
 * asking for client certificates and taking CN=alice's as an admin credential.
 */
export function adminCertificateFlags(certs: TestCerts): Record<string, unknown> {
  return {
    'http.listen': ['127.0.0.1:0'],
    'https.listen': ['127.0.0.1:0'],
    'tls.certFile': certs.serverCert,
    'tls.keyFile': certs.serverKey,
    'tls.clientCertificates': 'request',
    'tls.clientCaFile': certs.caFile,
    'admin.certificateSubjects': ['CN=alice'],
  };
}
