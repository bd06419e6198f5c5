import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeProductFile } from '../../src/adapters/crypto/product-file.js';
import { EVALUATION_RECORD_FILE } from '../../src/adapters/fs/evaluation-record.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { VendorStore } from '../../packages/vendor/src/store/vendor-store.js';
import { withEvaluationRegistrar } from '../../src/app/evaluation-registration.js';
import { Floatd } from '../../src/app/floatd.js';
import { activate } from '../../src/cli/activate.js';
import { formatStatus } from '../../src/cli/status.js';
import { trust } from '../../src/cli/trust.js';
import { vendor as vendorCli } from '../../packages/vendor/src/cli/vendor.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import type { Clock } from '../../src/domain/clock.js';
import { SystemClock } from '../../src/adapters/clock/system-clock.js';
import { fakeHost, type FakeHost } from '../support/activation.js';
import { refusal, vendorService } from '../support/activation-site.js';
import { FakeClock } from '../support/fake-clock.js';
import { tempDir, testConfig } from '../support/helpers.js';
import { capturingLogger, errorOf, leaseOf, makeVendor, type Vendor } from '../support/server.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 5, 1);

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** A server on `host` (a new data directory unless given) under the product file, which asks for the evaluation to be registered. */
async function site(productFile: string, host: FakeHost, stateDir: string, clock: Clock, dataDir = tempDir('floatd-data-')) {
  const config = testConfig({ hostRoot: host.root, 'evaluation.stateDir': stateDir }, dataDir);
  await (await Floatd.create(config, { logger: silentLogger() })).stop();
  await trust([productFile, '--data-dir', config.dataDir], { out: () => {}, err: () => {}, env: {}, cwd: config.dataDir });
  const { logger, lines } = capturingLogger();
  const floatd = await Floatd.create(config, { clock, logger });
  const [bound] = await floatd.start();
  const transports: TcpTransport[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const t of transports) t.close();
    await floatd.stop();
  };
  cleanup.push(stop);
  return {
    floatd,
    config,
    lines,
    stop,
    async acquire(product: string) {
      const t = await TcpTransport.connect(`127.0.0.1:${bound!.port}`);
      transports.push(t);
      await t.request('hello', { v: 1, client: { user: 'alice', host: 'h', instance: `alice-${transports.length}` } });
      return t.request('acquire', { product });
    },
  };
}

async function productFile(vendor: Vendor, url: string | null): Promise<string> {
  const file = join(tempDir(), 'floatd-product.json');
  writeFileSync(file, await writeProductFile(vendor.pair.privateJwk, { products: ['cad'], evaluation: { seats: 3, days: 30 }, evaluationActivation: { url }, now: T0 }));
  return file;
}

function io(env: Record<string, string>) {
  const out: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (t: string) => out.push(t), env, cwd: tempDir() }, out };
}

