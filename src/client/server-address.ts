import { DEFAULT_PORT, parseHostPort } from '../config/listen-address.js';
import { FloatdError } from '../domain/errors.js';

/** How the client talks to the server: NDJSON over TCP or TLS, or the web endpoint's lease API. */
export type ServerScheme = 'tcp' | 'tls' | 'http' | 'https';

export interface ServerAddress {
  readonly scheme: ServerScheme;
  /** Never empty: a missing host means this machine. */
  readonly host: string;
  readonly port: number;
  /** True for `tls://` and `https://`. */
  readonly secure: boolean;
  /** As the address was written, for messages. */
  readonly text: string;
}

/** The default port of each scheme (HTTP-API.md): a bare host means these. */
export const DEFAULT_PORTS: Readonly<Record<ServerScheme, number>> = { tcp: DEFAULT_PORT, tls: 8991, http: 8990, https: 8443 };

/**
 * Parses a server address as clients write it: `host[:port]` (NDJSON over TCP,
 * port 8989), `tls://host[:port]` (NDJSON inside TLS, 8991), `https://host[:port]`
 * (8443) or `http://host[:port]` (8990). IPv6 addresses go in brackets. Throws
 * INPUT_INVALID with a message that says what is wrong.
 */
export function parseServerAddress(text: string): ServerAddress {
  const s = text.trim();
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(s);
  const scheme = (m?.[1]?.toLowerCase() ?? 'tcp') as ServerScheme;
  if (!(scheme in DEFAULT_PORTS) || (m !== null && scheme === 'tcp')) {
    throw new FloatdError('INPUT_INVALID', `"${m?.[1]}://" is not a floatd address; write host[:port], tls://host[:port], https://host[:port] or http://host[:port]`);
  }
  let rest = m?.[2] ?? s;
  // A URL may end in "/"; anything more (a path, a query, a user) is not part of a server address.
  if (m !== null && rest.endsWith('/')) rest = rest.slice(0, -1);
  if (/[/?#@]/.test(rest)) throw new FloatdError('INPUT_INVALID', `"${s}": give the server as ${scheme === 'tcp' ? '' : `${scheme}://`}host[:port], without a path, query or user`);
  const { host, port } = parseHostPort(rest, DEFAULT_PORTS[scheme]);
  return { scheme, host: host === '' ? 'localhost' : host, port, secure: scheme === 'tls' || scheme === 'https', text: s };
}
