import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Floatd } from '../../src/app/floatd.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { fakeHost, startConnectProxy } from '../support/activation.js';
import { makeCerts } from '../support/certs.js';
import { CHILD_ENV, cli as inProcess, MAIN, requireBuild, VENDOR_MAIN, vendorCli } from '../support/cli.js';
import { tempDir, testConfig, until } from '../support/helpers.js';

const children: ChildProcess[] = [];
const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  for (const fn of cleanup.splice(0).reverse()) await fn();
});
beforeAll(() => requireBuild());

/**
 * Runs a command in-process; with an environment of its own (NODE_EXTRA_CA_CERTS, which node
 * reads only at start, and the proxy settings beside it) it runs the built CLI.
 */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return Object.keys(env).length === 0 ? inProcess(args) : spawnCli(args, env);
}

/** Runs the built CLI without blocking this process (a server may run in it); floatd run's wrapped command writes to the real stdout. */
function spawnCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { env: { ...CHILD_ENV, ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out: out.trim(), err: err.trim() })));
}

/** `floatd-vendor serve` in the background; resolves with its port from the JSON log. */
function vendorServe(args: string[]): Promise<number> {
  const child = spawn(process.execPath, [VENDOR_MAIN, 'serve', '--listen', '127.0.0.1:0', ...args], { env: CHILD_ENV });
  children.push(child);
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"port":(\d+)[^\n]*"msg":"activation service listening"/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => reject(new Error(`vendor serve exited with ${code}: ${out}`)));
  });
}

