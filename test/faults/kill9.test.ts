import Database from 'better-sqlite3';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { exited, killChildren, requireBuild, spawnFloatd } from '../support/cli.js';
import { tempDir } from '../support/helpers.js';
import { trustEvaluationTerms } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

const SEATS = 20;
const CLIENTS = 100;
const CYCLES = 5;

/** `floatd serve` in evaluation mode (SEATS seats from the product file trusted in dataDir), on a free port; resolves once it listens. */
function serve(dataDir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawnFloatd(['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--lease-seconds', '300']);
  let out = '';
  return new Promise((resolve, reject) => {
    const seen = (d: Buffer) => {
      out += d.toString();
      const m = /"port":(\d+)[^\n]*"msg":"listening"/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    };
    child.stdout!.on('data', seen);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`floatd serve exited with ${code}: ${out}`)));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('kill -9 under load', () => {
  it(`${CYCLES} SIGKILLs of floatd serve amid ${CLIENTS} clients on ${SEATS} seats: no acknowledged lease lost, never more leases than seats`, async () => {
    const dataDir = tempDir('floatd-kill9-');
    await trustEvaluationTerms(dataDir, { seats: SEATS, days: 30 });
    let port = 0;
    let stopping = false;
    /** What the clients believe: a lease counts from the grant's reply until its release is sent. */
    const believed = new Map<number, string>();
    /** Each lease's secret from its grant: a connection after a restart must show it. */
    const secrets = new Map<number, string>();
    const violations: string[] = [];
    let maxBelieved = 0;
    let maxStored = 0;
    let acks = 0;
    const heldAtKill: number[] = [];

    const client = async (n: number): Promise<void> => {
      let conn: TcpTransport | null = null;
      let connectedTo = 0;
      while (!stopping) {
        try {
          if (conn === null || conn.closed || connectedTo !== port) {
            conn?.close();
            conn = null;
            connectedTo = port;
            const c = await TcpTransport.connect(`127.0.0.1:${connectedTo}`, { connectTimeoutMs: 1000, requestTimeoutMs: 3000 });
            const hello = await c.request('hello', { v: 1, client: { user: `u${n}`, host: 'load', instance: `i${n}` } });
            if (!hello.ok) throw new Error(JSON.stringify(hello));
            conn = c;
          }
          const held = believed.get(n);
          if (held === undefined) {
            // With the last lease's secret, as the SDK does: a release the kill cut short left that lease standing.
            const r = await conn.request('acquire', { product: 'cad', leaseSecret: secrets.get(n) });
            if (r.ok) {
              const { lease, leaseSecret } = r as unknown as { lease: { id: string }; leaseSecret?: string };
              const id = lease.id;
              believed.set(n, id);
              // A renewed lease (a release the kill cut short) keeps the secret it had.
              if (leaseSecret !== undefined) secrets.set(n, leaseSecret);
              acks++;
              maxBelieved = Math.max(maxBelieved, believed.size);
              if (believed.size > SEATS) violations.push(`clients hold ${believed.size} leases on ${SEATS} seats`);
            } else if (r.error.code !== 'NO_FREE_SEATS' && r.error.code !== 'LEASE_SECRET_MISMATCH') {
              // LEASE_SECRET_MISMATCH: a grant committed just before a kill whose reply never came; its client never
              // had that lease (nor its secret), and gets a seat once it expires.
              violations.push(`acquire of u${n}: ${r.error.code} ${r.error.message}`);
            }
          } else if (Math.random() < 0.3) {
            believed.delete(n);
            await conn.request('release', { lease: held, leaseSecret: secrets.get(n) });
            acks++;
          } else {
            const r = await conn.request('renew', { lease: held, leaseSecret: secrets.get(n) });
            if (r.ok) acks++;
            else violations.push(`acknowledged lease ${held} of u${n} lost: ${r.error.code} ${r.error.message}`);
          }
        } catch {
          // The server was killed: reconnect once it is back (on its new port).
          conn?.close();
          conn = null;
          await sleep(30);
        }
        await sleep(Math.random() * 15);
      }
      conn?.close();
    };

    /** The server's own view, read from its database beside it. */
    const stored = (): string[] => {
      const db = new Database(join(dataDir, 'floatd.db'), { readonly: true });
      try {
        return db.prepare<[], { id: string }>('SELECT id FROM leases').all().map((r) => r.id);
      } finally {
        db.close();
      }
    };
    const checkStored = (when: string) => {
      const ids = stored();
      maxStored = Math.max(maxStored, ids.length);
      if (ids.length > SEATS) violations.push(`${when}: the database holds ${ids.length} leases on ${SEATS} seats`);
      const kept = new Set(ids);
      for (const [n, id] of believed) if (!kept.has(id)) violations.push(`${when}: acknowledged lease ${id} of u${n} is not in the database`);
    };

    let server = await serve(dataDir);
    port = server.port;
    const load = Array.from({ length: CLIENTS }, (_, n) => client(n));
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const before = acks;
      const started = Date.now();
      // Mid-load: after a few hundred acknowledged operations, at a random moment.
      while ((acks - before < 300 || Date.now() - started < 300 + Math.random() * 400) && Date.now() - started < 10_000) {
        await sleep(20);
        maxStored = Math.max(maxStored, stored().length);
      }
      expect(acks - before, `cycle ${cycle}: the clients got going`).toBeGreaterThanOrEqual(300);
      server.child.kill('SIGKILL');
      await exited(server.child);
      // No reply can come now: what the clients believe is fixed until the restart.
      heldAtKill.push(believed.size);
      checkStored(`after kill ${cycle + 1}`);
      server = await serve(dataDir);
      port = server.port;
    }
    // One more stretch of load after the last restart, so every held lease is renewed there.
    const before = acks;
    while (acks - before < 300) await sleep(20);
    stopping = true;
    await Promise.all(load);
    server.child.kill('SIGTERM');
    expect((await exited(server.child)).code).toBe(0);
    checkStored('after the last stop');

    expect(violations).toEqual([]);
    expect(maxBelieved).toBeLessThanOrEqual(SEATS);
    expect(maxStored).toBeLessThanOrEqual(SEATS);
    // Leases were held at every kill, so their survival was tested; the load filled the pool, so the bound was.
    expect(Math.min(...heldAtKill)).toBeGreaterThan(0);
    expect(maxStored).toBe(SEATS);
  }, 90_000);
});
