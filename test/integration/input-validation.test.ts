import { afterEach, describe, expect, it } from 'vitest';
import { acquireBody, LEASE_PARAMS } from '../../src/domain/messages.js';
import { toJsonSchema } from '../../src/domain/schema.js';
import { readFileSync } from 'node:fs';
import { call } from '../support/http.js';
import { exchange } from '../support/fuzz.js';
import { capturingLogger, errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

type Answer = { id?: unknown; ok: boolean; error?: { code: string; message: string; field?: string } };

const HELLO = '{"op":"hello","id":0,"client":{"user":"alice","instance":"a-1"}}';

/** Sends lines on one connection (after `prefix`), returns the replies in order of the ids 1..n. */
async function ask(s: TestServer, lines: string[], prefix: string[] = [HELLO]): Promise<Answer[]> {
  const { replies } = await exchange(s.address, [...prefix, ...lines].map((l) => Buffer.from(l)));
  const answers = replies.map((r) => JSON.parse(r) as Answer).filter((a) => a.id !== 0);
  expect(answers).toHaveLength(lines.length);
  return answers;
}

const refusal = (field: string, message?: string | RegExp) => ({ ok: false, error: { code: 'BAD_REQUEST', field, ...(message === undefined ? {} : { message: typeof message === 'string' ? message : expect.stringMatching(message) }) } });

describe('every field of every op is checked by type', () => {
  it('answers a type-confused hello with BAD_REQUEST naming the field, never INTERNAL', async () => {
    server = await startServer();
    const answers = await ask(
      server,
      [
        '{"op":"hello","id":1,"v":{"toString":1},"client":{"user":"a","instance":"i"}}',
        '{"op":"hello","id":2,"v":"1","client":{"user":"a","instance":"i"}}',
        '{"op":"hello","id":3,"client":{"user":["alice"],"instance":"i"}}',
        '{"op":"hello","id":4,"client":{"user":"a","instance":7}}',
        '{"op":"hello","id":5,"client":"alice"}',
        '{"op":"hello","id":6,"client":{"user":"a","instance":"i"},"product":{"toString":1}}',
        '{"op":"hello","id":7,"client":{"user":"a","instance":"i","host":{"valueOf":1}}}',
        '{"op":["hello"],"id":8}',
      ],
      [],
    );
    expect(answers).toMatchObject([
      { id: 1, ...refusal('v', 'field "v" must be an integer, not an object') },
      { id: 2, ...refusal('v', 'field "v" must be an integer, not a string') },
      { id: 3, ...refusal('client.user', 'field "client.user" must be a string of 1 to 256 characters, not an array') },
      { id: 4, ...refusal('client.instance', /^field "client.instance" must be a string/) },
      { id: 5, ...refusal('client', 'field "client" must be an object, not a string') },
      { id: 6, ...refusal('product') },
      { id: 7, ...refusal('client.host') },
      { id: 8, ...refusal('op') },
    ]);
  });

  it('checks the fields of acquire, renew and release the same way', async () => {
    server = await startServer();
    const answers = await ask(server, [
      '{"op":"acquire","id":1,"product":["cad"]}',
      '{"op":"renew","id":2,"lease":5}',
      '{"op":"release","id":3,"lease":{"toString":1}}',
      '{"op":"renew","id":4}',
      '{"op":"acquire","id":5,"product":"cad"}',
    ]);
    expect(answers.slice(0, 4)).toMatchObject([
      { id: 1, ...refusal('product') },
      { id: 2, ...refusal('lease', 'field "lease" must be a string of 1 to 256 characters, not a number') },
      { id: 3, ...refusal('lease') },
      { id: 4, ...refusal('lease', 'field "lease" is required') },
    ]);
    expect(answers[4]).toMatchObject({ id: 5, ok: true });
  });

  it('refuses an id or a version too large to represent, and ids JSON cannot carry exactly', async () => {
    server = await startServer();
    const answers = await ask(server, ['{"op":"ping","id":1e999}', '{"op":"ping","id":9007199254740993}', '{"op":"ping","id":{"toString":1}}', '{"op":"ping","id":1,"n":-1e999}', '{"op":"hello","id":2,"v":1e999,"client":{"user":"a","instance":"i"}}']);
    // An id that cannot be echoed is not: the refusal carries none.
    expect(answers[0]).toMatchObject(refusal('id', 'field "id" holds a number too large to represent'));
    expect(answers[1]).toMatchObject(refusal('id', 'field "id" must be a string of at most 256 characters or a number from -9007199254740991 to 9007199254740991'));
    expect(answers[2]).toMatchObject(refusal('id'));
    for (const a of answers.slice(0, 3)) expect(a).not.toHaveProperty('id');
    // Numbers JSON carries exactly are echoed as they came, fractions included.
    const echoed = await ask(server, ['{"op":"ping","id":1.5}', '{"op":"ping","id":-9007199254740991}', '{"op":"ping","id":"x"}']);
    expect(echoed).toEqual([{ id: 1.5, ok: true }, { id: -9007199254740991, ok: true }, { id: 'x', ok: true }]);
    expect(answers[3]).toMatchObject({ id: 1, ...refusal('n', 'field "n" holds a number too large to represent') });
    expect(answers[4]).toMatchObject({ id: 2, ...refusal('v', 'field "v" holds a number too large to represent') });
  });

  it('refuses __proto__, constructor and prototype as keys anywhere, and deep nesting', async () => {
    server = await startServer();
    const answers = await ask(server, [
      '{"op":"ping","id":1,"__proto__":{"isAdmin":true}}',
      '{"op":"hello","id":2,"client":{"user":"alice","instance":"a-1","constructor":{"prototype":1}}}',
      '{"op":"ping","id":3,"extra":[1,{"prototype":null}]}',
      `{"op":"ping","id":4,"deep":${'['.repeat(50)}${']'.repeat(50)}}`,
      `{"op":"ping","id":5,"ok":${'{"a":'.repeat(6)}1${'}'.repeat(6)}}`,
    ]);
    expect(answers).toMatchObject([
      { id: 1, ...refusal('__proto__', 'field "__proto__" is not allowed: __proto__, constructor, prototype are reserved names') },
      { id: 2, ...refusal('client.constructor') },
      { id: 3, ...refusal('extra[1].prototype') },
      { id: 4, ...refusal('deep[0][0][0][0][0][0][0]', /nests deeper than 8 levels/) },
      { id: 5, ok: true },
    ]);
  });

  it('counts name lengths in characters and refuses longer ones', async () => {
    server = await startServer();
    const answers = await ask(
      server,
      [
        JSON.stringify({ op: 'hello', id: 1, client: { user: 'u'.repeat(257), instance: 'i' } }),
        JSON.stringify({ op: 'hello', id: 2, client: { user: '', instance: 'i' } }),
        JSON.stringify({ op: 'hello', id: 3, client: { user: '😀'.repeat(256), instance: 'i' } }),
      ],
      [],
    );
    expect(answers).toMatchObject([
      { id: 1, ...refusal('client.user', 'field "client.user" must be a string of 1 to 256 characters') },
      { id: 2, ...refusal('client.user') },
      expect.objectContaining({ id: 3, ok: true }),
    ]);
  });
});

describe('the web endpoint publishes what it enforces', () => {
  it('its OpenAPI document shows the JSON Schema derived from the shared message schemas', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const port = server.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port;
    const paths = (await call(`http://127.0.0.1:${port}/openapi.json`, 'GET')).body['paths'] as Record<string, { post: { requestBody: { content: Record<string, { schema: unknown }> }; parameters?: Array<{ name: string; schema: unknown }> } }>;
    expect(paths['/v1/leases']!.post.requestBody.content['application/json']!.schema).toEqual(toJsonSchema(acquireBody(true)));
    const id = toJsonSchema(LEASE_PARAMS) as { properties: { id: { description: string } } };
    const { description: _, ...idSchema } = id.properties.id;
    expect(paths['/v1/leases/{id}/renew']!.post.parameters?.find((p) => p.name === 'id')?.schema).toEqual(idSchema);
  });
});

