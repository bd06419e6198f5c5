import type { FastifySchemaCompiler } from 'fastify';
import { acquireBody, LEASE_PARAMS, leaseBody } from '../../domain/messages.js';
import { toJsonSchema, validate, type Schema } from '../../domain/schema.js';

/**
 * JSON schemas of the web endpoint. The bodies and path parameters clients
 * send are derived from the message schemas both doors share
 * (src/domain/messages.ts): they are checked with those (a bad field is 400
 * BAD_REQUEST naming it, the same message as over NDJSON), and
 * @fastify/swagger builds /openapi.json from the derived JSON Schema, so the
 * document cannot drift from what is enforced.
 */

/** Each derived JSON Schema object, with the message schema it came from. */
const derivedFrom = new WeakMap<object, Schema>();

/** The JSON Schema of a message schema, for a route's `body` or `params`; `messageValidator` checks with the original. */
export function messageSchema(schema: Schema): Record<string, unknown> {
  const json = toJsonSchema(schema);
  derivedFrom.set(json, schema);
  return json;
}

/**
 * The validator compiler of routes whose request parts are all message
 * schemas: each part is checked by the shared validator, and a refusal
 * becomes the error `refuse` makes (a coded BAD_REQUEST naming the field).
 */
export function messageValidator(refuse: (field: string, message: string) => Error): FastifySchemaCompiler<unknown> {
  return ({ schema, httpPart, method, url }) => {
    const shared = typeof schema === 'object' && schema !== null ? derivedFrom.get(schema) : undefined;
    if (shared === undefined) throw new Error(`the ${httpPart ?? 'request'} schema of ${method} ${url} is not made by messageSchema()`);
    return (data: unknown) => {
      const r = validate(shared, data);
      return r.ok ? { value: r.value } : { error: refuse(r.field, r.message) };
    };
  };
}

export const leaseReply = {
  type: 'object',
  required: ['id', 'product', 'expiresInMs', 'renewAfterMs', 'leaseMs', 'token'],
  properties: {
    id: { type: 'string' },
    product: { type: 'string' },
    expiresInMs: { type: 'integer', description: 'milliseconds from the reply until the lease expires' },
    renewAfterMs: { type: 'integer', description: 'renew after this many milliseconds (half the lease)' },
    leaseMs: { type: 'integer' },
    token: { type: 'string', description: 'compact JWS (EdDSA) signed by the server key of GET /v1/server' },
    license: {
      type: 'object',
      description: 'the license key of the pool and the activation naming this server key (null when the key needs none): the chain to the vendor (docs/client.md); absent for evaluation leases',
      properties: { key: { type: 'string' }, activation: { type: ['string', 'null'] } },
    },
  },
} as const;

export const errorReply = {
  type: 'object',
  required: ['ok', 'error'],
  properties: {
    ok: { const: false },
    error: {
      type: 'object',
      required: ['code', 'message'],
      additionalProperties: true,
      properties: {
        code: { type: 'string', description: 'a stable code from docs/errors.md' },
        message: { type: 'string' },
        retryAfterMs: { type: 'integer' },
        reason: { type: 'string' },
        field: { type: 'string' },
      },
    },
  },
} as const;

const errors = {
  400: { description: 'BAD_REQUEST (the message names the field), PRODUCT_REQUIRED', ...errorReply },
  403: { description: 'RULE_DENIED, LEASE_NOT_YOURS, LEASE_SECRET_MISMATCH, IDENTITY_MISMATCH, LICENSE_EXPIRED, EVALUATION_ENDED, NO_LICENSE, NOT_ACTIVATED', ...errorReply },
  404: { description: 'LEASE_NOT_FOUND, UNKNOWN_PRODUCT', ...errorReply },
  409: { description: 'NO_FREE_SEATS (with a Retry-After header)', ...errorReply },
  410: { description: 'LEASE_EXPIRED', ...errorReply },
  500: { description: 'INTERNAL (details only in the server log)', ...errorReply },
  429: { description: 'TOO_MANY_REQUESTS (with a Retry-After header)', ...errorReply },
  503: { description: 'SHUTTING_DOWN; UNAVAILABLE (storage fault, with retryAfterMs and a Retry-After header: retry, the lease is kept); CLOCK_SET_BACK (evaluation: the server\'s clock was set back)', ...errorReply },
} as const;

const okLease = { type: 'object', properties: { ok: { const: true }, lease: leaseReply } } as const;
const anyObject = { type: 'object', additionalProperties: true } as const;

