import Database from 'better-sqlite3';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { writeProductFile } from '../../src/adapters/crypto/product-file.js';
import { EVALUATION_RECORD_FILE } from '../../src/adapters/fs/evaluation-record.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { Floatd } from '../../src/app/floatd.js';
import { withLicensing } from '../../src/app/inspect.js';
import { trust } from '../../src/cli/trust.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import type { Config } from '../../src/config/config.js';
import { cli, exited, floatd, killChildren, requireBuild, spawnFloatd } from '../support/cli.js';
import { FakeClock } from '../support/fake-clock.js';
import { call } from '../support/http.js';
import { evaluationStateDir, tempDir, testConfig, until } from '../support/helpers.js';
import { capturingLogger, errorOf, leaseOf, makeVendor } from '../support/server.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 5, 1);

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  killChildren();
});
beforeAll(requireBuild);

/** A host root with a machine id and a DMI product UUID, as a VM shows them (FLOATD_HOST_ROOT). */
function fakeHost(machineId = '0a1b2c3d4e5f60718293a4b5c6d7e8f9', productUuid = '4c4c4544-0042-3510-8057-b2c04f4e4b31'): string {
  const root = tempDir('floatd-host-');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'sys/class/dmi/id'), { recursive: true });
  writeFileSync(join(root, 'etc/machine-id'), `${machineId}\n`);
  writeFileSync(join(root, 'sys/class/dmi/id/product_uuid'), `${productUuid}\n`);
  return root;
}

async function start(config: Config, clock: FakeClock) {
  const { logger, lines } = capturingLogger();
  const server = await Floatd.create(config, { clock, logger });
  const [bound] = await server.start();
  const transports: TcpTransport[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const t of transports) t.close();
    await server.stop();
  };
  cleanup.push(stop);
  return {
    floatd: server,
    lines,
    stop,
    warnings: () => lines.filter((l) => l['level'] === 40).map((l) => String(l['msg'])),
    async acquire(product: string, user = 'alice') {
      const t = await TcpTransport.connect(`127.0.0.1:${bound!.port}`);
      transports.push(t);
      await t.request('hello', { v: 1, client: { user, host: 'h', instance: `${user}-${transports.length}` } });
      return t.request('acquire', { product });
    },
  };
}

const recordFile = () => join(evaluationStateDir(), EVALUATION_RECORD_FILE);

describe('evaluation terms: settings may lower them, never raise them', () => {
  it('holds a setting that asks more to the built-in 5 seats and 30 days, with a warning naming the setting and the limit; a lower one lowers, and status says who set what', async () => {
    const greedy = testConfig({ 'evaluation.seats': 100, 'evaluation.days': 365, hostRoot: fakeHost() });
    const first = await start(greedy, new FakeClock(T0));
    expect(first.warnings()).toEqual(
      expect.arrayContaining([
        'setting evaluation.seats (command line) asks for 100, above the limit of 5 set by the built-in terms: held to 5; settings may only lower the evaluation',
        'setting evaluation.days (command line) asks for 365, above the limit of 30 set by the built-in terms: held to 30; settings may only lower the evaluation',
      ]),
    );
    expect((await first.floatd.status()).evaluation).toMatchObject({ seats: 5, days: 30, daysLeft: 30, setBy: { seats: 'built-in terms', days: 'built-in terms' } });
    for (let i = 0; i < 5; i++) leaseOf(await first.acquire('cad', `u${i}`));
    expect(errorOf(await first.acquire('cad', 'u5')).code).toBe('NO_FREE_SEATS');
    await first.stop();

    const modest = testConfig({ 'evaluation.seats': 2, hostRoot: greedy.hostRoot }, greedy.dataDir);
    const second = await start(modest, new FakeClock(T0 + DAY));
    expect((await second.floatd.status()).evaluation).toMatchObject({
      seats: 2,
      days: 30,
      daysLeft: 29,
      setBy: { seats: 'lowered by setting evaluation.seats (command line)', days: 'built-in terms' },
    });
  });

  it('under a product file, holds settings to its terms and names it as who set them', async () => {
    const vendor = await makeVendor();
    const file = join(tempDir(), 'product.json');
    writeFileSync(file, await writeProductFile(vendor.pair.privateJwk, { products: ['cad'], evaluation: { seats: 10, days: 20 }, now: T0 }));
    const config = testConfig({ 'evaluation.seats': 50, 'evaluation.days': 7, hostRoot: fakeHost() });
    await (await Floatd.create(config, { logger: silentLogger() })).stop();
    await trust([file, '--data-dir', config.dataDir], { out: () => {}, err: () => {}, env: {}, cwd: config.dataDir });
    const s = await start(config, new FakeClock(T0));
    const kid = (await s.floatd.status()).evaluation!.setBy!.seats.replace('product file of vendor key ', '');
    expect((await s.floatd.status()).evaluation).toMatchObject({
      seats: 10,
      days: 7,
      setBy: { seats: `product file of vendor key ${kid}`, days: 'lowered by setting evaluation.days (command line)' },
    });
    expect(s.warnings()).toContain(`setting evaluation.seats (command line) asks for 50, above the limit of 10 set by the product file of vendor key ${kid}: held to 10; settings may only lower the evaluation`);
  });
});

