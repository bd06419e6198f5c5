import { BlockList, SocketAddress, isIP, type Server, type Socket } from 'node:net';
import { AddressFamilyType, Command, IPv4ProxyAddress, IPv6ProxyAddress, V1ProxyProtocol, V2ProxyProtocol } from 'proxy-protocol-js';

/**
 * PROXY protocol v1 and v2 (haproxy.org/download/2.9/doc/proxy-protocol.txt)
 * in front of a listener: the header a load balancer sends before anything
 * else names the client it connected for. proxy-protocol-js decodes the
 * header's bytes; finding where a header ends in a byte stream, capping it
 * and deciding whom to believe is done here.
 */

/** The longest v1 line the specification allows ("PROXY UNKNOWN" with two full IPv6 addresses and ports). */
export const V1_MAX_BYTES = 107;
/**
 * v2 allows 16 + 65535 bytes, almost all of it optional TLVs. floatd uses
 * none of them, so a header longer than this is refused rather than buffered.
 */
export const V2_MAX_BYTES = 4096;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_BYTES = 16;

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

/**
 * A decoded header. `local`: the header says nothing about a client
 * (v2 LOCAL, as load balancers send for health checks; v1 UNKNOWN; a v2
 * address family without IP addresses), so the connection stands for itself.
 */
export type ProxyHeader =
  | { readonly version: 1 | 2; readonly command: 'proxy'; readonly source: Endpoint; readonly destination: Endpoint }
  | { readonly version: 1 | 2; readonly command: 'local' };

export type HeaderProblem = 'no-header' | 'malformed-header' | 'header-too-long';

export type HeaderResult =
  | { readonly state: 'incomplete' }
  | { readonly state: 'complete'; readonly header: ProxyHeader; /** Bytes after the header: the start of the real protocol. */ readonly rest: Buffer }
  | { readonly state: 'invalid'; readonly problem: HeaderProblem; readonly detail: string };

const INCOMPLETE: HeaderResult = { state: 'incomplete' };

type Invalid = Extract<HeaderResult, { state: 'invalid' }>;
type Parsed = { readonly state: 'parsed'; readonly header: ProxyHeader } | Invalid;

function invalid(problem: HeaderProblem, detail: string): Invalid {
  return { state: 'invalid', problem, detail };
}

function parsed(header: ProxyHeader): Parsed {
  return { state: 'parsed', header };
}

/** Whether `buf` agrees with `prefix` as far as either goes. */
function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

/** An address as floatd shows remote addresses: IPv6 in its short form, IPv4-mapped IPv6 as plain IPv4. */
export function plainAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  let short: string;
  try {
    short = new SocketAddress({ address, family: 'ipv6' }).address;
  } catch {
    return address;
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(short);
  return mapped ? mapped[1]! : short;
}

function port(text: string | number): number | null {
  const n = Number(text);
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : null;
}

function parseV1(line: string): Parsed {
  // UNKNOWN: the proxy could not tell (or the connection is its own); whatever follows is to be ignored.
  if (/^PROXY UNKNOWN(?: [^\r\n]*)?\r\n$/.test(line)) return parsed({ version: 1, command: 'local' });
  let v1: V1ProxyProtocol;
  try {
    v1 = V1ProxyProtocol.parse(line);
  } catch {
    return invalid('malformed-header', `v1: ${JSON.stringify(line.trimEnd())} is not "PROXY TCP4|TCP6 SOURCE DESTINATION SOURCE-PORT DESTINATION-PORT"`);
  }
  const family = v1.inetProtocol === 'TCP4' ? 4 : v1.inetProtocol === 'TCP6' ? 6 : 0;
  const src = v1.source;
  const dst = v1.destination;
  if (family === 0 || isIP(src.ipAddress) !== family || isIP(dst.ipAddress) !== family) {
    return invalid('malformed-header', `v1: ${v1.inetProtocol} with addresses "${src.ipAddress}" and "${dst.ipAddress}"`);
  }
  const srcPort = port(src.port);
  const dstPort = port(dst.port);
  if (srcPort === null || dstPort === null) return invalid('malformed-header', 'v1: a port is out of range');
  return parsed({ version: 1, command: 'proxy', source: { address: plainAddress(src.ipAddress), port: srcPort }, destination: { address: plainAddress(dst.ipAddress), port: dstPort } });
}

function ipv6(bytes: readonly number[]): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return plainAddress(groups.join(':'));
}

