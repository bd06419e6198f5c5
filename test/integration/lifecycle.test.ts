import { createServer, type Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Floatd } from '../../src/app/floatd.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { FloatdError } from '../../src/domain/errors.js';
import { testConfig } from '../support/helpers.js';
import { capturingLogger } from '../support/server.js';

describe('server lifecycle', () => {
  it('cleans up a start that fails half-way, so the data directory can be used again at once', async () => {
    const taken: Server = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    const config = testConfig({ listeners: ['127.0.0.1:0', `127.0.0.1:${port}`] });
    const floatd = await Floatd.create(config, { logger: silentLogger() });
    const failure = await floatd.start().catch((err: unknown) => err);
    taken.close();
    expect(failure).toBeInstanceOf(FloatdError);
    expect(failure).toMatchObject({ code: 'LISTEN_FAILED' });
    await floatd.stop();
    // The lock and the database were released, and the first listener closed.
    const again = await Floatd.create(testConfig({}, config.dataDir), { logger: silentLogger() });
    const [bound] = await again.start();
    expect(await again.start()).toEqual([bound]);
    await again.stop();
    await again.stop();
  });

  it('refuses a second server on one data directory in the same process too', async () => {
    const config = testConfig();
    const first = await Floatd.create(config, { logger: silentLogger() });
    await expect(Floatd.create(config, { logger: silentLogger() })).rejects.toMatchObject({ code: 'DATA_DIR_LOCKED', message: expect.stringContaining(`pid ${process.pid}`) });
    await first.stop();
    await (await Floatd.create(config, { logger: silentLogger() })).stop();
  });

  it('exits at once, saying why, when a stop hangs longer than its limit (given a way to exit)', async () => {
    const { logger, lines } = capturingLogger();
    const exits: number[] = [];
    const floatd = await Floatd.create(testConfig(), { logger, forceExit: (code) => exits.push(code), forceExitAfterMs: 200 });
    await floatd.start();
    // A unit of work that never ends: the stop waits for it to drain, for ever.
    void floatd.store.unit(() => new Promise<never>(() => {}));
    const stopped = floatd.stop();
    await new Promise((r) => setTimeout(r, 400));
    expect(exits).toEqual([1]);
    expect(lines.find((l) => l['level'] === 50)).toMatchObject({ afterMs: 200, msg: expect.stringContaining('the stop did not finish within 0.2 s') });
    void stopped;
  });
});
