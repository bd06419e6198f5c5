import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeProductFile } from '../../src/adapters/crypto/product-file.js';
import { trust } from '../../src/cli/trust.js';
import pino from 'pino';
import { Floatd } from '../../src/app/floatd.js';
import { withLicensing } from '../../src/app/inspect.js';
import { SystemClock } from '../../src/adapters/clock/system-clock.js';
import { newEd25519KeyPair, writeSecretFile, type KeyPairJwk } from '../../src/adapters/crypto/keys.js';
import { issueLicenseKey, type IssueOptions } from '../../src/adapters/crypto/license-keys.js';
import { silentLogger, type Logger } from '../../src/adapters/log/logger.js';
import { TcpTransport, type Reply } from '../../src/client/tcp-transport.js';
import type { Config } from '../../src/config/config.js';
import type { Clock } from '../../src/domain/clock.js';
import { tempDir, testConfig } from './helpers.js';
import { clockTimers } from '../../src/adapters/tcp/timers.js';

export interface Vendor {
  readonly pair: KeyPairJwk;
  readonly publicFile: string;
  readonly privateFile: string;
  issue(opts: Partial<IssueOptions>): Promise<string>;
}

export async function makeVendor(dir = tempDir('floatd-vendor-')): Promise<Vendor> {
  const pair = await newEd25519KeyPair();
  const publicFile = join(dir, 'vendor-public.jwk');
  const privateFile = join(dir, 'vendor-private.jwk');
  writeSecretFile(publicFile, JSON.stringify(pair.publicJwk));
  writeSecretFile(privateFile, JSON.stringify(pair.privateJwk));
  return {
    pair,
    publicFile,
    privateFile,
    issue: (opts) => issueLicenseKey(pair.privateJwk, { licensee: 'Acme', product: 'cad', seats: 5, now: Date.now(), ...opts }),
  };
}

export interface TestServer {
  readonly floatd: Floatd;
  readonly config: Config;
  readonly vendor: Vendor;
  readonly address: string;
  connect(user?: string, instance?: string, product?: string): Promise<TcpTransport>;
  /**
   * Lets the work the server's timers started commit (a sweep, a clock-jump
   * check, revocations): a fake clock fires them at once, and their units of
   * work commit on the next turns of the event loop.
   */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

/** What `TestServer.settle` does, for a server started otherwise. */
export async function settle(floatd: Floatd): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    await floatd.store.drained();
  }
}

export interface TestServerOptions {
  readonly seats?: number;
  readonly product?: string;
  readonly clock?: Clock;
  /** The NDJSON connections' timeouts wait on `clock` too (handshake, idle, drain), so a test moves them with it. */
  readonly connectionTimersOnClock?: boolean;
  readonly flags?: Record<string, unknown>;
  /** No key: evaluation mode. */
  readonly evaluation?: boolean;
  readonly dataDir?: string;
  readonly vendor?: Vendor;
  readonly logger?: Logger;
}

const opened: TcpTransport[] = [];

/** A real pino logger whose JSON lines are kept for the test to read. */
export function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

/** Creates a server's data directory (database, server key) without starting it, as a first `serve` would. */
export async function prepareDataDir(config: Config): Promise<void> {
  await (await Floatd.create(config, { logger: silentLogger() })).stop();
}

/** A real floatd on 127.0.0.1, port 0, with a temp data dir and a real SQLite file. */
export async function startServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const vendor = opts.vendor ?? (await makeVendor());
  const config = testConfig({ vendorPublicKeys: [vendor.publicFile], ...opts.flags }, opts.dataDir ?? tempDir());
  const timers = opts.connectionTimersOnClock === true && opts.clock !== undefined ? { connectionTimers: clockTimers(opts.clock) } : {};
  const floatd = await Floatd.create(config, { clock: opts.clock, logger: opts.logger ?? silentLogger(), ...timers });
  if (!opts.evaluation && opts.dataDir === undefined) {
    // Installed between creating the data directory and starting, as `floatd license add` would before a restart.
    const token = await vendor.issue({ seats: opts.seats ?? 5, product: opts.product ?? 'cad' });
    await withLicensing(config, new SystemClock(), (l) => l.add(token));
  }
  const [bound] = await floatd.start();
  const address = `127.0.0.1:${bound!.port}`;
  return {
    floatd,
    config,
    vendor,
    address,
    async connect(user = 'alice', instance = `${user}-1`, product?: string) {
      const t = await TcpTransport.connect(address);
      opened.push(t);
      const hello = await t.request('hello', { v: 1, client: { user, host: `${user}-host`, instance }, ...(product ? { product } : {}) });
      if (!hello.ok) throw new Error(`hello failed: ${JSON.stringify(hello)}`);
      return t;
    },
    settle: () => settle(floatd),
    async stop() {
      for (const t of opened.splice(0)) t.close();
      await floatd.stop();
    },
  };
}

export function leaseOf(reply: Reply): { id: string; expiresInMs: number; renewAfterMs: number; leaseMs: number; token: string; product: string } {
  if (!reply.ok) throw new Error(`expected a lease, got ${JSON.stringify(reply)}`);
  return (reply as unknown as { lease: ReturnType<typeof leaseOf> }).lease;
}

export function errorOf(reply: Reply): { code: string; message: string; retryAfterMs?: number; reason?: string } {
  if (reply.ok) throw new Error(`expected an error, got ${JSON.stringify(reply)}`);
  return reply.error;
}

/**
 * Gives a new data directory the evaluation terms of a vendor's product file
 * (for product `cad`), as `floatd trust` does: settings may only lower the
 * built-in 5 seats, so tests that need more evaluation seats take them from
 * the vendor, as a customer would.
 */
export async function trustEvaluationTerms(dataDir: string, evaluation: { seats: number; days: number }): Promise<void> {
  const vendor = await makeVendor();
  const file = join(tempDir(), 'product.json');
  writeFileSync(file, await writeProductFile(vendor.pair.privateJwk, { products: ['cad'], evaluation, now: Date.now() }));
  const config = testConfig({}, dataDir);
  await prepareDataDir(config);
  await trust([file, '--data-dir', dataDir], { out: () => {}, err: () => {}, env: {}, cwd: dataDir });
}
