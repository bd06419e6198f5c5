import { describe, expect, it } from 'vitest';
import { withLicensing } from '../../src/app/inspect.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { FakeClock, testConfig, until } from '../support/helpers.js';
import { capturingLogger, makeVendor, prepareDataDir, startServer } from '../support/server.js';

const DAY = 86_400_000;

describe('what the server tells its operator', () => {
  it('warns as a key comes within 30, 14, 7 and 1 days of expiry, once each, and logs keys it picks up and drops at info', async () => {
    const clock = new FakeClock(Date.now());
    const vendor = await makeVendor();
    const config = testConfig({ vendorPublicKeys: [vendor.publicFile] });
    await prepareDataDir(config);
    // One key 2 s short of its 14-day warning, one 2 s short of its 1-day warning.
    const a = await withLicensing(config, clock, async (l) => l.add(await vendor.issue({ expires: new Date(clock.now() + 14 * DAY + 2000) })));
    const b = await withLicensing(config, clock, async (l) => l.add(await vendor.issue({ expires: new Date(clock.now() + DAY + 2000) })));
    const { logger, lines } = capturingLogger();
    const server = await startServer({ vendor, dataDir: config.dataDir, clock, logger });
    const warnings = (id: string) => lines.filter((l) => l['level'] === 40 && l['key'] === id && String(l['msg']).includes('expires in')).map((l) => l['daysLeft']);
    // At start: within the 30- and the 7-day warning; each says the whole days left (14 days and 2 s is 14 days).
    expect(warnings(a.id)).toEqual([14]);
    expect(warnings(b.id)).toEqual([1]);
    clock.advance(3000);
    expect(warnings(a.id)).toEqual([14, 14]);
    expect(warnings(b.id)).toEqual([1, 1]);
    clock.advance(3000);
    expect(warnings(a.id)).toEqual([14, 14]);
    expect(lines.find((l) => l['key'] === b.id && l['daysLeft'] === 1)).toMatchObject({ msg: expect.stringContaining('install its renewal') });

    const second = await withLicensing(config, clock, async (l) => l.add(await vendor.issue({ product: 'viewer' })));
    clock.advance(1000);
    await until(() => lines.some((l) => l['msg'] === `license key ${second.id} added: 5 seat(s) of viewer`), 'the added key to be logged');
    await withLicensing(config, clock, async (l) => l.remove(second.id));
    clock.advance(1000);
    await until(() => lines.some((l) => l['msg'] === `license key ${second.id} removed`), 'the removed key to be logged');
    expect(lines.find((l) => l['msg'] === `license key ${second.id} removed`)).toMatchObject({ level: 30 });
    await server.stop();
  });

  it('warns when connections are refused at maxConnections, at most once a minute, with how many', async () => {
    const { logger, lines } = capturingLogger();
    const server = await startServer({ logger, flags: { maxConnections: 1 } });
    const first = await server.connect('alice');
    const refused = async () => {
      const t = await TcpTransport.connect(server.address);
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => t.closed && (clearInterval(timer), resolve()), 10);
      });
    };
    await refused();
    await refused();
    await refused();
    const warns = lines.filter((l) => l['level'] === 40 && String(l['msg']).startsWith('connection refused'));
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ refused: 1, maxConnections: 1, msg: expect.stringContaining('maxConnections') });
    first.close();
    await server.stop();
  });
});
