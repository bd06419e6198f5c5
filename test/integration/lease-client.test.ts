import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { advanceUntil, FakeClock } from '../support/fake-clock.js';
import { newEd25519KeyPair } from '../../src/adapters/crypto/keys.js';
import { LeaseTokenSigner } from '../../src/adapters/crypto/lease-tokens.js';
import { LeaseClient, LeaseClientError, type DenialInfo, type LeaseClientOptions } from '../../src/client/index.js';
import { tempDir, until } from '../support/helpers.js';
import { unusedPort } from '../support/ports.js';
import { startServer, type TestServer } from '../support/server.js';

const servers: TestServer[] = [];
const clients: LeaseClient[] = [];
const fakes: Server[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.stop();
  for (const f of fakes.splice(0)) f.close();
});

async function server(opts: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  const s = await startServer({ flags: { leaseSeconds: 60, ...opts.flags }, ...opts });
  servers.push(s);
  return s;
}

function client(opts: Partial<LeaseClientOptions> & { server: string }): LeaseClient {
  const c = new LeaseClient({ user: 'alice', instance: `i-${clients.length}`, ...opts });
  clients.push(c);
  return c;
}


function record(c: LeaseClient): string[] {
  const seen: string[] = [];
  for (const e of ['acquired', 'renewed', 'lost', 'regained', 'revoked', 'denied'] as const) c.on(e, () => seen.push(e));
  return seen;
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('LeaseClient against a real server', () => {
  it('renews at half-lease, as the server says, on the monotonic clock', async () => {
    const clock = new FakeClock(Date.parse('2026-11-21T08:00:00Z'));
    const s = await server({ clock });
    const c = client({ server: s.address, clock });
    const seen = record(c);
    const lease = await c.acquire();
    expect(lease).toMatchObject({ leaseMs: 60_000, renewAfterMs: 30_000, product: 'cad' });
    expect(lease.claims).toMatchObject({ leaseId: lease.id, user: 'alice', instance: c.instance, product: 'cad' });
    clock.advance(29_999);
    await tick();
    expect(seen).toEqual(['acquired']);
    clock.advance(1);
    await once(c, 'renewed');
    expect((await s.floatd.store.allLeases())[0]!.expiresAt).toBe(clock.now() + 60_000);
    clock.advance(30_000);
    await once(c, 'renewed');
    expect(seen).toEqual(['acquired', 'renewed', 'renewed']);
    expect(c.lease?.id).toBe(lease.id);
  });

  it('keeps the lease through a server outage shorter than the time left', async () => {
    const clock = new FakeClock(Date.parse('2026-11-21T08:00:00Z'));
    const first = await startServer({ clock, flags: { leaseSeconds: 60 } });
    const c = client({ server: first.address, clock });
    const seen = record(c);
    const lease = await c.acquire();
    await first.stop();
    // Down for 40 s from here: the renewal at 30 s fails, retries back off, the lease has 60 s.
    await advanceUntil(clock, () => false, 40_000, 1000);
    expect(seen).toEqual(['acquired']);
    const again = await server({ clock, dataDir: first.config.dataDir, vendor: first.vendor, flags: { listeners: [first.address] } });
    await advanceUntil(clock, () => seen.includes('renewed'), 15_000);
    expect(seen).toEqual(['acquired', 'renewed']);
    expect(c.lease?.id).toBe(lease.id);
    expect((await again.floatd.store.allLeases()).map((l) => l.id)).toEqual([lease.id]);
  });

  it('reports lost after a longer outage, then regained when the server is back with a free seat', async () => {
    const clock = new FakeClock(Date.parse('2026-11-21T08:00:00Z'));
    const first = await startServer({ clock, flags: { leaseSeconds: 60 } });
    const c = client({ server: first.address, clock });
    const seen = record(c);
    const lost = new Promise((resolve) => c.once('lost', resolve));
    await c.acquire();
    await first.stop();
    await advanceUntil(clock, () => seen.includes('lost'), 70_000, 1000);
    expect(await lost).toMatchObject({ reason: expect.stringContaining('before the lease expired') });
    expect(c.lease).toBeNull();
    await advanceUntil(clock, () => seen.filter((e) => e === 'denied').length >= 1, 20_000, 1000);
    await server({ clock, dataDir: first.config.dataDir, vendor: first.vendor, flags: { listeners: [first.address] } });
    await advanceUntil(clock, () => seen.includes('regained'), 15_000, 1000);
    expect(seen[0]).toBe('acquired');
    expect(seen).toContain('lost');
    expect(seen.at(-1)).toBe('regained');
    expect(c.lease).not.toBeNull();
  });

  it('retries every interval while no seat is free, and gets one when it frees', async () => {
    const clock = new FakeClock(Date.parse('2026-11-21T08:00:00Z'));
    const s = await server({ clock, seats: 1 });
    const holder = client({ server: s.address, clock, user: 'bob' });
    await holder.acquire();
    const waiting = client({ server: s.address, clock });
    const denials: Array<[number, DenialInfo]> = [];
    waiting.on('denied', (d) => denials.push([clock.now(), d]));
    const acquired = waiting.acquire();
    await advanceUntil(clock, () => denials.length >= 1, 0);
    expect(denials[0]![1]).toMatchObject({ code: 'NO_FREE_SEATS', retryInMs: 10_000 });
    await advanceUntil(clock, () => denials.length >= 3, 25_000, 1000);
    expect(denials.map(([t]) => t - denials[0]![0])).toEqual([0, 10_000, 20_000]);
    await holder.release();
    await holder.release(); // idempotent
    await advanceUntil(clock, () => waiting.lease !== null, 11_000, 1000);
    expect((await acquired).product).toBe('cad');
    expect(denials).toHaveLength(3);
  });

  it('fails at once with retrying off: no seat, and no server', async () => {
    const s = await server({ seats: 1 });
    await client({ server: s.address, user: 'bob' }).acquire();
    const denied = client({ server: s.address, retryIntervalMs: 0 }).acquire();
    await expect(denied).rejects.toBeInstanceOf(LeaseClientError);
    await expect(denied).rejects.toMatchObject({ code: 'NO_FREE_SEATS' });
    const port = Number(s.address.split(':')[1]);
    await s.stop();
    servers.splice(0);
    await expect(client({ server: `127.0.0.1:${port}`, retryIntervalMs: 0 }).acquire()).rejects.toMatchObject({ code: 'SERVER_UNREACHABLE' });
  });

  it('passes a rule denial through with its reason', async () => {
    const s = await server({ flags: { 'rules.inline': 'CLT alice BLOCK' } });
    await expect(client({ server: s.address, retryIntervalMs: 0 }).acquire()).rejects.toMatchObject({ code: 'RULE_DENIED', reason: 'blocked' });
  });

  it('refuses a server whose signing key is not the pinned one', async () => {
    const s = await server();
    const other = await newEd25519KeyPair();
    const pinned = client({ server: s.address, serverPublicKey: other.publicJwk, retryIntervalMs: 5 });
    await expect(pinned.acquire()).rejects.toMatchObject({ code: 'TOKEN_INVALID', message: expect.stringContaining('pinned') });
    const fingerprint = (await s.floatd.status()).serverKeyFingerprint!;
    await expect(client({ server: s.address, serverKeyFingerprint: fingerprint }).acquire()).resolves.toMatchObject({ product: 'cad' });
    expect(await s.floatd.store.allLeases()).toHaveLength(1);
  });

  it('rejects a lease token signed with another key than the one the server announced', async () => {
    const announced = await newEd25519KeyPair();
    const forger = await LeaseTokenSigner.create((await newEd25519KeyPair()).privateJwk);
    const fake = createServer((socket) => {
      let buffer = '';
      socket.on('data', async (d) => {
        buffer += d.toString();
        for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
          const msg = JSON.parse(buffer.slice(0, nl)) as { id: number; op: string; client?: { user: string; instance: string } };
          buffer = buffer.slice(nl + 1);
          if (msg.op === 'hello') {
            socket.write(`${JSON.stringify({ id: msg.id, ok: true, serverTimeMs: Date.now(), publicKey: announced.publicJwk })}\n`);
          } else if (msg.op === 'acquire') {
            const now = Date.now();
            const lease = { id: 'l1', poolId: 'p', product: 'cad', user: 'alice', host: 'h', instance: 'i-0', remote: '', listener: 'tcp', grantedAt: now, renewedAt: now, expiresAt: now + 60_000, leaseMs: 60_000 };
            const token = await forger.sign(lease, now);
            socket.write(`${JSON.stringify({ id: msg.id, ok: true, lease: { id: 'l1', product: 'cad', expiresInMs: 60_000, renewAfterMs: 30_000, leaseMs: 60_000, token } })}\n`);
          }
        }
      });
    });
    fakes.push(fake);
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const port = (fake.address() as { port: number }).port;
    const c = client({ server: `127.0.0.1:${port}`, instance: 'i-0' });
    const denied = new Promise<DenialInfo>((r) => c.once('denied', r));
    await expect(c.acquire()).rejects.toMatchObject({ code: 'TOKEN_INVALID', message: expect.stringContaining('signature') });
    expect(await denied).toMatchObject({ code: 'TOKEN_INVALID', retryInMs: null });
  });

  it('tells the holder when its lease is revoked, and takes a seat from the new pool', async () => {
    const clock = new FakeClock(Date.now());
    const s = await server({ clock, evaluation: true });
    const c = client({ server: s.address, clock });
    const seen = record(c);
    await c.acquire();
    const token = await s.vendor.issue({ seats: 3, product: 'cad' });
    const { withLicensing } = await import('../../src/app/inspect.js');
    const { SystemClock } = await import('../../src/adapters/clock/system-clock.js');
    await withLicensing(s.config, new SystemClock(), (l) => l.add(token));
    await advanceUntil(clock, () => seen.includes('regained'), 5000);
    expect(seen).toEqual(['acquired', 'revoked', 'regained']);
    expect((await s.floatd.status()).mode).toBe('licensed');
  });

  it('release and close are idempotent and give the seat back', async () => {
    const s = await server();
    const c = client({ server: s.address });
    await c.acquire();
    expect(await s.floatd.store.allLeases()).toHaveLength(1);
    await c.release();
    expect(await s.floatd.store.allLeases()).toHaveLength(0);
    await c.release();
    await c.acquire();
    await c.close();
    await c.close();
    expect(await s.floatd.store.allLeases()).toHaveLength(0);
    await expect(c.acquire()).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
  });

  it('imports as floatd/client and, with releaseOnExit, releases on SIGTERM and then dies of it', async () => {
    const s = await server();
    const script = `
      import { LeaseClient } from 'floatd/client';
      const c = new LeaseClient({ server: ${JSON.stringify(s.address)}, user: 'exiting', releaseOnExit: true });
      const lease = await c.acquire();
      console.log(lease.id);
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '..', '..') });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => out.includes('\n'), 'the script to hold a lease');
    expect((await s.floatd.store.allLeases()).map((l) => l.id)).toEqual([out.trim()]);
    child.kill('SIGTERM');
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGTERM' });
    expect(await s.floatd.store.allLeases()).toEqual([]);
    expect(await s.floatd.store.queryEvents({ user: 'exiting', events: ['released'] })).toHaveLength(1);
  });

  it('keeps the process alive while acquire() waits for a server that is down, then, holding the lease, lets it exit and releases', async () => {
    const port = await unusedPort();
    // Nothing but the pending acquire() keeps this process alive, and nothing at all once it has the lease.
    const script = `
      import { LeaseClient } from 'floatd/client';
      const c = new LeaseClient({ server: '127.0.0.1:${port}', user: 'patient', releaseOnExit: true, retryIntervalMs: 100 });
      c.on('denied', (d) => console.log('denied', d.code));
      const lease = await c.acquire();
      console.log('lease', lease.id);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '..', '..') });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exit = once(child, 'exit') as Promise<[number | null, string | null]>;
    try {
      await until(() => {
        if (child.exitCode !== null) throw new Error(`the process ended while acquire() was waiting (status ${child.exitCode}): ${out}`);
        return (out.match(/denied SERVER_UNREACHABLE/g) ?? []).length >= 3;
      }, 'three refusals');
      const s = await server({ flags: { listeners: [`127.0.0.1:${port}`] } });
      expect(await exit).toEqual([0, null]);
      const id = /^lease (\S+)$/m.exec(out)?.[1];
      expect(out).not.toContain('SHUTTING_DOWN');
      expect((await s.floatd.store.queryEvents({ user: 'patient' })).map((e) => [e.event, e.leaseId])).toEqual([
        ['granted', id],
        ['released', id],
      ]);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('keeps the instance id in the file it is given', () => {
    const file = `${tempDir()}/state/instance-id`;
    const a = new LeaseClient({ server: '127.0.0.1:1', instanceFile: file });
    const b = new LeaseClient({ server: '127.0.0.1:1', instanceFile: file });
    expect(a.instance).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.instance).toBe(a.instance);
    expect(() => new LeaseClient({ server: 'ftp://example.com' })).toThrow(/host\[:port\]/);
  });
});
