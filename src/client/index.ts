/**
 * floatd's client SDK: `import { LeaseClient } from 'floatd/client'`.
 * See docs/client.md.
 */
export { LeaseClient, LeaseClientError, DEFAULT_RETRY_INTERVAL_MS } from './lease-client.js';
export type { LeaseClientOptions, LeaseClientEvents, LeaseInfo, DenialInfo } from './lease-client.js';
export type { LeaseTokenClaims } from '../adapters/crypto/lease-tokens.js';
export { verifyLeaseToken } from '../adapters/crypto/lease-tokens.js';
export { TcpTransport, type TcpTransportOptions } from './tcp-transport.js';
export { HttpTransport, type HttpTransportOptions } from './http-transport.js';
export { TransportError } from './transport.js';
export type { Reply, ReplyError, Transport, TransportOptions } from './transport.js';
export { parseServerAddress, DEFAULT_PORTS, type ServerAddress, type ServerScheme } from './server-address.js';
export { parseServerList, resolveEndpoints, type Endpoint, type ResolveHost } from './server-list.js';
export { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
export { readTlsFiles, type TlsFiles, type TlsMaterial } from './tls-material.js';
