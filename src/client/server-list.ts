import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { FloatdError } from '../domain/errors.js';
import { parseServerAddress, type ServerAddress } from './server-address.js';

/**
 * The servers a client may use: a list (`a:8989,b:8989`, or several strings),
 * each written as parseServerAddress takes it. Throws INPUT_INVALID naming the
 * entry that is wrong.
 */
export function parseServerList(servers: string | readonly string[]): ServerAddress[] {
  const texts = (typeof servers === 'string' ? [servers] : [...servers]).flatMap((s) => s.split(','));
  if (texts.length === 0) throw new FloatdError('INPUT_INVALID', 'no server address given');
  return texts.map((text, i) => {
    if (text.trim() === '' && texts.length > 1) throw new FloatdError('INPUT_INVALID', `server ${i + 1} of the list "${texts.join(',')}" is empty`);
    return parseServerAddress(text);
  });
}

/** One place to connect to: a server of the list, pinned to one of the addresses its name resolves to. */
export interface Endpoint {
  readonly address: ServerAddress;
  /** The IP address the name resolved to; absent for an address written as an IP, or a name that did not resolve. */
  readonly ip?: string;
  readonly family?: number;
  /** For messages: `host:port`, with the IP it resolved to. */
  readonly label: string;
}

/** Resolves a host name to all its addresses (dns.lookup with `all`, in the resolver's order). */
export type ResolveHost = (host: string) => Promise<readonly LookupAddress[]>;

export const systemResolve: ResolveHost = (host) =>
  new Promise((resolve, reject) => dnsLookup(host, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))));

function hostPort(address: ServerAddress): string {
  const host = isIP(address.host) === 6 ? `[${address.host}]` : address.host;
  return `${address.scheme === 'tcp' ? '' : `${address.scheme}://`}${host}:${address.port}`;
}

/**
 * The endpoints of the list, in its order: a name that resolves to several
 * addresses counts as several servers, each in the resolver's order. A name that
 * does not resolve stays one endpoint, so that connecting to it fails with the
 * resolver's own message. The same address reached twice is tried once.
 */
export async function resolveEndpoints(addresses: readonly ServerAddress[], resolve: ResolveHost = systemResolve): Promise<Endpoint[]> {
  const resolved = await Promise.all(
    addresses.map(async (address): Promise<Endpoint[]> => {
      if (isIP(address.host) !== 0) return [{ address, label: hostPort(address) }];
      let found: readonly LookupAddress[];
      try {
        found = await resolve(address.host);
      } catch {
        return [{ address, label: hostPort(address) }];
      }
      if (found.length === 0) return [{ address, label: hostPort(address) }];
      return found.map(({ address: ip, family }) => ({ address, ip, family, label: `${hostPort(address)} (${ip})` }));
    }),
  );
  const seen = new Set<string>();
  return resolved.flat().filter((e) => {
    const key = `${e.address.scheme} ${e.ip ?? e.address.host} ${e.address.port}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * A `lookup` for net, tls and http that answers the endpoint's resolved address,
 * so the connection goes to that one address while the host name still serves
 * for TLS (SNI, the certificate's name) and HTTP (`Host`). Node asks with `all`
 * when it tries address families in turn (autoSelectFamily).
 */
export function pinnedLookup(endpoint: Endpoint): LookupFunction | undefined {
  const { ip, family } = endpoint;
  if (ip === undefined) return undefined;
  const fam = family ?? (isIP(ip) === 6 ? 6 : 4);
  return ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, [{ address: ip, family: fam }]);
    else callback(null, ip, fam);
  }) as unknown as LookupFunction;
}