describe('the evaluation record outside the data directory', () => {
  it('a new data directory on the same host continues the same evaluation (same start and end), and ends it on time with EVALUATION_ENDED', async () => {
    const hostRoot = fakeHost();
    const first = await start(testConfig({ hostRoot }), new FakeClock(T0));
    const { startedAt, endsAt } = (await first.floatd.status()).evaluation!;
    expect(startedAt).toBe(new Date(T0).toISOString());
    await first.stop();
    const record = JSON.parse(readFileSync(recordFile(), 'utf8')) as Record<string, unknown>;
    expect(record).toMatchObject({ floatd: 'evaluation', startedAt, endsAt, keyInstalled: null });

    // rm -rf data, then serve: the same evaluation, 10 days on.
    const second = await start(testConfig({ hostRoot }), new FakeClock(T0 + 10 * DAY));
    expect((await second.floatd.status()).evaluation).toMatchObject({ startedAt, endsAt, daysLeft: 20, timeLeft: '20 days' });
    expect(second.lines.some((l) => String(l['msg']).includes('it continues, it does not start again'))).toBe(true);
    leaseOf(await second.acquire('cad'));
    await second.stop();

    const third = await start(testConfig({ hostRoot, 'http.listen': ['127.0.0.1:0'] }), new FakeClock(T0 + 31 * DAY));
    const ended = errorOf(await third.acquire('cad'));
    expect(ended).toMatchObject({ code: 'EVALUATION_ENDED', message: `the evaluation period ended at ${endsAt}; install a license key` });
    expect((await third.floatd.status()).evaluation).toMatchObject({ expired: true, timeLeft: 'none' });
    const web = third.floatd.listenerStatus().find((l) => l.scheme === 'http')!;
    const http = await call(`http://127.0.0.1:${web.port}/v1/leases`, 'POST', { client: { user: 'bob', instance: 'b-1' }, product: 'cad' });
    expect(http).toMatchObject({ status: 403, body: { ok: false, error: { code: 'EVALUATION_ENDED' } } });
  });

  it('once a license key was installed, removing it never brings evaluation back, not even in a new data directory', async () => {
    const hostRoot = fakeHost();
    const vendor = await makeVendor();
    const clock = new FakeClock(T0);
    const config = testConfig({ hostRoot, vendorPublicKeys: [vendor.publicFile] });
    const s = await start(config, clock);
    leaseOf(await s.acquire('cad'));
    const key = await withLicensing(config, clock, async (l) => l.add(await vendor.issue({ product: 'cad', seats: 2, now: T0 })));
    await s.floatd.reloadLicenses();
    expect((await s.floatd.status()).mode).toBe('licensed');
    await withLicensing(config, clock, async (l) => l.remove(key.id));
    await s.floatd.reloadLicenses();
    const denied = errorOf(await s.acquire('cad', 'bob'));
    expect(denied.code).toBe('EVALUATION_ENDED');
    expect(denied.message).toMatch(new RegExp(`evaluation has ended for good \\(license key ${key.id} was installed at .*\\) and no license key is installed: install a license key`));
    expect(await s.floatd.status()).toMatchObject({ mode: 'unlicensed', evaluation: { endedForGood: expect.stringContaining(`license key ${key.id} was installed`) } });
    expect(JSON.parse(readFileSync(recordFile(), 'utf8'))).toMatchObject({ keyInstalled: expect.stringContaining(key.id) });
    await s.stop();

    const fresh = await start(testConfig({ hostRoot, vendorPublicKeys: [vendor.publicFile] }), new FakeClock(T0 + DAY));
    expect(errorOf(await fresh.acquire('cad')).code).toBe('EVALUATION_ENDED');
    expect(fresh.lines.some((l) => l['level'] === 50 && String(l['msg']).includes('evaluation has ended for good'))).toBe(true);
  });

  it('a key installed before evaluation was recorded (an older version) ends evaluation for good too', async () => {
    const vendor = await makeVendor();
    const clock = new FakeClock(T0);
    const config = testConfig({ hostRoot: fakeHost(), vendorPublicKeys: [vendor.publicFile] });
    await (await start(config, clock)).stop();
    const key = await withLicensing(config, clock, async (l) => l.add(await vendor.issue({ product: 'cad', seats: 2, now: T0 })));
    // As an older version left it: the key, but no note that evaluation ended, and no record.
    const db = new Database(config.dbFile);
    db.prepare("DELETE FROM meta WHERE key = 'evaluation.closed'").run();
    db.close();
    rmSync(recordFile());
    const s = await start(config, clock);
    await withLicensing(config, clock, async (l) => l.remove(key.id));
    await s.floatd.reloadLicenses();
    expect(errorOf(await s.acquire('cad')).message).toContain(`evaluation has ended for good (license key ${key.id} was found installed at`);
    expect(JSON.parse(readFileSync(recordFile(), 'utf8'))).toMatchObject({ keyInstalled: expect.stringContaining(key.id) });
  });

  it('an edited record ends evaluation (and is not rewritten); a record of another host is replaced', async () => {
    const hostRoot = fakeHost();
    await (await start(testConfig({ hostRoot }), new FakeClock(T0))).stop();
    const original = readFileSync(recordFile(), 'utf8');

    // Edited by hand to start later: evaluation is over, and the file stays as it was edited.
    const edited = original.replace(/"startedAt": "[^"]+"/, `"startedAt": "${new Date(T0 + 20 * DAY).toISOString()}"`);
    writeFileSync(recordFile(), edited);
    const refused = await start(testConfig({ hostRoot }), new FakeClock(T0 + 2 * DAY));
    const denied = errorOf(await refused.acquire('cad'));
    expect(denied.code).toBe('EVALUATION_ENDED');
    expect(denied.message).toContain(`the evaluation record ${recordFile()} was altered`);
    expect(refused.lines.find((l) => l['level'] === 50 && String(l['msg']).includes('was altered'))).toMatchObject({ file: recordFile() });
    await refused.stop();
    expect(readFileSync(recordFile(), 'utf8')).toBe(edited);

    // The record of another host (both components differ): this host gets its own evaluation.
    writeFileSync(recordFile(), original);
    const other = await start(testConfig({ hostRoot: fakeHost('ffeeddccbbaa99887766554433221100', '99999999-8888-7777-6666-555555555555') }), new FakeClock(T0 + 3 * DAY));
    expect(other.warnings().some((m) => m.includes('is not this host\'s'))).toBe(true);
    expect((await other.floatd.status()).evaluation).toMatchObject({ startedAt: new Date(T0 + 3 * DAY).toISOString() });
  });

  it('answers CLOCK_SET_BACK in evaluation when the clock reads before the latest time seen, also after a new data directory', async () => {
    const hostRoot = fakeHost();
    await (await start(testConfig({ hostRoot }), new FakeClock(T0 + 10 * DAY))).stop();
    const setBack = await start(testConfig({ hostRoot, 'http.listen': ['127.0.0.1:0'] }), new FakeClock(T0 + 2 * DAY));
    const denied = errorOf(await setBack.acquire('cad'));
    expect(denied).toMatchObject({ code: 'CLOCK_SET_BACK', retryAfterMs: 60_000 });
    expect(denied.message).toContain(`before the latest time it has seen (${new Date(T0 + 10 * DAY).toISOString()})`);
    expect(setBack.lines.some((l) => l['level'] === 50 && String(l['msg']).includes('it was set back'))).toBe(true);
    // Over HTTP: 503 with Retry-After.
    const web = setBack.floatd.listenerStatus().find((l) => l.scheme === 'http')!;
    const http = await call(`http://127.0.0.1:${web.port}/v1/leases`, 'POST', { client: { user: 'bob', instance: 'b-1' }, product: 'cad' });
    expect(http).toMatchObject({ status: 503, headers: { 'retry-after': '60' }, body: { ok: false, error: { code: 'CLOCK_SET_BACK' } } });
    await setBack.stop();
    // Within 5 minutes of it: served.
    const right = await start(testConfig({ hostRoot }), new FakeClock(T0 + 10 * DAY - 60_000));
    leaseOf(await right.acquire('cad'));
  });
});

