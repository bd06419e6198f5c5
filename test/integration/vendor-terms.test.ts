import { afterEach, describe, expect, it } from 'vitest';
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
    expect(String(reported!['msg'])).toMatch(/2 day\(s\) before the latest time this server has seen/);
    expect(setBack.floatd.status().keys[0]!.state).toBe('expired');
  });
});
