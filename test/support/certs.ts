import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

const SERVER_EXT = 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n';

/** The certificates openssl made in this process, by the server certificate's days (kept until the process exits). */
const made = new Map<number, string>();

function madeOnce(serverDays: number): string {
  const cached = made.get(serverDays);
  if (cached !== undefined) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'floatd-certs-made-'));
  if (made.size === 0) process.once('exit', () => made.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const first = made.values().next();
  if (first.done) {
    ca(dir, 'test-ca');
    ca(dir, 'other-ca');
    leaf(dir, 'client', 'test-ca', 'alice', 'extendedKeyUsage=clientAuth\n');
    leaf(dir, 'stranger', 'other-ca', 'alice', 'extendedKeyUsage=clientAuth\n');
  } else {
    // The same CAs and client certificates; only the server certificate differs.
    cpSync(first.value, dir, { recursive: true });
  }
  leaf(dir, 'server', 'test-ca', 'localhost', SERVER_EXT, serverDays);
  made.set(serverDays, dir);
  return dir;
}

/**
 * Real certificates made with openssl: a CA, a server certificate for localhost/127.0.0.1, client
 * certificates. openssl runs once per test file (per server certificate lifetime): no test depends on a
 * key of its own, and each gets a copy in a folder of its own, so what one adds there (makeServerCert)
 * no other test sees.
 */
export function makeCerts(options: { serverDays?: number } = {}): TestCerts {
  const dir = tempDir('floatd-certs-');
  cpSync(madeOnce(options.serverDays ?? 30), dir, { recursive: true });
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
