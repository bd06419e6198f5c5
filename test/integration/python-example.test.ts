import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SystemClock } from '../../src/adapters/clock/system-clock.js';
import { withLicensing } from '../../src/app/inspect.js';
import { makeCerts } from '../support/certs.js';
import { errorOf, startServer, type TestServer } from '../support/server.js';

const EXAMPLE = join(import.meta.dirname, '..', '..', 'examples', 'python', 'floatd_client.py');
const PYTHON = 'python3';
const HAVE_PYTHON = spawnSync(PYTHON, ['--version']).status === 0;
const IN_CI = /^(1|true|yes)$/i.test(process.env['CI'] ?? '');

type Line = Record<string, unknown>;

interface PythonRun {
  readonly child: ChildProcess;
  /** Its stdout, one parsed JSON object per line (a line that is not JSON is kept as `{ notJson }`). */
  readonly lines: Line[];
  readonly err: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first line from `from` on that matches, failing after `timeoutMs`. */
  waitFor(what: string, match: (l: Line) => boolean, opts?: { from?: number; timeoutMs?: number }): Promise<Line>;
}

const running: ChildProcess[] = [];
const servers: TestServer[] = [];
afterEach(async () => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of servers.splice(0)) await s.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Starts the example; it is killed if still running after `killAfterMs`. */
function startPython(args: string[], killAfterMs = 20_000): PythonRun {
  const child = spawn(PYTHON, [EXAMPLE, ...args], { env: { PATH: process.env['PATH'] } });
  running.push(child);
  const lines: Line[] = [];
  let pending = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    pending += d.toString();
    const parts = pending.split('\n');
    pending = parts.pop()!;
    for (const p of parts.filter((l) => l.trim() !== '')) {
      try {
        lines.push(JSON.parse(p) as Line);
      } catch {
        lines.push({ notJson: p });
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal });
    });
  });
  return {
    child,
    lines,
    err: () => err,
    exited,
    async waitFor(what, match, { from = 0, timeoutMs = 10_000 } = {}) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const found = lines.slice(from).find(match);
        if (found !== undefined) return found;
        if (Date.now() > until || child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`no ${what} from the Python client; it printed:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n${err}`);
        }
        await sleep(25);
      }
    },
  };
}

async function python(args: string[], killAfterMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; lines: Line[]; err: string }> {
  const run = startPython(args, killAfterMs);
  const { code, signal } = await run.exited;
  return { code, signal, lines: run.lines, err: run.err() };
}

async function server(opts: Parameters<typeof startServer>[0] = {}): Promise<TestServer> {
  const s = await startServer(opts);
  servers.push(s);
  return s;
}

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as { port: number };
  await new Promise((r) => probe.close(r));
  return port;
}