/** The lease routes: acquire, renew, release. */
function leaseRouteSchemas(identityFromCertificate: boolean) {
  const body = messageSchema(leaseBody(!identityFromCertificate));
  const leaseId = messageSchema(LEASE_PARAMS);
  return {
    acquire: {
      summary: 'Take a seat (idempotent per user, instance and product)',
      tags: ['leases'],
      body: messageSchema(acquireBody(!identityFromCertificate)),
      response: {
        201: {
          description: 'a new seat',
          type: 'object',
          properties: {
            ok: { const: true },
            renewed: { const: false },
            leaseSecret: { type: 'string', description: "the lease's secret (32 random bytes, base64url), given only here: send it as leaseSecret to renew, release or re-acquire the lease" },
            lease: leaseReply,
          },
        },
        200: { description: 'the lease this instance already held, renewed', type: 'object', properties: { ok: { const: true }, renewed: { const: true }, lease: leaseReply } },
        ...errors,
      },
    },
    renew: { summary: 'Extend a lease', tags: ['leases'], params: leaseId, body, response: { 200: { description: 'the lease with fresh durations and token', ...okLease }, ...errors } },
    release: {
      summary: 'Give the seat back (releasing twice is fine)',
      tags: ['leases'],
      params: leaseId,
      body,
      response: { 200: { description: 'released, or already ended', type: 'object', properties: { ok: { const: true }, released: { type: 'boolean' } } }, ...errors },
    },
  };
}

/** GET /v1/status: the reduced view, or everything with admin credentials. */
function statusSchema() {
  return {
    summary: 'Seats per product and health; with admin credentials (token, admin client certificate, dashboard session) also keys, licensee, activation, listeners and rules',
    description: 'Without credentials the reply is the reduced view ("view": "public"), as the NDJSON status op gives. With them ("view": "full") it holds every field of floatd status (docs/protocol.md, status). A wrong bearer token is 401, not the reduced view.',
    tags: ['server'],
    security: [{}, { bearer: [] }] as Array<Record<string, string[]>>,
    response: {
      200: {
        description: 'view "public": ok, view, version, mode, products, leasesHeld, ready, reason; view "full": every field of floatd status',
        type: 'object',
        additionalProperties: true,
        properties: {
          ok: { const: true },
          view: { type: 'string', enum: ['public', 'full'] },
          version: { type: 'string' },
          mode: { type: 'string', enum: ['licensed', 'evaluation', 'unlicensed'] },
          products: {
            type: 'array',
            items: { type: 'object', properties: { product: { type: 'string' }, seatsTotal: { type: 'integer' }, seatsInUse: { type: 'integer' }, seatsFree: { type: 'integer' } }, additionalProperties: true },
          },
          leasesHeld: { type: 'integer' },
          ready: { type: 'boolean', description: 'public view: whether the server grants leases now (as /readyz)' },
          reason: { type: 'string', description: 'public view: why not, or "serving"' },
        },
      },
      401: { description: 'UNAUTHORIZED: a wrong bearer token (send none for the reduced view)', ...errorReply },
      429: errors[429],
    },
  };
}

/** What the server says of itself: who it is, health, metrics, this document. */
function serverRouteSchemas() {
  return {
    server: {
      summary: 'Who the server is and the public key that signs lease tokens (the TCP hello reply)',
      tags: ['server'],
      response: { 200: { description: 'server, version, protocol, serverTimeMs, publicKey (JWK)', ...anyObject } },
    },
    healthz: { summary: 'The process runs', tags: ['health'], response: { 200: { description: 'always, while the process runs', type: 'object', properties: { ok: { const: true } } } } },
    readyz: {
      summary: 'The server can serve leases',
      tags: ['health'],
      response: {
        200: { description: 'database open, lease listeners accepting', type: 'object', properties: { ok: { type: 'boolean' }, reason: { type: 'string' } } },
        503: { description: 'starting, stopping, listeners suspended, or storage unavailable (reason says which)', type: 'object', properties: { ok: { type: 'boolean' }, reason: { type: 'string' } } },
      },
    },
    metrics: {
      summary: 'Prometheus metrics (text format): pools, leases, denials, requests, commits, sweeps, process',
      tags: ['health'],
      produces: ['text/plain'],
      response: { 200: { description: 'Prometheus text exposition format 0.0.4', type: 'string' } },
    },
    openapi: { summary: 'This document', tags: ['server'], response: { 200: { description: 'OpenAPI 3.1', ...anyObject } } },
  };
}

export function routeSchemas(identityFromCertificate: boolean) {
  return { ...leaseRouteSchemas(identityFromCertificate), status: statusSchema(), ...serverRouteSchemas() };
}
