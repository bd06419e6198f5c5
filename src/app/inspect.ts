import { existsSync } from 'node:fs';
import type { Config } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import type { LeaseStore } from '../domain/ports.js';
import { FloatdError } from '../domain/errors.js';
import { publicPart, readJwkFile, thumbprint } from '../adapters/crypto/keys.js';
import { trustVendorKeys } from '../adapters/crypto/license-keys.js';
import type { LicenseKey } from '../domain/license.js';
import { ServerActivation } from './activation.js';
import { evaluationTermsRegistered } from './evaluation-registration.js';
import type { LicensingSettings } from './data-dir.js';
import type { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import { licensingFor, recordedLicensingSettings, runningServerPid } from './data-dir.js';
import { openStore } from './stores.js';
import { RUNTIME_META, type ServerRuntime } from './runtime-record.js';
import { Licensing } from './licensing.js';
import { logAnchorOf } from './log-anchor.js';
import { PoolRegistry } from './pool-registry.js';
import { collectStatus, type ServerStatus } from './status.js';

export type { ServerRuntime };

/** Opens an existing data directory's database for reading, whether or not a server runs on it. */
export function openExisting(config: Config): SqliteLeaseStore {
  return openStore(config, 'read');
}

/**
 * The server running on this data directory, as it recorded itself at start, or
 * null. Whether one runs is the data directory's lock, not a pid that may have
 * been handed to another process since.
 */
export function serverRuntime(config: Config, store: LeaseStore): ServerRuntime | null {
  if (runningServerPid(config) === null) return null;
  const text = store.getMeta(RUNTIME_META);
  return text ? (JSON.parse(text) as ServerRuntime) : null;
}

/** The data directory's licensing, judged with the settings its server recorded. */
async function licensingOf(store: SqliteLeaseStore, config: Config, clock: Clock) {
  const settings = recordedLicensingSettings(store, config);
  return { licensing: await licensingFor(store, clock, settings), settings };
}

/** Status computed from the data directory alone: the same facts as `status --server`. */
export async function offlineStatus(config: Config, clock: Clock): Promise<ServerStatus> {
  const store = openExisting(config);
  try {
    const { licensing, settings } = await licensingOf(store, config, clock);
    const pools = new PoolRegistry();
    const loaded = await licensing.loadPools(pools, { ...settings.evaluation, ...(await evaluationTermsRegistered(store, settings, config.hostRoot, config.dataDir)) });
    const activation = await activationOf(config, store, clock, settings);
    if (activation !== null) pools.setActivation(await activation.evaluate(loaded.keys, clock.now()));
    let fingerprint: string | null = null;
    if (existsSync(config.serverKeyFile)) fingerprint = await thumbprint(readJwkFile(config.serverKeyFile, 'private'));
    const runtime = serverRuntime(config, store);
    return collectStatus({
      store,
      pools,
      now: clock.now(),
      rejectedKeys: loaded.rejected.map((r) => ({ id: r.id, code: r.error.code, message: r.error.message })),
      serverKeyFingerprint: fingerprint,
      listeners: runtime?.listeners.map((l) => ({ name: l.name, scheme: l.scheme ?? 'tcp', address: l.address, port: l.port, suspended: l.suspended ?? false })) ?? [],
      running: runtime !== null,
      rules: runtime?.rules ?? null,
      logAnchor: logAnchorOf(store.latestCheckpoint()),
      settings,
    });
  } finally {
    store.close();
  }
}

/** Licensing on the data directory's store, with its server's trusted vendor keys, for `floatd license`. */
export async function withLicensing<T>(config: Config, clock: Clock, fn: (l: Licensing, store: SqliteLeaseStore) => Promise<T>): Promise<T> {
  const store = openStore(config, 'write');
  try {
    const { licensing } = await licensingOf(store, config, clock);
    return await fn(licensing, store);
  } finally {
    store.close();
  }
}

/**
 * The server's activation, as commands see it: with the server key of the
 * data directory and the settings its server recorded; null before the
 * server made its key.
 */
export async function activationOf(config: Config, store: SqliteLeaseStore, clock: Clock, settings: LicensingSettings): Promise<ServerActivation | null> {
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

/** The data directory's activation and its verified keys, for `floatd activate` and `deactivate`. */
export async function withActivation<T>(config: Config, clock: Clock, fn: (a: ServerActivation, keys: LicenseKey[], store: SqliteLeaseStore) => Promise<T>): Promise<T> {
  const store = openStore(config, 'write');
  try {
    const { licensing, settings } = await licensingOf(store, config, clock);
    const activation = await activationOf(config, store, clock, settings);
    if (activation === null) throw new FloatdError('DATA_DIR_INVALID', `${config.dataDir} has no server key yet: start the server there once (floatd serve) before activating`, { setting: 'dataDir' });
    return await fn(activation, (await licensing.load()).keys, store);
  } finally {
    store.close();
  }
}
