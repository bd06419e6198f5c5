import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { exited, floatd, floatdAsync, killChildren, requireBuild, spawnFloatd } from '../support/cli.js';
import { withLicensing } from '../../src/app/inspect.js';
import { SystemClock } from '../../src/adapters/clock/system-clock.js';
import { until } from '../support/helpers.js';
import { leaseOf, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function server(seats = 5): Promise<TestServer> {
  const s = await startServer({ seats });
  servers.push(s);
  return s;
}

const node = process.execPath;

describe('floatd run', () => {
  it('holds a lease while the command runs, releases it when the command exits, and exits with its status', async () => {
    const s = await server();
    const r = await floatdAsync(['run', '--server', s.address, '--user', 'ci', '--', node, '-e', 'console.log("running"); process.exit(3)']);
    expect(r.code).toBe(3);
    expect(r.out).toBe('running');
    expect(r.err).toMatch(/lease .* on cad held/);
    expect(s.floatd.store.allLeases()).toEqual([]);
    const log = s.floatd.store.queryEvents({ events: ['granted', 'released'] });
    expect(log.map((e) => [e.event, e.user])).toEqual([
      ['granted', 'ci'],
      ['released', 'ci'],
    ]);
  });

  it('forwards SIGTERM to the command, releases the lease and exits like the command', async () => {
    const s = await server();
    const child = spawnFloatd(['run', '--server', s.address, '--', node, '-e', 'setInterval(() => {}, 1000)']);
    await until(() => s.floatd.store.allLeases().length === 1, 'the lease');
    await new Promise((r) => setTimeout(r, 200)); // let the command start
    child.kill('SIGTERM');
    expect(await exited(child)).toEqual({ code: 143, signal: null });
    expect(s.floatd.store.allLeases()).toEqual([]);
    expect(s.floatd.store.queryEvents({ events: ['released'] })).toHaveLength(1);
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

  it('with --retry-seconds 0 fails at once when no seat is free, without running the command', async () => {
    const s = await server(1);
    leaseOf(await (await s.connect('bob')).request('acquire', {}));
    const r = await floatdAsync(['run', '--server', s.address, '--retry-seconds', '0', '--', node, '-e', 'console.log("ran")']);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toContain('NO_FREE_SEATS');
  });

  it('with --on-lost stop, stops the command when the lease is revoked and none can be had', async () => {
    const s = await server();
    const child = spawnFloatd(['run', '--server', s.address, '--on-lost', 'stop', '--grace-seconds', '0', '--', node, '-e', 'setInterval(() => {}, 1000)']);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await until(() => err.includes('starting'), 'the command to start');
    const keyId = s.floatd.status().keys[0]!.id;
    await withLicensing(s.config, new SystemClock(), async (l) => l.remove(keyId));
    expect(await exited(child)).toEqual({ code: 143, signal: null });
    expect(err).toMatch(/the server revoked the lease \(its license key was removed\); stopping \S*node in 0 s/);
    expect(err).toMatch(/no lease regained; sending SIGTERM to \S*node\n/);
    expect(err).toMatch(/node exited with status 143/);
  });

  it('says what is wrong with its own command line', () => {
    expect(floatd(['run', '--server', 'x'])).toMatchObject({ code: 2, err: expect.stringContaining('after "--"') });
    expect(floatd(['run', '--', 'true'])).toMatchObject({ code: 2, err: expect.stringContaining('--server') });
    expect(floatd(['run', '--server', 'x', '--on-lost', 'panic', '--', 'true'])).toMatchObject({ code: 2 });
  });
});
