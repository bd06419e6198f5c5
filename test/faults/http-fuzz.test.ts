import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { call } from '../support/http.js';
import { fuzzParameters, hostileString, hostileValue, type JsonText } from '../support/fuzz.js';
import { capturingLogger, startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

const client = (user: string) => ({ user, instance: `${user}-1`, host: 'h' });

/** A body for a route, with one field (maybe nested, maybe new) replaced by hostile JSON text. */
const body: fc.Arbitrary<{ path: 'acquire' | 'renew' | 'release' | 'revoke' | 'suspend'; text: string }> = fc
  .tuple(
    fc.constantFrom('acquire', 'renew', 'release', 'revoke', 'suspend'),
    fc.constantFrom('client', 'client.user', 'client.instance', 'client.host', 'product', 'reason', 'listener', '__proto__', 'constructor', 'extra', 'whole'),
    hostileValue,
  )
  .map(([path, field, value]) => {
    const base: Record<string, JsonText> = {
      client: JSON.stringify(client('fz')),
      ...(path === 'acquire' ? { product: '"cad"' } : {}),
      ...(path === 'revoke' ? { reason: '"x"' } : {}),
      ...(path === 'suspend' ? { listener: '"tcp"' } : {}),
    };
    if (field === 'whole') return { path, text: value };
    const [top, inner] = field.split('.') as [string, string | undefined];
    if (inner !== undefined) {
      base[top] = `{"user":"fz","instance":"fz-1",${JSON.stringify(inner)}:${value}}`;
    } else {
      base[top] = value;
    }
    return { path, text: `{${Object.entries(base).map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}` };
  });

/** A lease id for the URL: usually plain, sometimes hostile (percent-encoded byte by byte, so lone surrogates go as bytes). */
const leaseId = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('6f1c0d2e-0000-4000-8000-000000000000', 'nope') },
  { weight: 1, arbitrary: hostileString.filter((s) => s.length > 0).map((s) => [...Buffer.from(s.slice(0, 300))].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')) },
);

describe('web endpoint under hostile bodies (property-based)', () => {
  it('never answers 500 or INTERNAL, names the field of every refused body, and a well-behaved client is served throughout', async () => {
    const { seed, numRuns } = fuzzParameters(300);
    const { logger, lines } = capturingLogger();
    server = await startServer({ seats: 3, logger, flags: { 'http.listen': ['127.0.0.1:0'] } });
    const port = server.floatd.listenerStatus().find((l) => l.scheme === 'http')!.port;
    const base = `http://127.0.0.1:${port}`;

    let stop = false;
    const failures: string[] = [];
    let requests = 0;
    const first = await call(`${base}/v1/leases`, 'POST', { client: client('steady'), product: 'cad' });
    expect(first.status).toBe(201);
    const lease = (first.body['lease'] as { id: string }).id;
    const leaseSecret = first.body['leaseSecret'];
    const steady = (async () => {
      while (!stop) {
        for (const r of [
          await call(`${base}/v1/leases/${lease}/renew`, 'POST', { client: client('steady'), leaseSecret }),
          await call(`${base}/v1/leases`, 'POST', { client: client('steady'), product: 'cad', leaseSecret }),
        ]) {
          requests++;
          if (r.status !== 200) failures.push(JSON.stringify(r.body));
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    try {
      await fc.assert(
        fc.asyncProperty(body, leaseId, async ({ path, text }, id) => {
          const url = {
            acquire: '/v1/leases',
            renew: `/v1/leases/${id}/renew`,
            release: `/v1/leases/${id}/release`,
            revoke: `/v1/admin/leases/${id}/revoke`,
            suspend: '/v1/admin/listeners/suspend',
          }[path];
          const r = await call(`${base}${url}`, 'POST', text);
          const error = r.body['error'] as { code: string; field?: string } | undefined;
          const what = `POST ${url} ${text.slice(0, 300)} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`;
          expect(r.status, what).not.toBe(500);
          expect(error?.code, what).not.toBe('INTERNAL');
          const plainUrl = !url.includes('%');
          if (plainUrl && error?.code === 'BAD_REQUEST' && Buffer.byteLength(text) <= 16_384) expect(error.field, what).toEqual(expect.any(String));
        }),
        { seed, numRuns },
      );
    } catch (err) {
      throw new Error(`fuzzing the web endpoint failed (seed ${seed}; FUZZ_SEED=${seed} reruns it): ${(err as Error).message}`);
    } finally {
      stop = true;
      await steady;
    }
    expect(failures).toEqual([]);
    expect(requests).toBeGreaterThan(0);
    expect((await call(`${base}/healthz`, 'GET')).status).toBe(200);
    expect(lines.filter((l) => l['err'] !== undefined || (l['level'] as number) >= 50)).toEqual([]);
  });
});
