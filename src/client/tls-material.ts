import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext, type ConnectionOptions } from 'node:tls';
import type { ServerAddress } from './server-address.js';
import { FloatdError } from '../domain/errors.js';

/** Files the client's TLS uses: the CA to trust, and a certificate with its key to show the server. */
export interface TlsFiles {
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

/** The files' contents, read once and checked. */
export interface TlsMaterial {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

function read(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : (err as Error).message;
    throw new FloatdError('INPUT_INVALID', `${what} ${file} cannot be read: ${why}`);
  }
}

/**
 * Reads and checks the files, so that a wrong path or a key that does not go
 * with its certificate is said at once rather than as an unreachable server.
 * Throws an Error naming the file.
 */
export function readTlsFiles(files: TlsFiles): TlsMaterial {
  if ((files.certFile === undefined) !== (files.keyFile === undefined)) {
    throw new FloatdError('INPUT_INVALID', 'a client certificate needs its key: give certFile and keyFile together');
  }
  const material: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  if (files.caFile !== undefined) {
    material.ca = read(files.caFile, 'the CA file');
    try {
      new X509Certificate(material.ca);
    } catch {
      throw new FloatdError('INPUT_INVALID', `the CA file ${files.caFile} holds no PEM certificate`);
    }
  }
  if (files.certFile !== undefined && files.keyFile !== undefined) {
    material.cert = read(files.certFile, 'the client certificate');
    material.key = read(files.keyFile, 'the client key');
    try {
      new X509Certificate(material.cert);
    } catch {
      throw new FloatdError('INPUT_INVALID', `the client certificate ${files.certFile} holds no PEM certificate`);
    }
    try {
      createSecureContext({ cert: material.cert, key: material.key });
    } catch (err) {
      const message = (err as Error).message;
      throw new FloatdError('INPUT_INVALID', 
        /key values mismatch/i.test(message)
          ? `the client key ${files.keyFile} does not belong to the client certificate ${files.certFile}`
          : `the client key ${files.keyFile} cannot be used: ${message.replace(/^error:[0-9A-F]+:/, '')}`,
      );
    }
  }
  return material;
}

/**
 * `tls.connect` options for the server at `address`: the given CA (Node.js's
 * trusted CAs when none is given), the client certificate if any, TLS 1.2 at
 * least, and the host name for SNI and the certificate check.
 */
export function tlsConnectOptions(address: ServerAddress, material: TlsMaterial): ConnectionOptions {
  return {
    host: address.host,
    port: address.port,
    // SNI carries host names only; an IP address is still checked against the certificate.
    ...(isIP(address.host) === 0 ? { servername: address.host } : {}),
    minVersion: 'TLSv1.2',
    ...(material.ca !== undefined ? { ca: material.ca } : {}),
    ...(material.cert !== undefined ? { cert: material.cert, key: material.key } : {}),
  };
}

/** Verification failures of the server's certificate (OpenSSL's X509 codes, Node.js's host name check). */
const SERVER_CERT_CODE = /^(?!ERR_SSL_)[A-Z_]*(CERT|ISSUER|SIGNATURE|CHAIN)[A-Z_]*$|^ERR_TLS_CERT_ALTNAME_INVALID$/;

/** A failed TLS handshake said for people: what went wrong, and what to check. */
export function explainConnectError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  // OpenSSL's "…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:file:line:": keep the reason.
  const text = /SSL routines:[^:]*:([^:\n]+)/.exec(err.message)?.[1]?.trim() ?? err.message;
  // The server's alerts first: their codes name certificates too, but this client's.
  if (/alert (certificate required|bad certificate|unknown ca|certificate unknown|certificate revoked|certificate expired|unsupported certificate|access denied)/i.test(text)) {
    return `the server refused this client's certificate (${text}); check the client certificate and key`;
  }
  if (/alert/i.test(text)) return `the server ended the TLS handshake (${text})`;
  if (SERVER_CERT_CODE.test(code)) return `the server's certificate is not trusted: ${text} (${code}); check the CA file and the host name`;
  if (/wrong version number|unsupported protocol|packet length too long|http request/i.test(text)) {
    return `the server did not answer in TLS (${text}); are the address's scheme and port right?`;
  }
  if (code.startsWith('HPE_')) return `the server did not answer in HTTP (${text}); are the address's scheme and port right?`;
  return text;
}
