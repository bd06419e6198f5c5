import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { parseHostPort, type ListenAddress } from './listen-address.js';

export interface ListenerConfig extends ListenAddress {
  /** The listener's name, as CLT rules' `port` property sees it. */
  readonly name: string;
  /** NDJSON inside TLS (`tls://HOST:PORT`); HTTPS listeners are always TLS. */
  readonly tls: boolean;
  /**
   * Present when the listener requires a PROXY protocol header (v1 or v2) on
   * every connection, from one of these networks; absent otherwise.
   */
  readonly proxyProtocol?: { readonly trustedProxies: readonly TrustedNetwork[] };
}

/** One `trustedProxies` entry: a CIDR (a bare address is a single host). */
export interface TrustedNetwork {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

export const TLS_PORT = 8991;

/** One value as a source gave it, before it is checked. */
export interface Raw {
  readonly value: unknown;
  /** Where it came from, for error messages: a file, "environment FLOATD_…", "command line" or "default". */
  readonly source: string;
  /** Folder that relative paths are resolved against. */
  readonly base: string;
  /** The setting's name as the source spelled it (its canonical name or today's alias). */
  readonly name: string;
}

/** Checks one raw value and returns it typed; throws SettingError saying what is allowed. */
export type Parser<T> = (value: unknown, raw: Raw) => T;

export class SettingError extends Error {}

export function int(min: number, max: number): Parser<number> {
  return (value) => {
    const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      throw new SettingError(`must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
}

/** A number (fractions allowed) from min to max. */
export function num(min: number, max: number): Parser<number> {
  return (value) => {
    const n = typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) throw new SettingError(`must be a number from ${min} to ${max}`);
    return n;
  };
}

export function oneOf<const A extends readonly string[]>(...allowed: A): Parser<A[number]> {
  return (value) => {
    const found = allowed.find((a) => a === value);
    if (found === undefined) throw new SettingError(`must be one of ${allowed.join(', ')}`);
    return found;
  };
}

/** A comma-separated string (the environment) or an array (the file) of strings or listener objects. */
export function list(value: unknown): (string | Record<string, unknown>)[] {
  if (typeof value === 'string') return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (Array.isArray(value) && value.every((v): v is string | Record<string, unknown> => typeof v === 'string' || (typeof v === 'object' && v !== null))) return value;
  throw new SettingError('must be a list (an array in the config file, comma-separated in the environment)');
}

export const strings: Parser<string[]> = (value) => list(value).map(String);

export const path: Parser<string> = (value, raw) => {
  if (typeof value !== 'string' || value.trim() === '') throw new SettingError('must be a file or folder path');
  return isAbsolute(value) ? value : resolve(raw.base, value);
};

export const optionalPath: Parser<string | null> = (value, raw) => (value === null || value === '' ? null : path(value, raw));

export const paths: Parser<string[]> = (value, raw) => list(value).map((p) => path(p, raw));

export const bool: Parser<boolean> = (value) => {
  if (value === true || value === 'true' || value === '1') return true;
  if (value === false || value === 'false' || value === '0') return false;
  throw new SettingError('must be true or false');
};

/** Rules inline: one string, or an array of lines (easier to read in JSON). */
export const inlineRules: Parser<string | null> = (value) => {
  if (value === null) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join('\n');
  throw new SettingError('must be the rules as one string, or an array of rule lines');
};

/** An http:// proxy URL, optionally with user:password. */
export const proxyUrl: Parser<string | null> = (value) => {
  if (value === null || value === '') return null;
  if (typeof value !== 'string') throw new SettingError('must be a proxy URL such as http://user:password@proxy.example.com:3128');
  let url: URL;
  try {
    url = new URL(value.includes('://') ? value : `http://${value}`);
  } catch {
    throw new SettingError('must be a proxy URL such as http://user:password@proxy.example.com:3128');
  }
  if (url.protocol !== 'http:') throw new SettingError('must be an http:// proxy URL (floatd tunnels HTTPS through it with CONNECT)');
  return url.href;
};

/** A PostgreSQL connection URL: postgres://user[:password]@host[:port]/database[?sslmode=…]. */
export const postgresUrl: Parser<string | null> = (value) => {
  if (value === null || value === '') return null;
  const example = 'a PostgreSQL URL such as postgres://floatd@db.example.com:5432/floatd';
  if (typeof value !== 'string') throw new SettingError(`must be ${example}`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new SettingError(`must be ${example}`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new SettingError(`must be ${example} (postgres:// or postgresql://)`);
  if (url.pathname.length <= 1) throw new SettingError(`must name the database (${example})`);
  return value;
};

/** A cluster node's name: letters, digits, dot, dash, underscore (it appears in the lease log and in logs). */
export const nodeId: Parser<string | null> = (value) => {
  if (value === null || value === '') return null;
  if (typeof value !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(value)) throw new SettingError('must be 1 to 64 letters, digits, dots, dashes or underscores');
  return value;
};

/** A URL-like text with any password in its userinfo replaced by ***, for messages. */
export function withoutPassword(text: string): string {
  return text.replace(/^([^/?#]*\/\/|)([^/?#@:]*):([^/?#@]*)@/, (_, scheme: string, user: string) => `${scheme}${user}:***@`);
}

const LISTENER_KEYS = ['address', 'name', 'proxyProtocol', 'trustedProxies'];

/** `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one host). */
function trustedNetwork(text: unknown, where: string): TrustedNetwork {
  const bad = () => new SettingError(`${where} must be an IPv4 or IPv6 CIDR such as "10.0.0.0/8" or "fd00::/8"; got ${JSON.stringify(text)}`);
  if (typeof text !== 'string') throw bad();
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) throw bad();
  const address = m[1]!;
  const version = isIP(address);
  if (version === 0) throw bad();
  const max = version === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) throw new SettingError(`${where} "${text}": an IPv${version} prefix length is at most ${max}`);
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** `proxyProtocol` and `trustedProxies` of one listener object: both or neither. */
function proxyProtocolOf(o: Record<string, unknown>, i: number): ListenerConfig['proxyProtocol'] {
  const on = o['proxyProtocol'];
  const trusted: unknown = o['trustedProxies'];
  if (on !== undefined && typeof on !== 'boolean') throw new SettingError(`[${i}].proxyProtocol must be true or false`);
  if (trusted !== undefined && !Array.isArray(trusted)) throw new SettingError(`[${i}].trustedProxies must be a list of CIDRs, e.g. ["10.0.0.0/8"]`);
  const networks = ((trusted ?? []) as unknown[]).map((t, j) => trustedNetwork(t, `[${i}].trustedProxies[${j}]`));
  if (on !== true) {
    if (networks.length > 0) throw new SettingError(`[${i}].trustedProxies is set but proxyProtocol is not true: add "proxyProtocol": true, or remove trustedProxies`);
    return undefined;
  }
  if (networks.length === 0) {
    throw new SettingError(`[${i}].proxyProtocol needs trustedProxies: the CIDRs of the load balancers allowed to send PROXY headers, e.g. ["10.0.0.0/8"]`);
  }
  return { trustedProxies: networks };
}

/** A listener object's address, name and PROXY-protocol settings, each checked. */
function listenerObject(o: Record<string, unknown>, i: number): { address: unknown; name?: string; proxyProtocol: ListenerConfig['proxyProtocol'] } {
  let name: string | undefined;
  const n = o['name'];
  if (n !== undefined) {
    if (typeof n !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(n)) throw new SettingError(`[${i}].name must be 1-64 letters, digits or _ . : -`);
    name = n;
  }
  for (const key of Object.keys(o)) {
    if (!LISTENER_KEYS.includes(key)) throw new SettingError(`[${i}] has unknown key "${key}" (allowed: ${LISTENER_KEYS.join(', ')})`);
  }
  return { address: o['address'], ...(name === undefined ? {} : { name }), proxyProtocol: proxyProtocolOf(o, i) };
}

/**
 * A list of listen addresses: `HOST:PORT` strings or `{"address", "name",
 * "proxyProtocol", "trustedProxies"}` objects. With `tlsScheme`,
 * `tls://HOST[:PORT]` marks NDJSON-over-TLS (its port defaulting to 8991,
 * its name to "tls").
 */
export function listenList(defaultPort: number, defaultName: string, options: { tlsScheme: boolean; allowEmpty: boolean }): Parser<ListenerConfig[]> {
  return (value) => {
    const items = list(value);
    if (items.length === 0 && !options.allowEmpty) throw new SettingError('must name at least one HOST:PORT');
    return items.map((item, i): ListenerConfig => {
      const { address, name, proxyProtocol } = typeof item === 'object' ? listenerObject(item, i) : { address: item, name: undefined, proxyProtocol: undefined };
      if (typeof address !== 'string') throw new SettingError(`[${i}] must be "HOST:PORT" or {"address": "HOST:PORT", "name": "…"}`);
      const tls = options.tlsScheme && /^tls:\/\//i.test(address.trim());
      if (!tls && /^[a-z][a-z0-9+.-]*:\/\//i.test(address.trim())) {
        throw new SettingError(`[${i}] "${address}": ${options.tlsScheme ? 'the only scheme here is tls://' : 'give HOST:PORT without a scheme'}`);
      }
      try {
        const parsed = parseHostPort(tls ? address.trim().slice(6) : address, tls ? TLS_PORT : defaultPort);
        return { ...parsed, name: name ?? (tls ? 'tls' : defaultName), tls, ...(proxyProtocol ? { proxyProtocol } : {}) };
      } catch (err) {
        throw new SettingError(`[${i}] ${(err as Error).message}`);
      }
    });
  };
}
