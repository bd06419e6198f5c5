import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { cli, exited, floatd, floatdVendor, killChildren, requireBuild, serve, vendorCli } from '../support/cli.js';
import { tempDir, until } from '../support/helpers.js';
import { errorOf, leaseOf } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

async function hello(port: number, user: string): Promise<TcpTransport> {
  const t = await TcpTransport.connect(`127.0.0.1:${port}`);
  await t.request('hello', { v: 1, client: { user, instance: `${user}-1` }, product: 'cad' });
  return t;
}

describe('the built floatd command', () => {
  it('keeps floatd vendor one release as an alias of floatd-vendor: one deprecation line on stderr, then the same output and exit status', () => {
    const dir = tempDir();
    const deprecation = 'floatd vendor is deprecated and will be removed in the next release; use floatd-vendor';
    const made = floatd(['vendor', 'keygen', '--out', join(dir, 'v')]);
    expect(made.code).toBe(0);
    expect(made.err).toBe(deprecation);
    expect(made.out).toMatch(/^wrote .*vendor-private\.jwk \(keep it secret\)/);
    expect(statSync(join(dir, 'v', 'vendor-private.jwk')).mode & 0o777).toBe(0o600);
    const list = ['activations', 'list', '--data-dir', join(dir, 'vdir')];
    const viaAlias = floatd(['vendor', ...list]);
    expect(viaAlias).toEqual({ ...floatdVendor(list), err: deprecation });
    expect(viaAlias.out).toBe('no activations');
    const refused = floatd(['vendor', 'keygen', '--out', join(dir, 'v')]);
    const direct = floatdVendor(['keygen', '--out', join(dir, 'v')]);
    expect(direct.code).toBe(2);
    expect(refused).toEqual({ code: 2, out: direct.out, err: `${deprecation}\n${direct.err}` });
    expect(direct.err).toMatch(/^floatd-vendor: USAGE: .*already exists; pass --force/);
  });

  it('issues and installs keys, serves, survives kill -9 with leases intact, and stops on SIGTERM', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    expect(floatdVendor(['keygen', '--out', join(dir, 'vendor')]).code).toBe(0);
    expect(statSync(join(dir, 'vendor', 'vendor-private.jwk')).mode & 0o777).toBe(0o600);
    const pub = ['--vendor-public-key', join(dir, 'vendor', 'vendor-public.jwk')];
    const issued = floatdVendor(['issue', '--private-key', join(dir, 'vendor', 'vendor-private.jwk'), '--licensee', 'Acme', '--product', 'cad', '--seats', '2', '--expires', '2099-01-01']);
    expect(issued.code).toBe(0);
    expect(issued.out).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    // Only serve makes a data directory; license add acts on the server's, with the vendor keys the server trusts.
    const first = await serve(['--data-dir', data, ...pub, '--lease-seconds', '60']);
    expect(statSync(join(data, 'server-key.jwk')).mode & 0o777).toBe(0o600);
    const added = floatd(['license', 'add', issued.out, '--data-dir', data]);
    expect(added).toMatchObject({ code: 0 });
    expect(added.out).toMatch(/2 seat\(s\) of cad for Acme/);
    // Further commands that only read or are refused run in this process: the built ones above and below cover the process.
    expect(await cli(['license', 'add', `${issued.out.slice(0, -4)}AAAA`, '--data-dir', data])).toMatchObject({ code: 1, err: expect.stringContaining('LICENSE_KEY_') });
    // Polled from this process: a node started for every look would cost more than the wait.
    for (let i = 0; i < 200 && JSON.parse((await cli(['status', '--json', '--server', `127.0.0.1:${first.port}`])).out).mode !== 'licensed'; i++) await new Promise((r) => setTimeout(r, 25));
    expect(JSON.parse(floatd(['status', '--json', '--server', `127.0.0.1:${first.port}`]).out).mode).toBe('licensed');
    const a = await hello(first.port, 'alice');
    const b = await hello(first.port, 'bob');
    const ra = await a.request('acquire');
    const rb = await b.request('acquire');
    const la = leaseOf(ra);
    const lb = leaseOf(rb);
    const running = JSON.parse(floatd(['status', '--json', '--data-dir', data]).out);
    expect(running).toMatchObject({ running: true, leasesHeld: 2, products: [{ product: 'cad', seatsTotal: 2, seatsInUse: 2, seatsFree: 0 }] });
    expect(running.downToleranceMs).toBeGreaterThan(50_000);

    first.child.kill('SIGKILL');
    expect((await exited(first.child)).signal).toBe('SIGKILL');
    a.close();
    b.close();

    const second = await serve(['--data-dir', data, ...pub, '--lease-seconds', '60']);
    const a2 = await hello(second.port, 'alice');
    const b2 = await hello(second.port, 'bob');
    const c2 = await hello(second.port, 'carol');
    // Each holder shows its lease's secret on its new connection.
    expect(leaseOf(await a2.request('renew', { lease: la.id, leaseSecret: (ra as Record<string, unknown>)['leaseSecret'] })).id).toBe(la.id);
    expect(leaseOf(await b2.request('renew', { lease: lb.id, leaseSecret: (rb as Record<string, unknown>)['leaseSecret'] })).id).toBe(lb.id);
    expect(errorOf(await c2.request('acquire')).code).toBe('NO_FREE_SEATS');
    const remote = floatd(['status', '--server', `127.0.0.1:${second.port}`]);
    expect(remote.code).toBe(0);
    expect(remote.out).toMatch(/cad\s+2\s+2\s+2\s+0/);
    const log = await cli(['log', '--data-dir', data, '--json', '--event', 'granted', '--event', 'renewed']);
    expect(log.out.split('\n').map((l) => JSON.parse(l).event)).toEqual(['granted', 'granted', 'renewed', 'renewed']);
    const csv = await cli(['log', '--data-dir', data, '--csv', '--user', 'carol']);
    expect(csv.out.split('\n')[0]).toMatch(/^id,ts,event/);
    expect(csv.out).toContain('NO_FREE_SEATS');

    second.child.kill('SIGTERM');
    expect(await exited(second.child)).toEqual({ code: 0, signal: null });
    expect(second.log()).toContain('"msg":"stopped"');
    const after = JSON.parse((await cli(['status', '--json', '--data-dir', data])).out);
    expect(after).toMatchObject({ running: false, leasesHeld: 2 });
  });

  it('notices a key added while it runs', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    await vendorCli(['keygen', '--out', join(dir, 'v')]);
    const pub = ['--vendor-public-key', join(dir, 'v', 'vendor-public.jwk')];
    const server = await serve(['--data-dir', data, ...pub]);
    const events: Array<Record<string, unknown>> = [];
    const t = await TcpTransport.connect(`127.0.0.1:${server.port}`, { onEvent: (e) => events.push(e) });
    await t.request('hello', { v: 1, client: { user: 'alice', instance: 'a-1' }, product: 'cad' });
    const evaluationLease = leaseOf(await t.request('acquire'));
    const key = (await vendorCli(['issue', '--private-key', join(dir, 'v', 'vendor-private.jwk'), '--licensee', 'A', '--product', 'cad', '--seats', '1'])).out;
    const added = floatd(['license', 'add', '-', '--data-dir', data], key);
    expect(added.code).toBe(0);
    const keyId = /installed license key (\S+):/.exec(added.out)![1]!;
    await until(() => events.length > 0, 'the revocation to be pushed');
    // The evaluation pool ends when a key is installed: its lease is revoked and pushed to the holder.
    expect(events).toEqual([{ event: 'revoked', lease: evaluationLease.id, product: 'cad', reason: `evaluation ended: license key ${keyId} is in force` }]);
    const licensed = leaseOf(await t.request('acquire'));
    expect(licensed.id).not.toBe(evaluationLease.id);
    const status = JSON.parse((await cli(['status', '--json', '--data-dir', data])).out);
    expect(status).toMatchObject({ mode: 'licensed', products: [{ product: 'cad', seatsTotal: 1, seatsInUse: 1 }] });
    server.child.kill('SIGTERM');
    await exited(server.child);
  });

  it('refuses a bad setting at start-up, naming it', () => {
    const r = floatd(['serve', '--data-dir', tempDir(), '--lease-seconds', '10']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/CONFIG_INVALID: setting leaseSeconds \(command line\) must be a whole number from 30/);
    const u = floatd(['serve', '--bogus']);
    expect(u.code).toBe(2);
    expect(u.err).toMatch(/bogus/);
  });
});
