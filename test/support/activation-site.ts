import { Floatd } from '../../src/app/floatd.js';
import { withActivation, withLicensing } from '../../src/app/inspect.js';
import { startVendorService, type RunningVendorService } from '../../packages/vendor/src/app/vendor-service.js';
import { SystemClock } from '../../src/adapters/clock/system-clock.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import type { Clock } from '../../src/domain/clock.js';
import { FloatdError } from '../../src/domain/errors.js';
import { fakeHost, type FakeHost } from './activation.js';
import { tempDir, testConfig } from './helpers.js';
import { capturingLogger, type Vendor } from './server.js';

export type Cleanup = Array<() => Promise<void>>;

/** The vendor's activation service on port 0, stopped at cleanup. */
export async function vendorService(vendor: Vendor, cleanup: Cleanup, clock?: Clock): Promise<{ service: RunningVendorService; vdir: string }> {
  const vdir = tempDir('floatd-vdir-');
  const service = await startVendorService({ dataDir: vdir, privateJwk: vendor.pair.privateJwk, host: '127.0.0.1', port: 0, tls: null, logger: silentLogger(), clock, ratePerMinute: 1000 });
  cleanup.push(() => service.stop());
  return { service, vdir };
}

/** The FloatdError a promise is refused with. */
export async function refusal(p: Promise<unknown>): Promise<FloatdError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof FloatdError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

export interface Site {
  readonly floatd: Floatd;
  readonly config: ReturnType<typeof testConfig>;
  readonly host: FakeHost;
  readonly address: string;
  readonly lines: Array<Record<string, unknown>>;
  acquire(product: string, user?: string): Promise<Awaited<ReturnType<TcpTransport['request']>>>;
  /** Runs `fn` with the data directory's activation, as `floatd activate` does, then lets the server notice. */
  activation<T>(fn: Parameters<typeof withActivation<T>>[2]): Promise<T>;
  stop(): Promise<void>;
}

/** A customer's floatd on a fake host (FLOATD_HOST_ROOT), with the given keys installed, listening on port 0. */
export async function site(vendor: Vendor, tokens: string[], cleanup: Cleanup, opts: { clock?: Clock; dataDir?: string; host?: FakeHost; extra?: Record<string, unknown> } = {}): Promise<Site> {
  const dataDir = opts.dataDir ?? tempDir('floatd-data-');
  const host = opts.host ?? fakeHost(dataDir);
  const clock = opts.clock ?? new SystemClock();
  const config = testConfig({ vendorPublicKeys: [vendor.publicFile], hostRoot: host.root, ...opts.extra }, dataDir);
  const { logger, lines } = capturingLogger();
  const floatd = await Floatd.create(config, { clock, logger });
  for (const token of tokens) await withLicensing(config, clock, (l) => l.add(token));
  const [bound] = await floatd.start();
  const address = `127.0.0.1:${bound!.port}`;
  const transports: TcpTransport[] = [];
  let stopped = false;
  const s: Site = {
    floatd,
    config,
    host,
    address,
    lines,
    async acquire(product, user = 'alice') {
      const t = await TcpTransport.connect(address);
      transports.push(t);
      const hello = await t.request('hello', { v: 1, client: { user, host: `${user}-host`, instance: `${user}-${transports.length}` } });
      if (!hello.ok) throw new Error(JSON.stringify(hello));
      return t.request('acquire', { product });
    },
    async activation(fn) {
      const r = await withActivation(config, clock, fn);
      await floatd.reloadLicenses();
      return r;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const t of transports) t.close();
      await floatd.stop();
    },
  };
  cleanup.push(() => s.stop());
  return s;
}
