import AjvModule from 'ajv';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { acquireBody, LEASE_PARAMS, leaseBody, LEASES_QUERY, LISTENER_BODY, LOG_QUERY, NDJSON_REQUESTS, REVOKE_BODY } from '../../src/domain/messages.js';
import { checkDocument, fieldPath, MAX_DEPTH, parseJson, toJsonSchema, validate, type Schema } from '../../src/domain/schema.js';
import { fuzzParameters } from '../support/fuzz.js';

// The validator fastify would use (Ajv 8, as @fastify/ajv-compiler configures it, without coercion like floatd's).
const ajv = new AjvModule.default({ coerceTypes: false, useDefaults: true, removeAdditional: true, allErrors: false, allowUnionTypes: true });

const MESSAGES: Array<[string, Schema]> = [
  ...Object.entries(NDJSON_REQUESTS).map(([op, s]): [string, Schema] => [`NDJSON ${op}`, s]),
  ['POST /v1/leases (user required)', acquireBody(true)],
  ['POST /v1/leases (user from certificate)', acquireBody(false)],
  ['renew/release body', leaseBody(true)],
  ['renew/release body (user from certificate)', leaseBody(false)],
  ['lease id parameter', LEASE_PARAMS],
  ['revoke body', REVOKE_BODY],
  ['suspend/resume body', LISTENER_BODY],
  ['admin leases query', LEASES_QUERY],
  ['admin log query', LOG_QUERY],
];

const anyJson = fc.jsonValue({ maxDepth: 2 });
const oddString = fc.oneof(
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => `a${String.fromCharCode(c)}`),
  fc.integer({ min: 0, max: 0x9f }).filter((c) => c < 0x20 || c >= 0x7f).map((c) => `a${String.fromCharCode(c)}b`),
  fc.constantFrom('\u2028', '\u00a0', '\ufeff', '\u200d', 'é', 'e\u0301'),
);

/** Values near and across every boundary of a schema, and anything else besides. */
function near(schema: Schema): fc.Arbitrary<unknown> {
  switch (schema.kind) {
    case 'text': {
      const { minLength: min, maxLength: max } = schema;
      return fc.oneof(
        fc.string({ unit: 'binary', minLength: min, maxLength: Math.min(max, 12) }),
        fc.constantFrom('', 'x'.repeat(max), 'x'.repeat(max + 1), '😀'.repeat(max), '😀'.repeat(max + 1), 'x'.repeat(Math.max(0, min - 1))),
        fc.constantFrom('0', '1', '7', '99999', '100000', '100001', '012', '1e3', '٣', ' 1'),
        oddString,
        anyJson,
      );
    }
    case 'integer':
    case 'number':
      return fc.oneof(fc.integer(), fc.double(), fc.constantFrom(2 ** 53, 2 ** 53 - 1, -(2 ** 53), 1 - 2 ** 53, 1.5, Infinity, -Infinity, NaN, 1e300, -0, '1'), anyJson);
    case 'const':
      return fc.oneof(fc.constant(schema.value), fc.string({ maxLength: 8 }), anyJson);
    case 'anyOf':
      return fc.oneof(...schema.options.map(near));
    case 'object': {
      const props = Object.fromEntries(Object.entries(schema.properties).map(([k, s]) => [k, fc.oneof({ weight: 4, arbitrary: near(s) }, { weight: 1, arbitrary: fc.constant(null) })]));
      return fc.oneof(
        { weight: 6, arbitrary: fc.tuple(fc.record(props, { requiredKeys: [] }), fc.dictionary(fc.string({ maxLength: 6 }), anyJson, { maxKeys: 2 })).map(([known, extra]) => ({ ...extra, ...known })) },
        { weight: 1, arbitrary: anyJson },
      );
    }
  }
}

