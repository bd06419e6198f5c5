import type { Config } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import type { ActivationStore, LeaseStore } from '../domain/ports.js';
import { FloatdError } from '../domain/errors.js';
import type { LicenseKey } from '../domain/license.js';
import type { ServerActivation } from './activation.js';
import type { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import { CommandContext } from './command-context.js';
import { runningServerPid } from './data-dir.js';
import { evaluationTermsRegistered } from './evaluation-registration.js';
import type { Licensing } from './licensing.js';
import { logAnchorOf } from './log-anchor.js';
import { PoolRegistry } from './pool-registry.js';
import { RUNTIME_META, type ServerRuntime } from './runtime-record.js';
import { collectStatus, type ServerStatus } from './status.js';
import { openStore } from './stores.js';

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
export async function serverRuntime(config: Config, store: Pick<LeaseStore, 'getMeta'>): Promise<ServerRuntime | null> {
  if (runningServerPid(config) === null) return null;
  const text = await store.getMeta(RUNTIME_META);
  return text ? (JSON.parse(text) as ServerRuntime) : null;
}

/** Status computed from the data directory alone: the same facts as `status --server`. */
export function offlineStatus(config: Config, clock: Clock): Promise<ServerStatus> {
  return CommandContext.with(config, clock, 'read', async (ctx) => {
    const { store, settings } = ctx;
    const pools = new PoolRegistry();
    const loaded = await (await ctx.licensing()).loadPools(pools, { ...settings.evaluation, ...(await evaluationTermsRegistered(store, settings, config.hostRoot, config.dataDir)) });
    const activation = await ctx.activation();
    if (activation !== null) pools.setActivation(await activation.evaluate(loaded.keys, clock.now()));
    const runtime = await serverRuntime(config, store);
    return collectStatus({
      store,
      pools,
      now: clock.now(),
      rejectedKeys: loaded.rejected.map((r) => ({ id: r.id, code: r.error.code, message: r.error.message })),
      serverKeyFingerprint: await ctx.fingerprint(),
      listeners: runtime?.listeners.map((l) => ({ name: l.name, scheme: l.scheme ?? 'tcp', address: l.address, port: l.port, suspended: l.suspended ?? false })) ?? [],
      running: runtime !== null,
      rules: runtime?.rules ?? null,
      logAnchor: logAnchorOf(store.kind === 'sqlite' ? store.latestCheckpoint() : undefined),
      settings,
    });
  });
}

/** Licensing on the data directory's store, with its server's trusted vendor keys, for `floatd license`. */
export function withLicensing<T>(config: Config, clock: Clock, fn: (l: Licensing, store: LeaseStore) => Promise<T>): Promise<T> {
  return CommandContext.with(config, clock, 'write', async (ctx) => fn(await ctx.licensing(), ctx.store));
}

/** The data directory's activation and its verified keys, for `floatd activate` and `deactivate`. */
export function withActivation<T>(config: Config, clock: Clock, fn: (a: ServerActivation, keys: LicenseKey[], store: LeaseStore & ActivationStore) => Promise<T>): Promise<T> {
  return CommandContext.with(config, clock, 'write', async (ctx) => {
    const licensing = await ctx.licensing();
    const activation = await ctx.activation();
    if (activation === null) throw new FloatdError('DATA_DIR_INVALID', `${config.dataDir} has no server key yet: start the server there once (floatd serve) before activating`, { setting: 'dataDir' });
    return fn(activation, (await licensing.load()).keys, ctx.store);
  });
}