describe('admin request parts', () => {
  it('reads the log limit from the query string and checks every filter like a name', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const t = await server.connect('alice');
    leaseOf(await t.request('acquire', { product: 'cad' }));
    const auth = { headers: { authorization: `Bearer ${readFileSync(server.config.adminTokenFile, 'utf8').trim()}` } };
    const base = `http://127.0.0.1:${server.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port}/v1/admin`;
    const log = await call(`${base}/log?limit=1&user=alice`, 'GET', undefined, auth);
    expect(log).toMatchObject({ status: 200, body: { ok: true, events: [{ user: 'alice' }] } });
    expect((log.body['events'] as unknown[]).length).toBe(1);
    for (const [query, field] of [['limit=0', 'limit'], ['limit=100001', 'limit'], ['limit=1e3', 'limit'], ['user=a%00b', 'user'], ['user=a&user=b', 'user'], ['since=soon', 'since']]) {
      const r = await call(`${base}/log?${query}`, 'GET', undefined, auth);
      expect([query, r.status, r.body['error']]).toEqual([query, 400, expect.objectContaining({ code: 'BAD_REQUEST', field })]);
    }
    const leases = await call(`${base}/leases?user=%01`, 'GET', undefined, auth);
    expect(leases).toMatchObject({ status: 400, body: { error: { field: 'user', message: expect.stringContaining('control characters') } } });
    const revoke = await call(`${base}/leases/x/revoke`, 'POST', { reason: 'line one\nline two' }, auth);
    expect(revoke).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST', field: 'reason' } } });
  });
});