describe('message schemas', () => {
  it.each(MESSAGES)('%s: the shared validator and the derived JSON Schema (as Ajv reads it) accept exactly the same values', (_name, schema) => {
    const { seed, numRuns } = fuzzParameters(2000);
    const check = ajv.compile(toJsonSchema(schema));
    fc.assert(
      fc.property(near(schema), (value) => {
        const ours = validate(schema, value).ok;
        expect(ours, `${JSON.stringify(value)}: ours ${ours}, Ajv ${!ours} ${JSON.stringify(check.errors)}`).toBe(check(value));
      }),
      { seed, numRuns },
    );
  });

  it('keeps only the known fields, and treats null as left out where a field is optional', () => {
    const r = validate(NDJSON_REQUESTS.acquire, { op: 'acquire', id: 3, product: null, extra: { a: 1 } });
    expect(r).toEqual({ ok: true, value: { op: 'acquire', id: 3 } });
    expect(validate(NDJSON_REQUESTS.renew, { op: 'renew', lease: null })).toMatchObject({ ok: false, field: 'lease', message: 'field "lease" is required' });
  });

  it('names the field of the first problem, nested with dots and brackets', () => {
    expect(validate(acquireBody(true), { client: { user: 'a', instance: ['x'] } })).toMatchObject({ ok: false, field: 'client.instance' });
    expect(validate(acquireBody(true), [])).toMatchObject({ ok: false, field: 'body', message: 'field "body" must be an object, not an array' });
    expect(fieldPath('a', 3)).toBe('a[3]');
    expect(fieldPath('a', 'b c"')).toBe('a["b c\\""]');
    expect(fieldPath('', 'x'.repeat(100))).toBe(`[${JSON.stringify(`${'x'.repeat(64)}…`)}]`);
  });
});

describe('checkDocument', () => {
  it('finds reserved keys at any depth, own keys as JSON.parse makes them', () => {
    expect(checkDocument(JSON.parse('{"a":[{"b":{"__proto__":1}}]}'))).toMatchObject({ field: 'a[0].b.__proto__' });
    expect(checkDocument({ constructor: 1 })).toMatchObject({ field: 'constructor' });
    expect(checkDocument({ a: { prototype: 1 } })).toMatchObject({ field: 'a.prototype' });
    expect(checkDocument({ a: { proto: 1, toString: 2 } })).toBeNull();
  });

  it(`allows ${MAX_DEPTH} levels of nesting and no more, and walks a very deep value without exhausting the stack`, () => {
    const nest = (n: number): unknown => {
      let v: unknown = 1;
      for (let i = 1; i < n; i++) v = [v];
      return v;
    };
    // nest(n) is n - 1 arrays around a number: MAX_DEPTH containers in all are fine.
    expect(checkDocument(nest(MAX_DEPTH + 1))).toBeNull();
    expect(checkDocument({ a: nest(MAX_DEPTH) })).toBeNull();
    expect(checkDocument({ a: nest(MAX_DEPTH + 1) })).toMatchObject({ message: expect.stringContaining(`nests deeper than ${MAX_DEPTH} levels`) });
    expect(checkDocument(nest(MAX_DEPTH + 2))).toMatchObject({ field: '[0]'.repeat(MAX_DEPTH) });
    expect(checkDocument(nest(1_000_000))).toMatchObject({ message: expect.stringContaining('nests deeper') });
  });

  it('refuses numbers too large to represent, and parseJson says what is not JSON', () => {
    expect(parseJson('{"n":[1,1e999]}')).toMatchObject({ ok: false, field: 'n[1]', message: 'field "n[1]" holds a number too large to represent' });
    expect(parseJson('{"n":')).toMatchObject({ ok: false, field: 'body', message: expect.stringMatching(/^invalid JSON/) });
    expect(parseJson(`${'['.repeat(20_000)}${']'.repeat(20_000)}`)).toMatchObject({ ok: false });
    expect(parseJson('{"n":1e308}')).toEqual({ ok: true, value: { n: 1e308 } });
  });
});
