/**
 * floatd's client SDK: `import { LeaseClient } from 'floatd/client'`.
 * See docs/client.md.
 */
export { LeaseClient, LeaseClientError, DEFAULT_RETRY_INTERVAL_MS } from './lease-client.js';
export type { LeaseClientOptions, LeaseClientEvents, LeaseInfo, DenialInfo } from './lease-client.js';
export type { LeaseTokenClaims } from '../adapters/crypto/lease-tokens.js';
export { verifyLeaseToken } from '../adapters/crypto/lease-tokens.js';
export { TcpTransport, TransportError } from './tcp-transport.js';
export type { Reply, ReplyError } from './tcp-transport.js';
