import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeProductFile } from '../../src/adapters/crypto/product-file.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { trust } from '../../src/cli/trust.js';
import { FloatdError } from '../../src/domain/errors.js';
import { Floatd } from '../../src/app/floatd.js';
import { withLicensing } from '../../src/app/inspect.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import type { Clock } from '../../src/domain/clock.js';
import { FakeClock } from '../support/fake-clock.js';
import { tempDir, testConfig } from '../support/helpers.js';
import { capturingLogger, errorOf, leaseOf, makeVendor } from '../support/server.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const DAY = 86_400_000;

async function start(config: ReturnType<typeof testConfig>, clock: Clock) {
  const { logger, lines } = capturingLogger();
  const floatd = await Floatd.create(config, { clock, logger });
  const [bound] = await floatd.start();
  const transports: TcpTransport[] = [];
  const stop = async () => {
    for (const t of transports) t.close();
    await floatd.stop();
  };
  cleanup.push(stop);
  return {
    floatd,
    lines,
    stop,
    async acquire(product: string, user = 'alice') {
      const t = await TcpTransport.connect(`127.0.0.1:${bound!.port}`);
      transports.push(t);
      await t.request('hello', { v: 1, client: { user, host: 'h', instance: `${user}-${transports.length}` } });
      return t.request('acquire', { product });
    },
  };
}

describe('time belongs to the server: the clock high-water mark', () => {
  it('a clock set back before the latest time seen is reported at error, and an expired key stays expired', async () => {
    const vendor = await makeVendor();
    const t0 = Date.now();
    const config = testConfig({ vendorPublicKeys: [vendor.publicFile] }, tempDir());
    const first = await start(config, new FakeClock(t0));
    await withLicensing(config, new FakeClock(t0), async (l) => l.add(await vendor.issue({ product: 'cad', expires: new Date(t0 + DAY), now: t0 })));
    await first.floatd.reloadLicenses();
    leaseOf(await first.acquire('cad'));
    await first.stop();

    const later = await start(config, new FakeClock(t0 + 2 * DAY));
    expect(errorOf(await later.acquire('cad')).code).toBe('LICENSE_EXPIRED');
    await later.stop();

    const setBack = await start(config, new FakeClock(t0));
    const denied = errorOf(await setBack.acquire('cad'));
    expect(denied.code).toBe('LICENSE_EXPIRED');
    const reported = setBack.lines.find((l) => l['level'] === 50 && String(l['msg']).includes('set back'));
    expect(reported).toMatchObject({ behindMs: 2 * DAY });
    expect(String(reported!['msg'])).toMatch(/2 days before the latest time this server has seen/);
    expect((await setBack.floatd.status()).keys[0]!.state).toBe('expired');
  });
});

async function trustFile(config: ReturnType<typeof testConfig>, file: string): Promise<string> {
  let out = '';
  await trust([file, '--data-dir', config.dataDir], { out: (t) => (out += t), err: () => {}, env: {}, cwd: config.dataDir });
  return out;
}

describe('evaluation belongs to the vendor: the product file and evaluation extension keys', () => {
  it('settings may only lower the vendor\'s evaluation; an extension key raises it; once a key was installed evaluation never comes back', async () => {
    const vendor = await makeVendor();
    const dir = tempDir();
    const productFile = join(dir, 'product.json');
    writeFileSync(productFile, await writeProductFile(vendor.pair.privateJwk, { products: ['cad'], evaluation: { seats: 10, days: 20 }, now: Date.now() }));
    const dataDir = tempDir();
    // No vendorPublicKeys: the product file brings the vendor's key. The operator asks for far more evaluation.
    const greedy = testConfig({ 'evaluation.seats': 100, 'evaluation.days': 365 }, dataDir);
    await (await Floatd.create(greedy, { logger: silentLogger() })).stop();
    expect(await trustFile(greedy, productFile)).toMatch(/products cad; evaluation at most 10 seat\(s\) for 20 day\(s\)/);
    const clock = new FakeClock(Date.now());
    const first = await start(greedy, clock);
    expect((await first.floatd.status()).evaluation).toMatchObject({ seats: 10, daysLeft: 20 });
    await first.stop();

    // Lower is fine.
    const modest = testConfig({ 'evaluation.seats': 3 }, dataDir);
    const second = await start(modest, clock);
    expect((await second.floatd.status()).evaluation).toMatchObject({ seats: 3, daysLeft: 20 });
    await second.stop();

    // An evaluation extension key from the vendor: 30 more days, 15 seats.
    const extension = await vendor.issue({ product: 'evaluation', seats: 1, evaluationExtension: { days: 30, seats: 15 } });
    const third = await start(greedy, clock);
    await withLicensing(greedy, clock, (l) => l.add(extension));
    await third.floatd.reloadLicenses();
    expect((await third.floatd.status()).evaluation).toMatchObject({ seats: 15, daysLeft: 50 });
    leaseOf(await third.acquire('cad'));

    // A license key ends evaluation; removing it does not bring evaluation back.
    const key = await vendor.issue({ product: 'cad', seats: 2 });
    const installed = await withLicensing(greedy, clock, (l) => l.add(key));
    await third.floatd.reloadLicenses();
    expect((await third.floatd.status()).mode).toBe('licensed');
    await withLicensing(greedy, clock, async (l) => l.remove(installed.id));
    await third.floatd.reloadLicenses();
    expect((await third.floatd.status()).mode).toBe('unlicensed');
    const denied = errorOf(await third.acquire('cad', 'bob'));
    expect(denied.code).toBe('EVALUATION_ENDED');
    expect(denied.message).toMatch(/evaluation has ended for good \(license key .* was installed/);
  });

  it('refuses an altered product file, and one from another vendor once one is trusted', async () => {
    const vendor = await makeVendor();
    const other = await makeVendor();
    const dir = tempDir();
    const good = join(dir, 'good.json');
    const altered = join(dir, 'altered.json');
    const foreign = join(dir, 'foreign.json');
    writeFileSync(good, await writeProductFile(vendor.pair.privateJwk, { products: ['cad'], evaluation: { seats: 5, days: 30 }, now: Date.now() }));
    writeFileSync(altered, JSON.stringify({ ...JSON.parse(readFileSync(good, 'utf8')), evaluation: { seats: 500, days: 30 } }));
    writeFileSync(foreign, await writeProductFile(other.pair.privateJwk, { products: ['cad'], evaluation: { seats: 100, days: 365 }, now: Date.now() }));
    const config = testConfig({}, tempDir());
    await (await Floatd.create(config, { logger: silentLogger() })).stop();
    const refusal = async (file: string) => {
      try {
        await trustFile(config, file);
      } catch (err) {
        if (err instanceof FloatdError) return err;
        throw err;
      }
      throw new Error('expected a refusal');
    };
    expect((await refusal(altered)).message).toMatch(/field "evaluation" differs from what the vendor signed/);
    await trustFile(config, good);
    const r = await refusal(foreign);
    expect(r.code).toBe('PRODUCT_FILE_INVALID');
    expect(r.message).toMatch(/installed once/);
  });
});
