import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cli, exited, floatd, floatdAsync, killChildren, MAIN, requireBuild, spawnFloatd } from '../support/cli.js';
import { withLicensing } from '../../src/app/inspect.js';
import { SystemClock } from '../../src/adapters/clock/system-clock.js';
import { formatDuration, NO_LEASE_STATUS } from '../../src/cli/run.js';
import { tempDir, until } from '../support/helpers.js';
import { unusedPort } from '../support/ports.js';
import { leaseOf, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function server(seats = 5, flags: Record<string, unknown> = {}): Promise<TestServer> {
  const s = await startServer({ seats, flags });
  servers.push(s);
  return s;
}

const count = (text: string, what: string) => text.split(what).length - 1;

const node = process.execPath;

describe('floatd run', () => {
  it('holds a lease while the command runs, releases it when the command exits, and exits with its status', async () => {
    const s = await server();
    const r = await floatdAsync(['run', '--server', s.address, '--user', 'ci', '--', node, '-e', 'console.log("running"); process.exit(3)']);
    expect(r.code).toBe(3);
    expect(r.out).toBe('running');
    expect(r.err).toMatch(/lease .* on cad held \(renewing every 15 min\)/);
    expect(await s.floatd.store.allLeases()).toEqual([]);
    const log = await s.floatd.store.queryEvents({ events: ['granted', 'released'] });
    expect(log.map((e) => [e.event, e.user])).toEqual([
      ['granted', 'ci'],
      ['released', 'ci'],
    ]);
  });

  it('takes no lease for a command that cannot be started: 127 not found, 126 not executable', async () => {
    const s = await server();
    const [missing, notOnPath, notExecutable] = await Promise.all([
      floatdAsync(['run', '--server', s.address, '--', './no-such-product', '--flag']),
      floatdAsync(['run', '--server', s.address, '--', 'no-such-product-anywhere']),
      floatdAsync(['run', '--server', s.address, '--', join(import.meta.dirname, 'run.test.ts')]),
    ]);
    expect(missing).toMatchObject({ code: 127, err: 'floatd run: cannot run ./no-such-product: no such file; no lease was taken' });
    expect(notOnPath.code).toBe(127);
    expect(notOnPath.err).toContain('not found on PATH');
    expect(notExecutable.code).toBe(126);
    expect(await s.floatd.store.queryEvents({ events: ['granted'] })).toEqual([]);
  });

  it('forwards SIGTERM to the command, releases the lease and exits like the command', async () => {
    const s = await server();
    const child = spawnFloatd(['run', '--server', s.address, '--', node, '-e', 'console.log("up"); setInterval(() => {}, 1000)']);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => out.includes('up'), 'the command to start');
    expect(await s.floatd.store.allLeases()).toHaveLength(1);
    child.kill('SIGTERM');
    expect(await exited(child)).toEqual({ code: 143, signal: null });
    expect(await s.floatd.store.allLeases()).toEqual([]);
    expect(await s.floatd.store.queryEvents({ events: ['released'] })).toHaveLength(1);
  });

  it('waits for a seat, saying why, and runs the command once one frees', async () => {
    const s = await server(1);
    const holder = await s.connect('bob');
    const held = leaseOf(await holder.request('acquire', {}));
    const child = spawnFloatd(['run', '--server', s.address, '--retry-seconds', '1', '--', node, '-e', 'process.exit(0)']);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await until(() => (err.match(/waiting for a lease: NO_FREE_SEATS/g) ?? []).length >= 2, 'two retries');
    expect(err).toContain('trying again in 1 s');
    await holder.request('release', { lease: held.id });
    expect(await exited(child)).toEqual({ code: 0, signal: null });
    expect(err).toMatch(/exited with status 0; lease .* released/);
  });

  it('keeps waiting while the server is unreachable, and runs the command once it is up', async () => {
    const port = await unusedPort();
    const marker = join(tempDir(), 'ran.flag');
    const script = `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'x'); process.exit(7)`;
    const child = spawnFloatd(['run', '--server', `127.0.0.1:${port}`, '--retry-seconds', '1', '--', node, '-e', script]);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await until(() => {
      if (child.exitCode !== null) throw new Error(`floatd run gave up (status ${child.exitCode}): ${err}`);
      return err.includes('waiting for a lease: SERVER_UNREACHABLE');
    }, 'the first refusal');
    expect(existsSync(marker)).toBe(false);
    await server(5, { listeners: [`127.0.0.1:${port}`] });
    expect(await exited(child)).toEqual({ code: 7, signal: null });
    expect(existsSync(marker)).toBe(true);
    expect(err).toContain('trying again in 1 s');
    expect(err).toMatch(/exited with status 7; lease .* released/);
  });

  it(`exits ${NO_LEASE_STATUS} without running the command when no lease can be had, saying why once`, async () => {
    const s = await server(1);
    leaseOf(await (await s.connect('bob')).request('acquire', {}));
    const down = `127.0.0.1:${await unusedPort()}`;
    const cmd = ['--', node, '-e', 'console.log("ran")'];
    const [full, unreachable, unknown] = await Promise.all([
      floatdAsync(['run', '--server', s.address, '--retry-seconds', '0', ...cmd]),
      floatdAsync(['run', '--server', down, '--retry-seconds', '0', ...cmd]),
      // Refused for good: no amount of retrying helps, so it does not wait.
      floatdAsync(['run', '--server', s.address, '--product', 'paint', ...cmd]),
    ]);
    for (const [r, code] of [
      [full, 'NO_FREE_SEATS'],
      [unreachable, 'SERVER_UNREACHABLE'],
      [unknown, 'UNKNOWN_PRODUCT'],
    ] as const) {
      expect(r, code).toMatchObject({ code: NO_LEASE_STATUS, out: '' });
      expect(count(r.err, code), r.err).toBe(1);
      expect(r.err).toMatch(new RegExp(`^floatd run: no lease, so \\S*node was not started: ${code}: `));
    }
  });

  it('keeps the command in its own process group, so a supervisor that kills the group stops both', async () => {
    const s = await server();
    // Started as a group leader, as a shell job or a systemd service is.
    const child = spawn(node, [MAIN, 'run', '--server', s.address, '--', node, '-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const group = -child.pid!;
    try {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      await until(() => err.includes('starting'), 'the command to start');
      process.kill(group, 'SIGKILL');
      // The command shares floatd run's output pipes: they close only when it is gone too.
      const closed = await Promise.race([exited(child).then(() => true), new Promise((r) => setTimeout(() => r(false), 5000))]);
      expect(closed, 'the command outlived the group kill').toBe(true);
      // Nothing was released: the seat stays taken until the lease expires.
      expect(await s.floatd.store.allLeases()).toHaveLength(1);
    } finally {
      try {
        process.kill(group, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });

  it('prints durations as people read them', () => {
    expect([0, 500, 1000, 9_999, 29_999, 60_000, 899_999, 1_800_000, 9_000_000].map(formatDuration)).toEqual([
      '0 s',
      '0.5 s',
      '1 s',
      '10 s',
      '30 s',
      '60 s',
      '15 min',
      '30 min',
      '2.5 h',
    ]);
  });

  it('warns loudly when the server key changes under it, and does not call the new lease regained', async () => {
    const port = await unusedPort();
    const first = await server(5, { listeners: [`127.0.0.1:${port}`] });
    const firstKey = (await first.floatd.status()).serverKeyFingerprint;
    const child = spawnFloatd(['run', '--server', `127.0.0.1:${port}`, '--retry-seconds', '1', '--', node, '-e', 'setInterval(() => {}, 1000)']);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await until(() => err.includes('starting'), 'the command to start');
    await first.stop();
    servers.splice(servers.indexOf(first), 1);
    // Another server (another data directory, so another key) at the same address.
    const other = await server(5, { listeners: [`127.0.0.1:${port}`] });
    const otherKey = (await other.floatd.status()).serverKeyFingerprint;
    await until(() => err.includes('taken from a server with another key'), 'the lease from the other server');
    expect(err).toContain(`WARNING: the server key fingerprint changed from ${firstKey} to ${otherKey}`);
    expect(err).not.toContain('lease regained');
    child.kill('SIGTERM');
    await exited(child);
  });

  it('keeps its lease when the server it uses goes away, renewing it on the next of the list', async () => {
    const first = await startServer({ seats: 5 });
    const next = `127.0.0.1:${await unusedPort()}`;
    const down = `127.0.0.1:${await unusedPort()}`;
    // A list on one line, and --server again: both count.
    const child = spawnFloatd(['run', '--server', `${down},${first.address}`, '--server', next, '--', node, '-e', 'setInterval(() => {}, 1000)']);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await until(() => err.includes('starting'), 'the command to start');
    const id = /lease (\S+) on cad held/.exec(err)![1]!;
    await first.stop();
    // The same cluster's next node: the first one's data directory (its leases, its key) at the next address.
    const node2 = await startServer({ dataDir: first.config.dataDir, vendor: first.vendor, flags: { listeners: [next] } });
    servers.push(node2);
    await until(() => err.includes(`now using server ${next} (was ${first.address})`), 'the move to the next server');
    child.kill('SIGTERM');
    expect(await exited(child)).toEqual({ code: 143, signal: null });
    expect(err).not.toMatch(/lost|regained/);
    // One lease from start to end: neither expired nor granted again.
    const log = (await node2.floatd.store.queryEvents({})).filter((e) => e.leaseId !== null);
    expect(log.map((e) => [e.event, e.leaseId])).toEqual([
      ['granted', id],
      ['renewed', id],
      ['released', id],
    ]);
  });

  it('with --on-lost stop, stops the command when the lease is revoked and none can be had', async () => {
    const s = await server();
    const child = spawnFloatd(['run', '--server', s.address, '--on-lost', 'stop', '--grace-seconds', '0', '--', node, '-e', 'setInterval(() => {}, 1000)']);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await until(() => err.includes('starting'), 'the command to start');
    const keyId = (await s.floatd.status()).keys[0]!.id;
    await withLicensing(s.config, new SystemClock(), async (l) => l.remove(keyId));
    expect(await exited(child)).toEqual({ code: 143, signal: null });
    expect(err).toMatch(/the server revoked the lease \(its license key was removed\); stopping \S*node in 0 s/);
    expect(err).toMatch(/no lease regained; sending SIGTERM to \S*node\n/);
    expect(err).toMatch(/node exited with status 143/);
  });

  it('says what is wrong with its own command line', async () => {
    expect(await cli(['run', '--server', 'x'])).toMatchObject({ code: 2, err: expect.stringContaining('after "--"') });
    expect(await cli(['run', '--', 'true'])).toMatchObject({ code: 2, err: expect.stringContaining('--server') });
    expect(await cli(['run', '--server', 'x', '--on-lost', 'panic', '--', 'true'])).toMatchObject({ code: 2 });
    // A malformed address is not "unreachable" for ever, and a URL floatd does not speak is no stack trace.
    const [port, url] = await Promise.all([cli(['run', '--server', '127.0.0.1:x', '--', 'true']), cli(['run', '--server', 'ftp://lic.example.com', '--', 'true'])]);
    expect(port).toMatchObject({ code: 2, err: expect.stringContaining('"x" is not a port number') });
    expect(url).toMatchObject({ code: 2, err: expect.stringContaining('is not a floatd address') });
    expect(url.err).not.toMatch(/\n\s+at /);
    // In a list, the entry that is wrong is named.
    expect(await cli(['run', '--server', '127.0.0.1:1,127.0.0.1:y', '--', 'true'])).toMatchObject({ code: 2, err: expect.stringContaining('"y" is not a port number') });
    expect(await cli(['run', '--server', 'tls://a', '--server', 'b', '--ca', 'ca.pem', '--', 'true'])).toMatchObject({ code: 2, err: expect.stringContaining('"b" is not one') });
  });
});
