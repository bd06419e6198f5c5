import { constants, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions, type TLSSocket, type TlsOptions } from 'node:tls';
import { FloatdError } from '../../domain/errors.js';

export interface TlsSettings {
  readonly certFile: string;
  readonly keyFile: string;
  readonly clientCaFile: string | null;
  readonly clientCertificates: 'off' | 'request' | 'require';
  readonly profile: 'intermediate' | 'modern';
}

export interface CertificateInfo {
  readonly subject: string;
  readonly issuer: string;
  readonly validFrom: number;
  readonly validTo: number;
  readonly fingerprint256: string;
}

/** What a verified client certificate says about its holder. */
export interface PeerCertificate {
  readonly subject: string;
  readonly commonName: string | null;
}

/**
 * The profile of HTTP-API.md ("intermediate"): TLS 1.2 and 1.3, on 1.2 only
 * ECDHE key exchange with AEAD ciphers, the server's order, X25519/P-256/P-384,
 * no renegotiation, no compression, session resumption on. "modern" is TLS 1.3
 * alone. TLS 1.3 suites are named too: naming only 1.2 ones would turn 1.3 off.
 */
const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];
const TLS12_SUITES = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
];

function profileOptions(profile: TlsSettings['profile']): TlsOptions {
  return {
    minVersion: profile === 'modern' ? 'TLSv1.3' : 'TLSv1.2',
    ciphers: [...TLS13_SUITES, ...(profile === 'modern' ? [] : TLS12_SUITES)].join(':'),
    honorCipherOrder: true,
    ecdhCurve: 'X25519:P-256:P-384',
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_NO_COMPRESSION,
    sessionTimeout: 300,
  };
}

function readSetting(file: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new FloatdError('CONFIG_INVALID', `setting ${setting}: cannot read ${file}: ${why}`, { setting });
  }
}

/**
 * The server's certificate, key and client-certificate policy, shared by every
 * TLS listener (HTTPS and tls:// NDJSON). `reload()` re-reads the files and
 * hands the new pair to every listener for new connections; a bad new pair is
 * refused and the one in use stays.
 */
export class TlsContext {
  private readonly servers = new Set<{ setSecureContext(options: SecureContextOptions): void }>();
  private secure!: SecureContextOptions;
  private cert!: CertificateInfo;
  private stamp = '';

  constructor(readonly settings: TlsSettings) {
    this.load();
  }

  /** Options for `tls.createServer` / `https.createServer`. */
  serverOptions(handshakeTimeoutMs: number): TlsOptions {
    return {
      ...profileOptions(this.settings.profile),
      ...this.secure,
      requestCert: this.settings.clientCertificates !== 'off',
      rejectUnauthorized: this.settings.clientCertificates === 'require',
      handshakeTimeout: handshakeTimeoutMs,
    };
  }

  certificate(): CertificateInfo {
    return this.cert;
  }

  /** Serves new connections of `server` from this context, through reloads too. */
  register(server: { setSecureContext(options: SecureContextOptions): void }): void {
    this.servers.add(server);
  }

  unregister(server: { setSecureContext(options: SecureContextOptions): void }): void {
    this.servers.delete(server);
  }

  /** True when a file changed since it was last read (checked by the server every second). */
  changed(): boolean {
    return this.fileStamp() !== this.stamp;
  }

  /** Re-reads the files; throws CONFIG_INVALID (the pair in use stays) or applies them to every listener. */
  reload(): CertificateInfo {
    const before = { secure: this.secure, cert: this.cert };
    try {
      this.load();
    } catch (err) {
      this.secure = before.secure;
      this.cert = before.cert;
      // Do not retry the same broken files every second: wait for the next change.
      this.stamp = this.fileStamp();
      throw err;
    }
    const options = { ...profileOptions(this.settings.profile), ...this.secure };
    for (const server of this.servers) server.setSecureContext(options);
    return this.cert;
  }

  private fileStamp(): string {
    return [this.settings.certFile, this.settings.keyFile, this.settings.clientCaFile]
      .map((f) => {
        if (f === null) return '';
        try {
          const s = statSync(f);
          return `${s.mtimeMs}:${s.size}:${s.ino}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  }

  private load(): void {
    this.stamp = this.fileStamp();
    const certPem = readSetting(this.settings.certFile, 'tls.certFile');
    const keyPem = readSetting(this.settings.keyFile, 'tls.keyFile');
    const ca = this.settings.clientCaFile === null ? undefined : readSetting(this.settings.clientCaFile, 'tls.clientCaFile');
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(certPem);
    } catch {
      throw new FloatdError('CONFIG_INVALID', `setting tls.certFile: ${this.settings.certFile} holds no PEM certificate`, { setting: 'tls.certFile' });
    }
    if (ca !== undefined) {
      try {
        new X509Certificate(ca);
      } catch {
        throw new FloatdError('CONFIG_INVALID', `setting tls.clientCaFile: ${this.settings.clientCaFile} holds no PEM certificate`, { setting: 'tls.clientCaFile' });
      }
    }
    const secure: SecureContextOptions = { cert: certPem, key: keyPem, ...(ca !== undefined ? { ca } : {}) };
    try {
      createSecureContext(secure);
    } catch (err) {
      const message = (err as Error).message;
      const why = /key values mismatch/i.test(message) ? 'does not match the certificate in tls.certFile' : `cannot be used: ${message}`;
      throw new FloatdError('CONFIG_INVALID', `setting tls.keyFile: ${this.settings.keyFile} ${why}`, { setting: 'tls.keyFile' });
    }
    this.secure = secure;
    this.cert = {
      subject: leaf.subject.replace(/\n/g, ', '),
      issuer: leaf.issuer.replace(/\n/g, ', '),
      validFrom: Date.parse(leaf.validFrom),
      validTo: Date.parse(leaf.validTo),
      fingerprint256: leaf.fingerprint256,
    };
  }
}

/**
 * A TLS connection's verified client certificate, or null (none sent).
 * A certificate that was sent but does not verify is an error: with
 * `clientCertificates: request` such a connection is closed.
 */
export function peerCertificate(socket: TLSSocket): PeerCertificate | null | 'unverified' {
  const cert = socket.getPeerCertificate();
  if (cert === null || cert === undefined || Object.keys(cert).length === 0) return null;
  if (!socket.authorized) return 'unverified';
  const cn = cert.subject?.CN;
  const subject = Object.entries(cert.subject ?? {})
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
    .join(', ');
  return { subject, commonName: typeof cn === 'string' ? cn : Array.isArray(cn) ? (cn[0] ?? null) : null };
}