function parseV2(bytes: Buffer): Parsed {
  let v2: V2ProxyProtocol;
  try {
    v2 = V2ProxyProtocol.parse(bytes);
  } catch (err) {
    return invalid('malformed-header', `v2: ${(err as { message?: string }).message ?? 'cannot be parsed'}`);
  }
  if (v2.command === Command.LOCAL) return parsed({ version: 2, command: 'local' });
  const a = v2.proxyAddress;
  if (v2.addressFamilyType === AddressFamilyType.INET && a instanceof IPv4ProxyAddress) {
    return parsed({
      version: 2,
      command: 'proxy',
      source: { address: a.sourceAddress.address.join('.'), port: a.sourcePort },
      destination: { address: a.destinationAddress.address.join('.'), port: a.destinationPort },
    });
  }
  if (v2.addressFamilyType === AddressFamilyType.INET6 && a instanceof IPv6ProxyAddress) {
    return parsed({
      version: 2,
      command: 'proxy',
      source: { address: ipv6(a.sourceAddress.address), port: a.sourcePort },
      destination: { address: ipv6(a.destinationAddress.address), port: a.destinationPort },
    });
  }
  // UNSPEC or a UNIX socket path: no IP address to stand for the client, so the specification says to use the connection's own.
  return parsed({ version: 2, command: 'local' });
}

/**
 * Reads one PROXY header from a byte stream, pushed in pieces as they
 * arrive (no socket here): `incomplete` until a whole v1 line or v2 block
 * is in, then `complete` with the bytes that followed it, or `invalid` as
 * soon as the bytes cannot be a header (wrong start, malformed, too long).
 * Once the answer is not `incomplete`, the reader is done.
 */
export class ProxyHeaderReader {
  private buffered: Buffer = Buffer.alloc(0);
  private done: HeaderResult | null = null;

  constructor(private readonly v2MaxBytes = V2_MAX_BYTES) {}

  push(chunk: Buffer): HeaderResult {
    if (this.done !== null) return this.done;
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const result = this.read(this.buffered);
    if (result.state !== 'incomplete') {
      this.done = result;
      this.buffered = Buffer.alloc(0);
    }
    return result;
  }

  private read(buf: Buffer): HeaderResult {
    if (buf.length === 0) return INCOMPLETE;
    if (startsLike(buf, V2_SIGNATURE)) {
      if (buf.length < V2_FIXED_BYTES) return INCOMPLETE;
      const total = V2_FIXED_BYTES + buf.readUInt16BE(14);
      if (total > this.v2MaxBytes) return invalid('header-too-long', `v2: ${total} bytes (at most ${this.v2MaxBytes} accepted)`);
      if (buf.length < total) return INCOMPLETE;
      const result = parseV2(buf.subarray(0, total));
      return result.state === 'parsed' ? { state: 'complete', header: result.header, rest: buf.subarray(total) } : result;
    }
    if (startsLike(buf, V1_PREFIX)) {
      const lf = buf.indexOf(0x0a);
      if (lf < 0) return buf.length >= V1_MAX_BYTES ? invalid('header-too-long', `v1: no line end within ${V1_MAX_BYTES} bytes`) : INCOMPLETE;
      if (lf + 1 > V1_MAX_BYTES) return invalid('header-too-long', `v1: the line is longer than ${V1_MAX_BYTES} bytes`);
      if (buf[lf - 1] !== 0x0d) return invalid('malformed-header', 'v1: the line does not end in CRLF');
      const result = parseV1(buf.subarray(0, lf + 1).toString('latin1'));
      return result.state === 'parsed' ? { state: 'complete', header: result.header, rest: buf.subarray(lf + 1) } : result;
    }
    return invalid('no-header', 'the connection does not start with a PROXY header');
  }
}

