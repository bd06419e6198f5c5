import { isIP } from 'node:net';
import { FloatdError } from '../domain/errors.js';

export const DEFAULT_PORT = 8989;

export interface ListenAddress {
  /** '' means every interface (dual stack where the host has IPv6). */
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `host:port`, `[v6]:port`, `host`, `:port` or `port`. A bare host
 * means port 8989, as clients are told.
 */
export function parseHostPort(text: string, defaultPort = DEFAULT_PORT): ListenAddress {
  const s = text.trim();
  if (s === '') throw new FloatdError('INPUT_INVALID', 'is empty; expected HOST:PORT');
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) throw new FloatdError('INPUT_INVALID', `"${s}" has "[" without "]"`);
    host = s.slice(1, end);
    const rest = s.slice(end + 1);
    if (rest !== '' && !rest.startsWith(':')) throw new FloatdError('INPUT_INVALID', `"${s}": expected ":PORT" after "]"`);
    portText = rest === '' ? undefined : rest.slice(1);
    if (isIP(host) !== 6) throw new FloatdError('INPUT_INVALID', `"${host}" is not an IPv6 address`);
  } else if (/^\d+$/.test(s)) {
    host = '';
    portText = s;
  } else {
    const colons = s.split(':').length - 1;
    if (colons > 1) {
      if (isIP(s) === 6) return { host: s, port: defaultPort };
      throw new FloatdError('INPUT_INVALID', `"${s}": write IPv6 addresses in brackets, e.g. [::1]:8989`);
    }
    const i = s.indexOf(':');
    host = i < 0 ? s : s.slice(0, i);
    portText = i < 0 ? undefined : s.slice(i + 1);
  }
  if (host === '*') host = '';
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new FloatdError('INPUT_INVALID', `"${portText}" is not a port number (0-65535)`);
    port = Number(portText);
  }
  if (host !== '' && isIP(host) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) {
    throw new FloatdError('INPUT_INVALID', `"${host}" is not a host name or IP address`);
  }
  return { host, port };
}

