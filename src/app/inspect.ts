import { existsSync } from 'node:fs';
import type { Config } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import type { LeaseStore } from '../domain/ports.js';
import { FloatdError } from '../domain/errors.js';
import { readJwkFile, thumbprint } from '../adapters/crypto/keys.js';
import { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import { loadTrustedVendorKeys, openStore, RUNTIME_META } from './floatd.js';
import { EVALUATION_STARTED_META, Licensing } from './licensing.js';
import { PoolRegistry } from './pool-registry.js';
import { collectStatus, type ServerStatus } from './status.js';

/** Opens an existing data directory's database for reading, whether or not a server runs on it. */
export function openExisting(config: Config): SqliteLeaseStore {
  if (!existsSync(config.dbFile)) {
    throw new FloatdError('CONFIG_INVALID', `no floatd database in ${config.dataDir} (start the server once, or pass --data-dir)`, { setting: 'dataDir' });
  }
  return new SqliteLeaseStore(config.dbFile, { readonly: true });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface ServerRuntime {
  readonly pid: number;
  readonly listeners: ReadonlyArray<{ name: string; address: string; port: number }>;
}

/** The server running on this data directory (as it recorded itself at start), or null. */
export function serverRuntime(store: LeaseStore): ServerRuntime | null {
  const text = store.getMeta(RUNTIME_META);
  if (!text) return null;
  const runtime = JSON.parse(text) as ServerRuntime;
  return pidAlive(runtime.pid) ? runtime : null;
}

/** Status computed from the data directory alone. */
export async function offlineStatus(config: Config, clock: Clock): Promise<ServerStatus> {
  const store = openExisting(config);
  try {
    const trusted = await loadTrustedVendorKeys(config);
    const licensing = new Licensing(store, clock, trusted, config.products);
    const loaded = await licensing.load();
    const pools = new PoolRegistry();
    const startedAt = Number(store.getMeta(EVALUATION_STARTED_META) ?? clock.now());
    const noKeys = loaded.keys.length === 0 && loaded.rejected.length === 0;
    pools.set(loaded.keys, noKeys ? { seats: config.evaluation.seats, periodMs: config.evaluation.days * 86_400_000, startedAt } : null);
    let fingerprint: string | null = null;
    if (existsSync(config.serverKeyFile)) fingerprint = await thumbprint(readJwkFile(config.serverKeyFile, 'private'));
    const runtime = serverRuntime(store);
    return collectStatus({
      store,
      pools,
      now: clock.now(),
      rejectedKeys: loaded.rejected.map((r) => ({ id: r.id, code: r.error.code, message: r.error.message })),
      serverKeyFingerprint: fingerprint,
      listeners: runtime?.listeners.map((l) => ({ name: l.name, address: l.address, port: l.port })) ?? [],
      running: runtime !== null,
    });
  } finally {
    store.close();
  }
}

/** Licensing on a writable store, for `floatd license`. */
export async function withLicensing<T>(config: Config, clock: Clock, fn: (l: Licensing, store: SqliteLeaseStore) => Promise<T>): Promise<T> {
  const store = openStore(config);
  try {
    const trusted = await loadTrustedVendorKeys(config);
    return await fn(new Licensing(store, clock, trusted, config.products), store);
  } finally {
    store.close();
  }
}
