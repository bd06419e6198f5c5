import { BLOCK_MAX_SECONDS } from './blocks.js';
import { anyOf, constant, integer, number, object, text } from './schema.js';

/**
 * One schema per message a client sends, for every door: the NDJSON requests
 * (docs/protocol.md) and the bodies and path parameters of the web endpoint
 * (docs/http-api.md). The web endpoint's OpenAPI document is derived from
 * these, and both doors validate with them, so a field means the same and is
 * refused the same way (BAD_REQUEST naming it) wherever it arrives.
 */

/** The longest name (user, host, instance, product, lease id, listener), in characters. */
export const NAME_MAX = 256;
/** The longest revocation reason, in characters. */
export const REASON_MAX = 500;

const name = (description: string) => text(1, NAME_MAX, description);
/** A name, undescribed (a filter, say). */
export const NAME = text(1, NAME_MAX);

export const USER = name('user name');
export const HOST = name('host name; defaults to the remote address');
export const INSTANCE = name('a stable id the client picks per product instance');
export const PRODUCT = name('product; may be left out when the server serves one product (or, over NDJSON, hello named one)');
export const LEASE_ID = name('lease id');
/** 32 random bytes, base64url: 43 characters; a little room for other encodings of them. */
export const LEASE_SECRET = text(1, 128, 'the leaseSecret of the reply that granted the lease: needed to renew, release or re-acquire it from any connection but the one it was granted on (and over HTTP)');

/** Who asks. With tls.identityFromCertificate the user may be left out: it is the client certificate's common name. */
export function clientIdentity(userRequired: boolean) {
  return object(
    { user: USER, host: HOST, instance: INSTANCE },
    userRequired ? (['user', 'instance'] as const) : (['instance'] as const),
    "Who asks. With tls.identityFromCertificate the user may be left out: it is the client certificate's common name.",
  );
}

const CLIENT = clientIdentity(true);
const CLIENT_FROM_CERTIFICATE = clientIdentity(false);

// --- NDJSON requests -------------------------------------------------------

/**
 * A request's `id`: echoed in its reply, so it must survive the trip exactly. A number beyond
 * ±(2^53 − 1) does not (9007199254740993 reads as 9007199254740992), and 1e999 is no number at all.
 */
export const REQUEST_ID = anyOf(
  `a string of at most ${NAME_MAX} characters or a number from ${-Number.MAX_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER}`,
  [text(0, NAME_MAX), number(-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)],
  'chosen by the client, echoed in the reply',
);
/** Any request: its op (which decides the rest) and id. */
export const REQUEST = object({ op: text(1, 64, 'the operation'), id: REQUEST_ID }, ['op']);
/** The protocol version a hello asks for (only 1 exists; another integer is UNSUPPORTED_VERSION). */
const VERSION = integer(-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, 'protocol version (default 1)');
export const PROTOCOL_VERSION_FIELD = object({ v: VERSION });

function hello(client: typeof CLIENT | typeof CLIENT_FROM_CERTIFICATE) {
  return object(
    { op: constant('hello'), id: REQUEST_ID, v: VERSION, client, product: name('default product for acquire on this connection') },
    ['op', 'client'],
  );
}

export const NDJSON_REQUESTS = {
  hello: hello(CLIENT),
  /** hello on a listener that takes the user from the client certificate. */
  helloCertified: hello(CLIENT_FROM_CERTIFICATE),
  acquire: object({ op: constant('acquire'), id: REQUEST_ID, product: PRODUCT, leaseSecret: LEASE_SECRET }, ['op']),
  renew: object({ op: constant('renew'), id: REQUEST_ID, lease: LEASE_ID, leaseSecret: LEASE_SECRET }, ['op', 'lease']),
  release: object({ op: constant('release'), id: REQUEST_ID, lease: LEASE_ID, leaseSecret: LEASE_SECRET }, ['op', 'lease']),
  status: object({ op: constant('status'), id: REQUEST_ID }, ['op']),
  ping: object({ op: constant('ping'), id: REQUEST_ID }, ['op']),
} as const;

// --- Web endpoint ----------------------------------------------------------

export function acquireBody(userRequired: boolean) {
  return object({ client: userRequired ? CLIENT : CLIENT_FROM_CERTIFICATE, product: PRODUCT, leaseSecret: LEASE_SECRET }, ['client']);
}

/** The body of renew and release. */
export function leaseBody(userRequired: boolean) {
  return object({ client: userRequired ? CLIENT : CLIENT_FROM_CERTIFICATE, leaseSecret: LEASE_SECRET }, ['client']);
}

export const LEASE_PARAMS = object({ id: LEASE_ID }, ['id']);
export const REVOKE_BODY = object(
  {
    reason: text(1, REASON_MAX, 'why; recorded in the lease log and told to the holder'),
    blockSeconds: integer(1, BLOCK_MAX_SECONDS, "keep the lease's holder out of its product this long (floatd admin revoke --block)"),
    blockScope: anyOf('"user" or "instance"', [constant('user'), constant('instance')], 'whom the block keeps out: the user on every instance (default), or only the instance'),
  },
  ['reason'],
);
export const BLOCK_PARAMS = object({ id: text(1, 64, 'block id, or a unique start of it') }, ['id']);
export const LISTENER_BODY = object({ listener: name('a listener name; all when left out') });

/** The filters of GET /v1/admin/leases (query-string values are text). */
export const LEASES_QUERY = object({ user: NAME, host: NAME, product: NAME });
/** The most events GET /v1/admin/log answers with. */
export const LOG_LIMIT_MAX = 100_000;
export const LOG_QUERY = object({
  since: text(1, 64, 'ISO date/time'),
  until: text(1, 64, 'ISO date/time'),
  user: NAME,
  host: NAME,
  instance: NAME,
  product: NAME,
  pool: NAME,
  lease: text(1, 64, 'a lease id or the start of one'),
  listener: NAME,
  actor: text(1, 512, 'who did it: token:NAME or cert:SUBJECT'),
  event: text(1, 1000, 'event kinds, comma-separated'),
  limit: text(1, 6, 'the most events to answer with (default 1000)', { pattern: '^(?:100000|[1-9][0-9]{0,4})$', means: `a whole number from 1 to ${LOG_LIMIT_MAX}` }),
});