describe('floatd fingerprint, activate, deactivate and the vendor commands', () => {
  it('fingerprint: hashed per vendor key, unreadable components reported, never raw ids', async () => {
    const vdir = tempDir('floatd-vkeys-');
    expect((await vendorCli(['keygen', '--out', vdir])).code).toBe(0);
    const dataDir = tempDir('floatd-data-');
    const host = fakeHost(dataDir);
    const env = { FLOATD_HOST_ROOT: host.root, FLOATD_VENDOR_PUBLIC_KEYS: join(vdir, 'vendor-public.jwk') };
    const r = await cli(['fingerprint', '--json', '--data-dir', dataDir], env);
    expect(r.code).toBe(0);
    const fp = JSON.parse(r.out) as { readable: string[]; bindable: boolean; vendors: Array<{ components: Record<string, string> }> };
    expect(fp.readable).toEqual(['machine-id', 'product-uuid', 'filesystem-uuid']);
    expect(fp.bindable).toBe(true);
    expect(Object.keys(fp.vendors[0]!.components)).toHaveLength(3);
    expect(r.out).not.toContain(readFileSync(join(host.root, 'etc/machine-id'), 'utf8').trim());
    host.setMachineId(null);
    host.setProductUuid(null);
    const text = await cli(['fingerprint', '--data-dir', dataDir], env);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/machine-id\s+unreadable: .*no such file/);
    expect(text.out).toMatch(/only 1 of the host's components can be read; a binding needs two: only keys issued with --container-binding/);
    // Every component is listed, readable or not, with why not.
    for (const c of ['product-uuid', 'board-serial', 'product-serial', 'nic-mac', 'disk-serial', 'cpu', 'hostname']) expect(text.out).toMatch(new RegExp(`${c}\\s+unreadable: \\S`));
    host.setHostname('vm-1');
    host.setCpu('QEMU Virtual CPU', 2);
    host.setNic('eth0', '52:54:00:12:34:56');
    host.setNic('veth1', '02:42:ac:11:00:02', { virtual: true });
    const vm = JSON.parse((await cli(['fingerprint', '--json', '--data-dir', dataDir], env)).out) as { bindable: boolean; components: Array<{ component: string; readable: boolean; reason: string | null }> };
    expect(vm.bindable).toBe(true);
    expect(vm.components.filter((c) => c.readable).map((c) => c.component)).toEqual(['filesystem-uuid', 'nic-mac', 'cpu', 'hostname']);
    expect(vm.components.find((c) => c.component === 'machine-id')!.reason).toMatch(/machine-id: no such file/);
    expect(vm.components.find((c) => c.component === 'disk-serial')!.reason).toMatch(/no disk in/);
  });

  it('end to end: vendor issue and serve (HTTPS), activate online, deactivate offline, respond and install offline, deactivate online through a proxy', async () => {
    const certs = makeCerts();
    const keys = tempDir('floatd-vkeys-');
    const vdir = tempDir('floatd-vdir-');
    await vendorCli(['keygen', '--out', keys]);
    const privateKey = join(keys, 'vendor-private.jwk');
    const port = await vendorServe(['--data-dir', vdir, '--private-key', privateKey, '--tls-cert', certs.serverCert, '--tls-key', certs.serverKey]);
    const url = `https://localhost:${port}`;
    const noDir = await vendorCli(['issue', '--private-key', privateKey, '--licensee', 'Acme', '--product', 'cad', '--seats', '3', '--activation', 'required', '--activations', '1']);
    expect(noDir.code).toBe(2);
    expect(noDir.err).toMatch(/needs --data-dir VDIR/);
    const issued = await vendorCli(['issue', '--private-key', privateKey, '--licensee', 'Acme', '--product', 'cad', '--seats', '3', '--data-dir', vdir, '--activation', 'required', '--activations', '1', '--activation-url', url]);
    expect(issued.code).toBe(0);
    expect(issued.err).toMatch(/needs activation on at most 1 server\(s\) at https:\/\/localhost/);
    const token = issued.out;
    const keyId = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;

    const dataDir = tempDir('floatd-data-');
    const host = fakeHost(dataDir);
    const config = testConfig({ vendorPublicKeys: [join(keys, 'vendor-public.jwk')], hostRoot: host.root }, dataDir);
    const floatd = await Floatd.create(config, { logger: silentLogger() });
    cleanup.push(() => floatd.stop());
    const [bound] = await floatd.start();
    const env = { NODE_EXTRA_CA_CERTS: certs.caFile };
    expect((await cli(['license', 'add', token, '--data-dir', dataDir])).code).toBe(0);
    const acquire = async (user: string) => {
      const t = await TcpTransport.connect(`127.0.0.1:${bound!.port}`);
      await t.request('hello', { v: 1, client: { user, host: 'h', instance: `${user}-1` } });
      const r = await t.request('acquire', { product: 'cad' });
      t.close();
      return r;
    };
    await until(() => floatd.pools.licenseKeys().length === 1, 'the key to be loaded');
    expect((await acquire('alice')) as unknown).toMatchObject({ ok: false, error: { code: 'NOT_ACTIVATED' } });
    const before = await cli(['status', '--data-dir', dataDir]);
    expect(before.out).toContain(`activation of ${keyId}: NOT GRANTING: license key ${keyId} needs activation: run floatd activate ${keyId}`);

    const online = await cli(['activate', keyId.slice(0, 8), '--data-dir', dataDir], env);
    expect(online.err).toBe('');
    expect(online.out).toMatch(new RegExp(`license key ${keyId} activated \\(activation [0-9a-f-]+\\)$`));
    const again = await cli(['activate', keyId, '--data-dir', dataDir], env);
    expect(again.out).toMatch(/this host already held it, no further activation was used/);
    await until(() => floatd.pools.blocked(keyId) === null, 'the server to notice the activation');
    expect(((await acquire('bob')) as { ok: boolean }).ok).toBe(true);
    expect((await cli(['status', '--data-dir', dataDir])).out).toContain(`activation of ${keyId}: active on this host`);
    // floatd run given the vendor's key runs the command only on a lease that chains to the vendor.
    const runArgs = ['run', '--server', `127.0.0.1:${bound!.port}`, '--product', 'cad', '--retry-seconds', '0', '--user', 'carol'];
    const chained = await spawnCli([...runArgs, '--vendor-public-key', join(keys, 'vendor-public.jwk'), '--', process.execPath, '-e', 'console.log("ran")']);
    expect(chained.out).toBe('ran');
    expect(chained.code).toBe(0);
    const otherVendor = tempDir('floatd-other-');
    await vendorCli(['keygen', '--out', otherVendor]);
    const foreign = await spawnCli([...runArgs, '--vendor-public-key', join(otherVendor, 'vendor-public.jwk'), '--', process.execPath, '-e', 'console.log("ran")']);
    expect(foreign.code).toBe(75);
    expect(foreign.out).toBe('');
    expect(foreign.err).toMatch(/TOKEN_INVALID.*does not chain to the vendor/);

    // Offline deactivation: the server stops granting at once; the vendor frees the slot from the proof.
    const proof = join(tempDir(), 'proof.json');
    const off = await cli(['deactivate', keyId, '--offline-request', proof, '--data-dir', dataDir]);
    expect(off.out).toMatch(/deactivated here/);
    await until(() => floatd.pools.blocked(keyId) !== null, 'the server to notice the deactivation');
    const released = await vendorCli(['activation', 'release', '--data-dir', vdir, proof]);
    expect(released.code).toBe(0);
    expect(JSON.parse(released.out)).toMatchObject({ floatd: 'deactivation-receipt', key: keyId });
    const twice = await vendorCli(['activation', 'release', '--data-dir', vdir, proof]);
    expect(twice.code).toBe(1);
    expect(twice.err).toMatch(/ACTIVATION_REPLAYED: .*already released/);

    // Offline activation through files.
    const request = join(tempDir(), 'request.json');
    const response = join(tempDir(), 'response.json');
    expect((await cli(['activate', keyId, '--offline-request', request, '--data-dir', dataDir])).code).toBe(0);
    const tampered = join(tempDir(), 'tampered.json');
    writeFileSync(tampered, JSON.stringify({ ...JSON.parse(readFileSync(request, 'utf8')), container: true }));
    const refusedTamper = await vendorCli(['activation', 'respond', '--data-dir', vdir, tampered, '--out', response]);
    expect(refusedTamper.err).toMatch(/ACTIVATION_FILE_INVALID: .*field "container" differs/);
    const answered = await vendorCli(['activation', 'respond', '--data-dir', vdir, request, '--out', response]);
    expect(answered.code).toBe(0);
    const installed = await cli(['activate', '--offline-response', response, '--data-dir', dataDir]);
    expect(installed.out).toMatch(/activated .*offline/);
    const replay = await cli(['activate', '--offline-response', response, '--data-dir', dataDir]);
    expect(replay.code).toBe(1);
    expect(replay.err).toMatch(/ACTIVATION_REPLAYED/);
    const list = JSON.parse((await vendorCli(['activations', 'list', '--data-dir', vdir, '--key', keyId, '--json'])).out) as Array<{ state: string; via: string }>;
    expect(list.map((a) => `${a.state}/${a.via}`)).toEqual(['released/online', 'active/offline']);

    // Online deactivation through an HTTP CONNECT proxy (HTTPS inside the tunnel).
    const proxy = await startConnectProxy({ user: 'u', password: 'pw' });
    cleanup.push(() => proxy.stop());
    const viaProxy = await cli(['deactivate', keyId, '--proxy', proxy.url, '--data-dir', dataDir], env);
    expect(viaProxy.out).toMatch(/freed at the vendor/);
    expect(proxy.tunnels).toEqual([`localhost:${port}`]);
    const noAuth = await cli(['activate', keyId, '--data-dir', dataDir], { ...env, HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` });
    expect(noAuth.err).toMatch(/ACTIVATION_PROXY_REFUSED: .*407.*asks for credentials/);
    const direct = await cli(['activate', keyId, '--data-dir', dataDir], { ...env, HTTPS_PROXY: `http://127.0.0.1:${proxy.port}`, NO_PROXY: 'localhost' });
    expect(direct.code).toBe(0);
    const full = JSON.parse((await vendorCli(['activations', 'list', '--data-dir', vdir, '--json'])).out) as Array<{ state: string }>;
    const active = full.filter((a) => a.state === 'active') as Array<{ state: string; activation: string }>;
    expect(active).toHaveLength(1);
    const freed = await vendorCli(['activations', 'release', '--data-dir', vdir, active[0]!.activation]);
    expect(freed.out).toMatch(/^released activation/);
    expect((await vendorCli(['activations', 'release', '--data-dir', vdir, active[0]!.activation])).err).toMatch(/ACTIVATION_RELEASED/);
    rmSync(request);
  }, 120_000);

  it('the vendor service answers bad input with 4xx and a reason, and rate-limits per address', async () => {
    const keys = tempDir('floatd-vkeys-');
    const vdir = tempDir('floatd-vdir-');
    await vendorCli(['keygen', '--out', keys]);
    const port = await vendorServe(['--data-dir', vdir, '--private-key', join(keys, 'vendor-private.jwk'), '--rate-limit', '5']);
    const post = async (path: string, body: string) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } }, retryAfter: res.headers.get('retry-after') };
    };
    const missing = await post('/v1/activations', '{}');
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ code: 'BAD_REQUEST', message: 'field "request" is required' });
    const garbage = await post('/v1/activations', JSON.stringify({ request: 'not-a-jws' }));
    expect(garbage.status).toBe(400);
    expect(garbage.body.error!.code).toBe('ACTIVATION_FILE_INVALID');
    await post('/v1/deactivations', JSON.stringify({ proof: 'x' }));
    await post('/v1/revalidations', JSON.stringify({ request: 'x' }));
    await post('/v1/activations', '{}');
    const limited = await post('/v1/activations', '{}');
    expect(limited.status).toBe(429);
    expect(limited.body.error!.code).toBe('TOO_MANY_REQUESTS');
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
  });
});
