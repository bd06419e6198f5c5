import { parseServerAddress, type ServerScheme } from '../client/server-address.js';
import { readTlsFiles, type TlsMaterial } from '../client/tls-material.js';
import { FloatdError } from '../domain/errors.js';

/** The client TLS flags `run`, `status` and `admin` share. */
export const TLS_CLIENT_FLAGS = {
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
} as const;

export const TLS_CLIENT_USAGE = '--ca FILE: the CA certificate(s) to trust (default: Node.js\'s built-in CAs); --cert FILE --key FILE: a client certificate and its key';

/** Whether any of --ca, --cert, --key was given. */
export function tlsFlagsGiven(values: Record<string, unknown>): boolean {
  return values['ca'] !== undefined || values['cert'] !== undefined || values['key'] !== undefined;
}

/**
 * The files of --ca, --cert and --key, read and checked (USAGE when cert and
 * key do not go together or the scheme has no TLS; INPUT_INVALID naming a
 * file that cannot be used).
 */
export function tlsMaterialFrom(values: Record<string, unknown>, scheme: ServerScheme, server: string): TlsMaterial {
  if ((values['cert'] === undefined) !== (values['key'] === undefined)) throw new FloatdError('USAGE', '--cert and --key go together: a client certificate needs its key');
  if (!tlsFlagsGiven(values)) return {};
  if (scheme !== 'tls' && scheme !== 'https') throw new FloatdError('USAGE', `--ca, --cert and --key are for tls:// and https:// servers; "${server}" is not one`);
  try {
    return readTlsFiles({ caFile: values['ca'] as string | undefined, certFile: values['cert'] as string | undefined, keyFile: values['key'] as string | undefined });
  } catch (err) {
    throw new FloatdError('INPUT_INVALID', (err as Error).message);
  }
}

/**
 * The admin API's base URL from --server. The admin API is on the web
 * endpoint, so an address without a scheme is `http://host[:8990]`, or
 * `https://host[:8443]` when TLS flags (--ca, --cert) are given; NDJSON
 * addresses (`tls://`) are refused, naming what to write instead.
 */
export function adminUrl(server: string, tls: boolean): { url: string; scheme: 'http' | 'https' } {
  const text = server.trim();
  const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text) ? text : `${tls ? 'https' : 'http'}://${text}`;
  let address;
  try {
    address = parseServerAddress(withScheme);
  } catch (err) {
    throw new FloatdError('USAGE', `--server: ${(err as Error).message.replace('host[:port], tls://host[:port], ', '')}`);
  }
  if (address.scheme !== 'http' && address.scheme !== 'https') {
    throw new FloatdError('USAGE', `--server "${server}": the admin API is on the web endpoint, http://host[:port] or https://host[:port] (a bare host:port means http://, or https:// with --ca or --cert); ${address.scheme}:// is the NDJSON protocol`);
  }
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return { url: `${address.scheme}://${host}:${address.port}`, scheme: address.scheme };
}