describe('evaluation serves any product name', () => {
  it('warns at the first lease of each product name, once, and status lists the names seen', async () => {
    const config = testConfig({ hostRoot: fakeHost() });
    const s = await start(config, new FakeClock(T0));
    leaseOf(await s.acquire('cad', 'a'));
    leaseOf(await s.acquire('cad', 'b'));
    leaseOf(await s.acquire('cda', 'c'));
    const firsts = s.lines.filter((l) => l['level'] === 40 && String(l['msg']).startsWith('evaluation granted its first lease'));
    expect(firsts.map((l) => l['product'])).toEqual(['cad', 'cda']);
    expect(firsts[1]!['msg']).toBe('evaluation granted its first lease for product "cda": evaluation serves any product name, so check that it is spelt as your license keys will name it (products seen: cad, cda)');
    expect((await s.floatd.status()).evaluation!.productsSeen).toEqual(['cad', 'cda']);
    await s.stop();
    const again = await start(config, new FakeClock(T0 + 1000));
    leaseOf(await again.acquire('cad', 'd'));
    expect(again.lines.some((l) => String(l['msg']).startsWith('evaluation granted its first lease'))).toBe(false);
  });
});

describe('evaluation from the command line', () => {
  it('a fresh serve is in evaluation with 5 seats for 30 days even when FLOATD_EVALUATION_SEATS asks 100; status shows the terms and who set them', async () => {
    const data = join(tempDir(), 'data');
    const child = spawnFloatd(['serve', '--data-dir', data, '--listen', '127.0.0.1:0'], { FLOATD_EVALUATION_SEATS: '100' });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => out.includes('"msg":"listening"'), 'the server to listen');
    expect(out).toContain('"msg":"setting evaluation.seats (environment FLOATD_EVALUATION_SEATS) asks for 100, above the limit of 5 set by the built-in terms: held to 5; settings may only lower the evaluation"');
    const status = JSON.parse((await cli(['status', '--json', '--data-dir', data])).out) as { evaluation: Record<string, unknown> };
    expect(status.evaluation).toMatchObject({ seats: 5, days: 30, setBy: { seats: 'built-in terms', days: 'built-in terms' }, record: recordFile() });
    const text = (await cli(['status', '--data-dir', data])).out;
    expect(text).toContain('evaluation: 5 seat(s) for 30 day(s), started ');
    expect(text).toContain('  seats set by: built-in terms');
    expect(text).toContain('  products seen: (none yet)');
    child.kill('SIGTERM');
    expect((await exited(child)).code).toBe(0);
  });
});