describe('the Python example client (docs/client.md)', () => {
  if (!HAVE_PYTHON) {
    // Never a silent pass: in CI a missing interpreter fails; elsewhere the skip is listed by name.
    it.skipIf(!IN_CI)(`needs ${PYTHON}, which is not installed`, () => {
      throw new Error(`${PYTHON} is not on PATH: the Python example client cannot be tested`);
    });
    return;
  }

  it('acquires, renews and releases against a real server', async () => {
    const s = await server();
    const r = await python(['--server', s.address, '--product', 'cad', '--user', 'py', '--instance', 'py-1', '--hold', '1', '--renew-after-ms', '200']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const kinds = r.lines.map((l) => Object.keys(l)[0]);
    expect(kinds[0]).toBe('connected');
    expect(r.lines[1]).toMatchObject({ acquired: expect.any(String), product: 'cad' });
    expect(r.lines[1]!['expires_in_ms']).toBeGreaterThan(1_790_000);
    expect(kinds.filter((k) => k === 'renewed').length).toBeGreaterThanOrEqual(2);
    const leaseId = r.lines[1]!['acquired'];
    expect(r.lines.at(-1)).toEqual({ released: leaseId });
    const log = await s.floatd.store.queryEvents({ user: 'py' });
    expect(log[0]).toMatchObject({ event: 'granted', leaseId, instance: 'py-1' });
    expect(log.filter((e) => e.event === 'renewed').length).toBeGreaterThanOrEqual(2);
    expect(log.at(-1)).toMatchObject({ event: 'released', leaseId });
    expect(await s.floatd.store.allLeases()).toEqual([]);
  });

  it('reports no free seat and gives up when retrying is off', async () => {
    const s = await server({ seats: 1 });
    await (await s.connect('bob')).request('acquire', {});
    const r = await python(['--server', s.address, '--user', 'py', '--retry-seconds', '0']);
    expect(r.err).toBe('');
    expect(r.code).toBe(1);
    expect(r.lines.at(-1)).toMatchObject({ denied: 'NO_FREE_SEATS', message: expect.stringContaining('in use'), retry_in_s: null });
  });

  it('keeps its lease through a server outage over its renewal time, renewing the same lease after', async () => {
    // A 30 s lease, renewed 2 s after it is granted (--renew-after-ms). The server is down from 0.5 s
    // to 3.5 s, so that renewal fails with most of the lease still left: the client must keep trying
    // every --retry-seconds (1 s) at most, not wait another renewal period (2 s; with a real half-lease,
    // the lease could be gone by then).
    const s = await server({ flags: { leaseSeconds: 30 } });
    const run = startPython(['--server', s.address, '--user', 'py', '--instance', 'py-1', '--hold', '60', '--renew-after-ms', '2000', '--retry-seconds', '1'], 40_000);
    const acquired = await run.waitFor('lease', (l) => 'acquired' in l);
    const granted = Date.now();
    const leaseId = acquired['acquired'];
    expect(await s.floatd.store.allLeases()).toMatchObject([{ id: leaseId, leaseMs: 30_000 }]);

    await sleep(granted + 500 - Date.now());
    await s.stop();
    await sleep(granted + 3_500 - Date.now());
    const restarted = await server({ dataDir: s.config.dataDir, vendor: s.vendor, flags: { leaseSeconds: 30, listeners: [s.address] } });
    expect(restarted.address).toBe(s.address);
    const from = run.lines.length;
    await run.waitFor('renewal after the restart', (l) => l['renewed'] === leaseId, { from, timeoutMs: 8_000 });
    run.child.kill('SIGTERM');

    expect(await run.exited).toEqual({ code: 143, signal: null });
    expect(run.err()).toBe('');
    const failed = run.lines.filter((l) => 'renew_failed' in l);
    expect(failed.length).toBeGreaterThanOrEqual(2);
    for (const f of failed) expect(f).toMatchObject({ renew_failed: leaseId, retry_in_s: expect.any(Number), expires_in_s: expect.any(Number) });
    expect(Math.max(...failed.map((f) => f['retry_in_s'] as number))).toBeLessThanOrEqual(1);
    expect(run.lines.some((l) => 'lost' in l || 'regained' in l)).toBe(false);
    expect(run.lines.at(-1)).toEqual({ released: leaseId });
    const log = await restarted.floatd.store.queryEvents({ user: 'py' });
    expect(log.filter((e) => e.event === 'granted').map((e) => e.leaseId)).toEqual([leaseId]);
    expect(log.filter((e) => e.event === 'renewed').map((e) => e.leaseId)).toContain(leaseId);
    expect(log.some((e) => e.event === 'expired')).toBe(false);
    expect(log.at(-1)).toMatchObject({ event: 'released', leaseId });
  }, 40_000);

  it('stops when the hold time is over even though it never got a seat', async () => {
    const s = await server({ seats: 1 });
    await (await s.connect('bob')).request('acquire', {});
    const r = await python(['--server', s.address, '--user', 'py', '--hold', '1.5', '--retry-seconds', '0.5'], 15_000);
    expect(r.err).toBe('');
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 1, signal: null });
    const denied = r.lines.filter((l) => 'denied' in l);
    expect(denied.length).toBeGreaterThanOrEqual(2);
    expect(denied.slice(0, -1).every((l) => l['retry_in_s'] === 0.5)).toBe(true);
    // The last refusal says it will not try again: the next try would come after the hold time.
    expect(r.lines.at(-1)).toMatchObject({ denied: 'NO_FREE_SEATS', retry_in_s: null });
  });

  it('says the server revoked its lease, never that it released it, and takes a seat again', async () => {
    const s = await server();
    const run = startPython(['--server', s.address, '--user', 'py', '--instance', 'py-1', '--hold', '3', '--retry-seconds', '1']);
    const first = (await run.waitFor('lease', (l) => 'acquired' in l))['acquired'];
    const keyId = (await s.floatd.status()).keys[0]!.id;
    // The key is replaced: its leases are revoked, and the new key has seats.
    const renewal = await s.vendor.issue({ product: 'cad', seats: 5 });
    await withLicensing(s.config, new SystemClock(), async (l) => {
      await l.add(renewal);
      await l.remove(keyId);
    });

    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(run.err()).toBe('');
    expect(run.lines.filter((l) => Object.values(l).includes(first)).map((l) => Object.keys(l)[0])).toEqual(['acquired', 'revoked']);
    expect(run.lines).toContainEqual({ revoked: first, reason: 'its license key was removed' });
    // The client takes a seat of the new key.
    const second = run.lines.find((l) => 'regained' in l)?.['regained'];
    expect(second).toEqual(expect.any(String));
    expect(second).not.toBe(first);
    expect(run.lines.at(-1)).toEqual({ released: second });
    const log = await s.floatd.store.queryEvents({ user: 'py' });
    expect(log.filter((e) => e.leaseId === first).map((e) => e.event)).toEqual(['granted', 'revoked']);
    expect(log.at(-1)).toMatchObject({ event: 'released', leaseId: second });
  });

  it('reports a lease the server no longer knows as lost, then takes a new one', async () => {
    const s = await server();
    const run = startPython(['--server', s.address, '--user', 'py', '--instance', 'py-1', '--hold', '2', '--renew-after-ms', '300', '--retry-seconds', '1']);
    const first = (await run.waitFor('lease', (l) => 'acquired' in l))['acquired'];
    // Nobody else can end it for the holder: another connection naming the same user and instance lacks its secret.
    expect(errorOf(await (await s.connect('py', 'py-1')).request('release', { lease: first })).code).toBe('LEASE_SECRET_MISMATCH');
    // The server forgets it (a database restored from before the grant, say): the holder's connection is not told.
    await s.floatd.store.unit((u) => u.apply({ writes: [{ op: 'delete', leaseId: String(first) }], log: [] }));

    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(run.err()).toBe('');
    expect(run.lines).toContainEqual({ lost: first, code: 'LEASE_NOT_FOUND', message: expect.stringContaining(String(first)) });
    const second = run.lines.find((l) => 'regained' in l)?.['regained'];
    expect(second).toEqual(expect.any(String));
    expect(second).not.toBe(first);
    expect(run.lines.at(-1)).toEqual({ released: second });
  });

  it('renews the same lease on the next server of the list when the one it uses goes away', async () => {
    const first = await startServer({ flags: { leaseSeconds: 30 } });
    const next = `127.0.0.1:${await closedPort()}`;
    const run = startPython(['--server', `${first.address},${next}`, '--user', 'py', '--instance', 'py-1', '--hold', '60'], 30_000);
    const acquired = await run.waitFor('lease', (l) => 'acquired' in l);
    const leaseId = acquired['acquired'];
    expect(run.lines[0]).toMatchObject({ connected: first.address });
    await first.stop();
    // The same cluster's next node: the first one's data directory (its leases, its key) at the next address.
    const node = await server({ dataDir: first.config.dataDir, vendor: first.vendor, flags: { leaseSeconds: 30, listeners: [next] } });
    await run.waitFor('a connection to the next server', (l) => l['connected'] === next);
    await run.waitFor('the renewal there', (l) => l['renewed'] === leaseId);
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual({ code: 143, signal: null });
    expect(run.err()).toBe('');
    expect(run.lines.some((l) => 'lost' in l || 'regained' in l)).toBe(false);
    expect(run.lines.at(-1)).toEqual({ released: leaseId });
    const log = (await node.floatd.store.queryEvents({ user: 'py' })).filter((e) => e.leaseId !== null);
    expect(log.map((e) => [e.event, e.leaseId])).toEqual([
      ['granted', leaseId],
      ['renewed', leaseId],
      ['released', leaseId],
    ]);
  });

  it('ends cleanly with the code and message when the server refuses for good or cannot be reached', async () => {
    const s = await server();
    // Retrying is on (every 10 s), but no amount of waiting installs a key for another product.
    const unknown = await python(['--server', s.address, '--user', 'py', '--product', 'nosuch']);
    expect({ code: unknown.code, err: unknown.err }).toEqual({ code: 1, err: '' });
    expect(unknown.lines.at(-1)).toEqual({ denied: 'UNKNOWN_PRODUCT', reason: null, message: expect.stringContaining('"nosuch"'), retry_in_s: null });

    const badHello = await python(['--server', s.address, '--user', 'u'.repeat(300)]);
    expect({ code: badHello.code, err: badHello.err }).toEqual({ code: 1, err: '' });
    expect(badHello.lines.at(-1)).toMatchObject({ denied: 'BAD_REQUEST', message: expect.stringContaining('client.user'), retry_in_s: null });

    const nobody = await python(['--server', `127.0.0.1:${await closedPort()}`, '--user', 'py', '--retry-seconds', '0']);
    expect({ code: nobody.code, err: nobody.err }).toEqual({ code: 1, err: '' });
    expect(nobody.lines).toEqual([{ unreachable: expect.stringMatching(/refused/i), retry_in_s: null }]);
  });

  it('with --tls speaks the protocol inside TLS: trusts --ca, shows --cert/--key, and treats a failed handshake as unreachable', async () => {
    const certs = makeCerts();
    const s = await server({
      flags: { listeners: ['tls://127.0.0.1:0'], 'tls.certFile': certs.serverCert, 'tls.keyFile': certs.serverKey, 'tls.clientCertificates': 'require', 'tls.clientCaFile': certs.caFile },
    });
    const port = s.floatd.listenerStatus().find((l) => l.scheme === 'tls')!.port;
    const address = `127.0.0.1:${port}`;
    const mine = ['--cert', certs.clientCert, '--key', certs.clientKey];
    const r = await python(['--server', address, '--tls', '--ca', certs.caFile, ...mine, '--user', 'py', '--instance', 'py-1', '--hold', '1', '--renew-after-ms', '200']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.lines[0]).toEqual({ connected: address, server_version: expect.any(String) });
    const leaseId = r.lines[1]!['acquired'];
    expect(leaseId).toEqual(expect.any(String));
    expect(r.lines.filter((l) => l['renewed'] === leaseId).length).toBeGreaterThanOrEqual(2);
    expect(r.lines.at(-1)).toEqual({ released: leaseId });
    const log = await s.floatd.store.queryEvents({ user: 'py' });
    expect(log.map((e) => e.listener)).toEqual(log.map(() => 'tls'));
    expect([log[0]?.event, log.at(-1)?.event]).toEqual(['granted', 'released']);

    const [strangeServer, noCertificate] = await Promise.all([
      python(['--server', address, '--tls', '--ca', join(certs.dir, 'other-ca.crt'), ...mine, '--user', 'py', '--retry-seconds', '0']),
      python(['--server', address, '--tls', '--ca', certs.caFile, '--user', 'py', '--retry-seconds', '0']),
    ]);
    for (const [run, why] of [
      [strangeServer, /CERTIFICATE_VERIFY_FAILED/],
      [noCertificate, /CERTIFICATE_REQUIRED|certificate required/i],
    ] as const) {
      expect({ code: run.code, err: run.err }).toEqual({ code: 1, err: '' });
      expect(run.lines).toEqual([{ unreachable: expect.stringMatching(why), retry_in_s: null }]);
    }
    expect(await s.floatd.store.allLeases()).toEqual([]);
  });

  it('refuses TLS flags that do not go together', async () => {
    const [caWithoutTls, certWithoutKey, url] = await Promise.all([
      python(['--server', 'localhost', '--ca', 'ca.pem']),
      python(['--server', 'localhost', '--tls', '--cert', 'client.pem']),
      python(['--server', 'tls://localhost']),
    ]);
    expect(caWithoutTls).toMatchObject({ code: 2, lines: [], err: expect.stringContaining('--ca, --cert and --key need --tls') });
    expect(certWithoutKey).toMatchObject({ code: 2, lines: [], err: expect.stringContaining('--cert and --key go together') });
    expect(url).toMatchObject({ code: 2, lines: [], err: expect.stringContaining('add --tls for a tls:// listener') });
  });

  it('releases on SIGTERM and SIGINT, then exits as the signal asks', async () => {
    const s = await server();
    for (const [signal, status] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
      const run = startPython(['--server', s.address, '--user', 'py', '--instance', `py-${signal}`, '--hold', '60']);
      const leaseId = (await run.waitFor('lease', (l) => 'acquired' in l))['acquired'];
      run.child.kill(signal);
      expect(await run.exited).toEqual({ code: status, signal: null });
      expect(run.err()).toBe('');
      expect(run.lines.slice(-2)).toEqual([{ stopping: signal }, { released: leaseId }]);
    }
    expect(await s.floatd.store.allLeases()).toEqual([]);
  });
});