describe('an evaluation registered with the vendor', () => {
  it('grants nothing (NOT_ACTIVATED naming the command) until registered online, then grants until the end the vendor gave; status shows it', async () => {
    const clock = new FakeClock(T0);
    const vendor = await makeVendor();
    const { service } = await vendorService(vendor, cleanup, clock);
    const dataDir = tempDir('floatd-data-');
    const host = fakeHost(dataDir);
    const file = await productFile(vendor, service.url);
    const stateDir = tempDir('floatd-evaluation-');
    const s = await site(file, host, stateDir, clock, dataDir);

    const denied = errorOf(await s.acquire('cad'));
    expect(denied.code).toBe('NOT_ACTIVATED');
    expect(denied.message).toContain('the evaluation to be registered');
    expect(denied.message).toContain('floatd activate --evaluation');
    expect((await s.floatd.status()).evaluation!.registration).toMatchObject({ registered: false });
    expect(formatStatus(await s.floatd.status())).toContain('registered with the vendor: NO, evaluation grants nothing until it is');
    expect(formatStatus(await s.floatd.status())).toContain('3 seat(s) of evaluation cannot be granted: the evaluation is not registered with the vendor');
    expect(s.lines.some((l) => l['level'] === 50 && String(l['msg']).includes('evaluation grants no seats'))).toBe(true);

    // A day later (a server started then: the server judges wall-clock jumps by its monotonic clock), registered online.
    await s.stop();
    clock.jumpWall(DAY);
    const next = await site(file, host, stateDir, new FakeClock(T0 + DAY), dataDir);
    expect(errorOf(await next.acquire('cad')).code).toBe('NOT_ACTIVATED');
    const r = await withEvaluationRegistrar(next.config, clock, (reg) => reg.registerOnline());
    expect(r).toMatchObject({ startedAt: T0 + DAY, endsAt: T0 + 31 * DAY, products: ['cad'] });
    await next.floatd.reloadLicenses();
    expect(leaseOf(await next.acquire('cad')).product).toBe('cad');
    const e = (await next.floatd.status()).evaluation!;
    expect(e).toMatchObject({ endsAt: new Date(T0 + 31 * DAY).toISOString(), registration: { registered: true, id: r.id } });
    expect(formatStatus(await next.floatd.status())).toContain(`registered with the vendor: yes (evaluation ${r.id})`);
    expect(next.lines.some((l) => l['level'] === 30 && l['msg'] === `the evaluation is registered with the vendor (evaluation ${r.id}): evaluation grants seats`)).toBe(true);
  });

  it('a wiped evaluation record and a new data directory on the same host register again and get the same start and end; another host gets its own', async () => {
    const clock = new FakeClock(T0);
    const vendor = await makeVendor();
    const { service, vdir } = await vendorService(vendor, cleanup, clock);
    const file = await productFile(vendor, service.url);
    const stateDir = tempDir('floatd-evaluation-');
    const host = fakeHost(tempDir('floatd-data-'));
    const first = await site(file, host, stateDir, clock);
    const r1 = await withEvaluationRegistrar(first.config, clock, (reg) => reg.registerOnline());
    await first.floatd.reloadLicenses();
    leaseOf(await first.acquire('cad'));
    expect(JSON.parse(readFileSync(join(stateDir, EVALUATION_RECORD_FILE), 'utf8'))).toMatchObject({ endsAt: new Date(r1.endsAt).toISOString() });
    await first.stop();

    clock.jumpWall(10 * DAY);
    rmSync(join(stateDir, EVALUATION_RECORD_FILE));
    const again = await site(file, host, stateDir, clock);
    expect(errorOf(await again.acquire('cad')).code).toBe('NOT_ACTIVATED');
    const r2 = await withEvaluationRegistrar(again.config, clock, (reg) => reg.registerOnline());
    expect(r2).toMatchObject({ id: r1.id, startedAt: T0, endsAt: T0 + 30 * DAY });
    await again.floatd.reloadLicenses();
    expect((await again.floatd.status()).evaluation).toMatchObject({ startedAt: new Date(T0).toISOString(), endsAt: new Date(T0 + 30 * DAY).toISOString() });
    leaseOf(await again.acquire('cad'));
    await again.stop();
    // A day past the end the vendor gave (the server judges wall-clock jumps by its monotonic clock, so a new one starts there).
    clock.jumpWall(21 * DAY);
    const later = await site(file, host, stateDir, new FakeClock(T0 + 31 * DAY), again.config.dataDir);
    expect((await later.floatd.status()).evaluation).toMatchObject({ endsAt: new Date(T0 + 30 * DAY).toISOString(), expired: true, registration: { registered: true, id: r1.id } });
    expect(errorOf(await later.acquire('cad')).code).toBe('EVALUATION_ENDED');

    const other = await site(file, fakeHost(tempDir('floatd-data-')), tempDir('floatd-evaluation-'), clock);
    const r3 = await withEvaluationRegistrar(other.config, clock, (reg) => reg.registerOnline());
    expect(r3.id).not.toBe(r1.id);
    expect(r3.startedAt).toBe(T0 + 31 * DAY);
    const store = VendorStore.open(vdir);
    try {
      expect(store.evaluations(null)).toHaveLength(2);
    } finally {
      store.close();
    }
  });

  it('offline: activate --evaluation --offline-request, vendor activation respond, --offline-response; a tampered response is refused, a response is installed once', async () => {
    const clock = new SystemClock();
    const vendor = await makeVendor();
    const vdir = tempDir('floatd-vdir-');
    const dataDir = tempDir('floatd-data-');
    const host = fakeHost(dataDir);
    const stateDir = tempDir('floatd-evaluation-');
    const s = await site(await productFile(vendor, null), host, stateDir, clock, dataDir);
    expect(errorOf(await s.acquire('cad')).message).toContain('floatd activate --evaluation --offline-request FILE');
    const env = { FLOATD_HOST_ROOT: host.root, FLOATD_EVALUATION_STATE: stateDir };
    const dir = tempDir();
    const request = join(dir, 'request.json');
    const response = join(dir, 'response.json');
    const online = await refusal(activate(['--evaluation', '--data-dir', dataDir], io(env).io));
    expect(online.message).toContain('names no activation URL');

    expect(await activate(['--evaluation', '--offline-request', request, '--data-dir', dataDir], io(env).io)).toBe(0);
    expect(JSON.parse(readFileSync(request, 'utf8'))).toMatchObject({ floatd: 'evaluation-request', products: ['cad'] });
    const v = io({});
    expect(await vendorCli(['activation', 'respond', '--data-dir', vdir, '--private-key', vendor.privateFile, request, '--out', response], v.io)).toBe(0);
    expect(v.out.join('\n')).toContain('evaluation');
    const answer = JSON.parse(readFileSync(response, 'utf8')) as Record<string, string>;
    expect(answer['floatd']).toBe('evaluation-response');
    const listed = io({});
    expect(await vendorCli(['evaluations', 'list', '--data-dir', vdir, '--json'], listed.io)).toBe(0);
    expect(JSON.parse(listed.out.join('\n'))).toMatchObject([{ evaluation: answer['evaluationId'], products: ['cad'], state: 'running', via: 'offline' }]);
    const text = io({});
    expect(await vendorCli(['evaluations', 'list', '--data-dir', vdir], text.io)).toBe(0);
    expect(text.out.join('\n')).toMatch(new RegExp(`^${answer['evaluationId']}\\s+cad\\s+running\\s+offline`, 'm'));

    // Tampered: a later end in the readable field, or in the signed part.
    const tampered = join(dir, 'tampered.json');
    writeFileSync(tampered, JSON.stringify({ ...answer, endsAt: new Date(Date.parse(answer['endsAt']!) + 365 * DAY).toISOString() }));
    expect((await refusal(activate(['--evaluation', '--offline-response', tampered, '--data-dir', dataDir], io(env).io))).code).toBe('ACTIVATION_FILE_INVALID');
    const [h, p, sig] = answer['evaluation']!.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, number>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, endsAt: payload['endsAt']! + 365 * DAY })).toString('base64url')}.${sig}`;
    writeFileSync(tampered, JSON.stringify({ ...answer, endsAt: new Date(payload['endsAt']! + 365 * DAY).toISOString(), evaluation: forged }));
    const refused = await refusal(activate(['--evaluation', '--offline-response', tampered, '--data-dir', dataDir], io(env).io));
    expect(refused.code).toBe('ACTIVATION_FILE_INVALID');
    expect(refused.message).toContain('signature does not verify');
    await s.floatd.reloadLicenses();
    expect(errorOf(await s.acquire('cad')).code).toBe('NOT_ACTIVATED');

    const ok = io(env);
    expect(await activate(['--evaluation', '--offline-response', response, '--data-dir', dataDir], ok.io)).toBe(0);
    expect(ok.out.join('\n')).toContain('the evaluation is registered with the vendor (offline');
    await s.floatd.reloadLicenses();
    expect(leaseOf(await s.acquire('cad')).product).toBe('cad');
    expect((await refusal(activate(['--evaluation', '--offline-response', response, '--data-dir', dataDir], io(env).io))).code).toBe('ACTIVATION_REPLAYED');
  });

  it('a product file without the claim needs no registration, and activate --evaluation says so', async () => {
    const vendor = await makeVendor();
    const file = join(tempDir(), 'floatd-product.json');
    writeFileSync(file, await writeProductFile(vendor.pair.privateJwk, { products: ['cad'], evaluation: { seats: 3, days: 30 }, now: T0 }));
    const dataDir = tempDir('floatd-data-');
    const s = await site(file, fakeHost(dataDir), tempDir('floatd-evaluation-'), new FakeClock(T0), dataDir);
    leaseOf(await s.acquire('cad'));
    expect((await s.floatd.status()).evaluation!.registration).toBeNull();
    expect((await refusal(withEvaluationRegistrar(s.config, new FakeClock(T0), (r) => r.registerOnline()))).code).toBe('ACTIVATION_NOT_REQUIRED');
  });
});
