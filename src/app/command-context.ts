import { existsSync } from 'node:fs';
import type { Config } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import { publicPart, readJwkFile, thumbprint } from '../adapters/crypto/keys.js';
import { trustVendorKeys } from '../adapters/crypto/license-keys.js';
import { ServerActivation } from './activation.js';
import { licensingFor, recordedLicensingSettings, type LicensingSettings } from './data-dir.js';
import type { Licensing } from './licensing.js';
import { closeCommandStore, openCommandStore, type ServerStore } from './stores.js';

/**
 * What a command other than `serve` works with: the store of an existing data
 * directory, and the services built over it as its server built them (with
 * the settings that server recorded), so that commands judge keys and
 * activations exactly as the running server does.
 */
export class CommandContext {
  private constructor(
    readonly config: Config,
    readonly clock: Clock,
    readonly store: ServerStore,
    readonly settings: LicensingSettings,
  ) {}

  /** Runs `fn` on the data directory, or on the cluster's database (opened for reading or writing), closing it after. */
  static async with<T>(config: Config, clock: Clock, mode: 'read' | 'write', fn: (ctx: CommandContext) => Promise<T>): Promise<T> {
    const store = await openCommandStore(config, mode);
    try {
      return await fn(new CommandContext(config, clock, store, await recordedLicensingSettings(store, config)));
    } finally {
      await closeCommandStore(store);
    }
  }

  licensing(): Promise<Licensing> {
    return licensingFor(this.store, this.clock, this.settings);
  }

  /** The server key's fingerprint, or null before the server made its key. */
  async fingerprint(): Promise<string | null> {
    return existsSync(this.config.serverKeyFile) ? thumbprint(readJwkFile(this.config.serverKeyFile, 'private')) : null;
  }

  /** The server's activation, with the server key of the data directory; null before the server made its key. */
  async activation(): Promise<ServerActivation | null> {
    const { config, store, clock, settings } = this;
    if (!existsSync(config.serverKeyFile)) return null;
    const privateJwk = readJwkFile(config.serverKeyFile, 'private');
    const kid = privateJwk.kid ?? (await thumbprint(privateJwk));
    const recorded = settings.activation;
    return new ServerActivation({
      store,
      clock,
      serverKey: { privateJwk: { ...privateJwk, kid }, publicJwk: { ...publicPart(privateJwk), kid } },
      serverKid: kid,
      trusted: await trustVendorKeys(settings.vendorPublicKeys),
      hostRoot: recorded?.hostRoot ?? config.hostRoot,
      dataDir: config.dataDir,
      settings: { ...config.activation, ...(recorded ? { revalidateDays: recorded.revalidateDays, graceDays: recorded.graceDays } : {}) },
    });
  }
}