/** A trusted network: `trustedProxies` entries as config.ts validates them. */
export interface TrustedNetwork {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/** Settings of a listener that requires the PROXY protocol. */
export interface ProxyProtocolSettings {
  readonly trustedProxies: readonly TrustedNetwork[];
}

export type RefusalReason = HeaderProblem | 'untrusted-source' | 'header-timeout' | 'closed-in-header';

/** A connection turned away before its protocol began: nothing was answered. */
export interface ProxyRefusal {
  readonly listener: string;
  /** The address the connection came from (the would-be proxy). */
  readonly source: string;
  readonly reason: RefusalReason;
  readonly detail: string;
}

export interface ProxyIntakeOptions extends ProxyProtocolSettings {
  readonly listener: string;
  /** A header must be complete this long after connecting. */
  readonly timeoutMs: number;
  readonly refused: (refusal: ProxyRefusal) => void;
  readonly v2MaxBytes?: number;
}

/** Closes the connections still sending their header (for stop()). */
export interface ProxyIntake {
  close(): void;
}

/** The client address each accepted connection's header named. */
const clientAddresses = new WeakMap<Socket, string>();

/**
 * The client address of a connection on a PROXY-protocol listener (from its
 * header; the connection's own for LOCAL), or undefined on other listeners.
 * A TLS socket is looked up by the TCP socket it wraps: node keeps that in
 * `_parent` (set for every server-side TLSSocket made from a net.Socket).
 */
export function proxiedAddress(socket: Socket): string | undefined {
  const own = clientAddresses.get(socket);
  if (own !== undefined) return own;
  const parent = (socket as Socket & { _parent?: unknown })._parent;
  return parent !== null && typeof parent === 'object' ? clientAddresses.get(parent as Socket) : undefined;
}

function trustCheck(networks: readonly TrustedNetwork[]): (address: string) => boolean {
  const list = new BlockList();
  for (const n of networks) list.addSubnet(n.address, n.prefix, n.family);
  return (address) => {
    const family = isIP(address);
    return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };
}

function explain(reason: RefusalReason, detail: string): string {
  if (reason === 'malformed-header') return `malformed PROXY header: ${detail}`;
  if (reason === 'header-too-long') return `PROXY header too long: ${detail}`;
  return detail;
}

/**
 * Makes `server` (net, tls, http or https — anything that takes raw TCP
 * sockets through 'connection') require a PROXY header on every connection,
 * sent from a trusted address. The server's 'connection' listeners so far
 * (its TLS handshake, its HTTP parser, the NDJSON accept) run only once a
 * valid header has been read and taken off the stream, before any TLS or
 * HTTP byte is looked at; listeners added later see every raw connection.
 * Anything else is closed without an answer and reported to `refused`.
 */
export function requireProxyProtocol(server: Server, options: ProxyIntakeOptions): ProxyIntake {
  const handlers = server.listeners('connection') as Array<(this: Server, socket: Socket) => void>;
  server.removeAllListeners('connection');
  const trusted = trustCheck(options.trustedProxies);
  const pending = new Set<Socket>();

  server.on('connection', (socket: Socket) => {
    if (socket.remoteAddress === undefined) {
      // Reset before it could be looked at: nothing to refuse.
      socket.destroy();
      return;
    }
    const source = plainAddress(socket.remoteAddress);
    const refuse = (reason: RefusalReason, detail: string) => {
      options.refused({ listener: options.listener, source, reason, detail: explain(reason, detail) });
      socket.destroy();
    };
    if (!trusted(source)) {
      socket.on('error', () => {});
      refuse('untrusted-source', `${source} is not in trustedProxies`);
      return;
    }
    pending.add(socket);
    const reader = new ProxyHeaderReader(options.v2MaxBytes);
    let received = 0;
    const stopReading = () => {
      clearTimeout(timer);
      pending.delete(socket);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        received += chunk.length;
        const result = reader.push(chunk);
        if (result.state === 'incomplete') continue;
        stopReading();
        if (result.state === 'invalid') {
          refuse(result.problem, result.detail);
          return;
        }
        clientAddresses.set(socket, result.header.command === 'proxy' ? result.header.source.address : source);
        if (result.rest.length > 0) socket.unshift(result.rest);
        // The connection now begins where the header ended: hand it to the server as if just accepted.
        for (const handler of handlers) handler.call(server, socket);
        return;
      }
    };
    const onEnd = () => {
      stopReading();
      // A connection that closes without a byte (a load balancer's plain TCP check) is not worth a warning.
      if (received > 0) refuse('closed-in-header', `the peer closed after ${received} byte(s) of a PROXY header`);
      else socket.destroy();
    };
    const onError = () => stopReading();
    const onClose = () => stopReading();
    const timer = setTimeout(() => {
      stopReading();
      refuse('header-timeout', `no complete PROXY header within ${options.timeoutMs / 1000} s`);
    }, options.timeoutMs);
    timer.unref();
    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
  });

  return {
    close() {
      for (const socket of pending) socket.destroy();
      pending.clear();
    },
  };
}