describe('names are well-formed Unicode', () => {
  it('refuses a lone surrogate or a control character in a name, over TCP and HTTP alike', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const answers = await ask(
      server,
      [
        '{"op":"hello","id":1,"client":{"user":"\\ud800","instance":"i"}}',
        '{"op":"hello","id":2,"client":{"user":"bob\\udc00x","instance":"i"}}',
        '{"op":"hello","id":3,"client":{"user":"bob","instance":"i\\u0000"}}',
        '{"op":"hello","id":4,"client":{"user":"bob","instance":"i","host":"h\\nfake log line"}}',
      ],
      [],
    );
    expect(answers).toMatchObject([
      { id: 1, ...refusal('client.user', 'field "client.user" is not well-formed Unicode: a lone surrogate (U+D800) at character 1') },
      { id: 2, ...refusal('client.user', 'field "client.user" is not well-formed Unicode: a lone surrogate (U+DC00) at character 4') },
      { id: 3, ...refusal('client.instance', 'field "client.instance" must not contain control characters (U+0000 at character 2)') },
      { id: 4, ...refusal('client.host') },
    ]);
    const port = server.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port;
    const http = await call(`http://127.0.0.1:${port}/v1/leases`, 'POST', '{"client":{"user":"\\ud800","instance":"i"},"product":"cad"}');
    expect(http).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST', field: 'client.user', message: answers[0]!.error!.message } } });
    expect((await server.floatd.store.queryEvents({})).filter((e) => e.event === 'granted')).toEqual([]);
  });

  it('serves names outside the Basic Multilingual Plane: acquire, renew and release all work', async () => {
    server = await startServer();
    const t = await server.connect('𝒜lice😀', '實例-1');
    const lease = leaseOf(await t.request('acquire', { product: 'cad' }));
    expect(leaseOf(await t.request('renew', { lease: lease.id })).id).toBe(lease.id);
    expect(await t.request('release', { lease: lease.id })).toMatchObject({ ok: true, released: true });
    const other = await server.connect('bob');
    expect(errorOf(await other.request('renew', { lease: lease.id })).code).toBe('LEASE_NOT_FOUND');
  });
});

describe('client mistakes in the log', () => {
  it('a connection repeating a type-confused hello leaves a few debug lines, no errors, no stack traces', async () => {
    const { logger, lines } = capturingLogger();
    server = await startServer({ logger });
    const bad = '{"op":"hello","id":1,"v":{"toString":1},"client":{"user":"a","instance":"i"}}';
    const { replies } = await exchange(server.address, Array.from({ length: 2000 }, () => Buffer.from(bad)));
    expect(replies).toHaveLength(2000);
    expect(new Set(replies.map((r) => (JSON.parse(r) as Answer).error?.code))).toEqual(new Set(['BAD_REQUEST']));
    // Garbage on further connections (framing errors) goes the same way.
    for (let i = 0; i < 5; i++) await exchange(server.address, Array.from({ length: 20 }, () => Buffer.from('not json')));
    const logged = lines.filter((l) => l['msg'] !== undefined && String(l['msg']).startsWith('protocol error'));
    expect(logged.length).toBeGreaterThan(0);
    expect(logged.length).toBeLessThanOrEqual(2);
    expect(logged.every((l) => l['level'] === 20)).toBe(true);
    expect(lines.filter((l) => (l['level'] as number) >= 40)).toEqual([]);
    expect(JSON.stringify(lines)).not.toMatch(/stack|TypeError/);
  });
});
