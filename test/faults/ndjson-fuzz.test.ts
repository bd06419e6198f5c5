import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { TcpTransport } from '../../src/client/tcp-transport.js';
import { exchange, fuzzParameters, hostileFrame } from '../support/fuzz.js';
import { capturingLogger, leaseOf, startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

/** A client doing what a product instance does, as fast as it can, until told to stop; every reply must be a success. */
function steadyClient(t: TcpTransport) {
  let stop = false;
  const failures: string[] = [];
  let requests = 0;
  const running = (async () => {
    const first = await t.request('acquire', { product: 'cad' });
    const lease = leaseOf(first).id;
    while (!stop) {
      for (const [op, fields] of [['renew', { lease }], ['acquire', { product: 'cad' }], ['ping', {}]] as const) {
        const r = await t.request(op, fields);
        requests++;
        if (!r.ok) failures.push(`${op}: ${JSON.stringify(r)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    async stop() {
      stop = true;
      await running;
      return { requests, failures };
    },
  };
}

describe('NDJSON door under hostile input (property-based)', () => {
  it('never answers INTERNAL, stays up, logs no errors, and a well-behaved client is served throughout', async () => {
    const { seed, numRuns } = fuzzParameters(500);
    const { logger, lines } = capturingLogger();
    server = await startServer({ seats: 3, logger });
    const steady = steadyClient(await server.connect('steady', 'steady-1'));
    const address = server.address;
    let frames = 0;
    const codes = new Map<string, number>();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(hostileFrame, { minLength: 1, maxLength: 20 }), fc.boolean(), async (hostile, helloFirst) => {
          const hello = Buffer.from('{"op":"hello","id":"h","client":{"user":"fz-ann","instance":"i1"}}');
          const sent = helloFirst ? [hello, ...hostile] : hostile;
          frames += sent.length;
          const { replies, timedOut } = await exchange(address, sent);
          expect(timedOut, 'the server answers and closes after the client half-closes').toBe(false);
          for (const line of replies) {
            const reply = JSON.parse(line) as { ok: boolean; error?: { code: string; message: string } };
            const code = reply.ok ? 'ok' : (reply.error?.code ?? '?');
            codes.set(code, (codes.get(code) ?? 0) + 1);
            expect(code, `${line}\nin answer to:\n${sent.map((f) => f.toString('utf8')).join('\n')}`).not.toBe('INTERNAL');
            expect(typeof reply.ok).toBe('boolean');
          }
        }),
        { seed, numRuns, endOnFailure: false },
      );
    } catch (err) {
      throw new Error(`fuzzing the NDJSON door failed (seed ${seed}; FUZZ_SEED=${seed} reruns it): ${(err as Error).message}`);
    } finally {
      const { requests, failures } = await steady.stop();
      expect(failures).toEqual([]);
      expect(requests).toBeGreaterThan(0);
    }
    // Up and serving: a new client gets a seat's worth of answers.
    const after = await server.connect('after', 'after-1');
    expect((await after.request('ping', {})).ok).toBe(true);
    expect(frames).toBeGreaterThan(numRuns);
    // Most frames reach validation, not just the framing layer.
    expect(codes.get('BAD_REQUEST') ?? 0).toBeGreaterThan(numRuns);
    expect(lines.filter((l) => (l['level'] as number) >= 40).map((l) => l['msg'])).toEqual([]);
    expect(lines.filter((l) => l['err'] !== undefined)).toEqual([]);
  });
});
