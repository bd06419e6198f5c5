import { existsSync, readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { Config, StoreConfig } from '../config/config.js';
import { FloatdError } from '../domain/errors.js';
import type { KeyPairJwk } from '../adapters/crypto/keys.js';
import { thumbprint } from '../adapters/crypto/keys.js';
import type { Logger } from '../adapters/log/logger.js';
import { PgLeaseStore, readPasswordFile, type PgStoreOptions } from '../adapters/postgres/pg-lease-store.js';
import type { DataDirLock } from '../adapters/sqlite/data-dir-lock.js';
import type { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import { lockServerDataDir, openDataDir, openServerDataDir, openServerKey, removeFreshDatabase, type Tightened } from './data-dir.js';

/** A store a server runs on: SQLite in the data directory (one server), or PostgreSQL (several nodes). */
export type ServerStore = SqliteLeaseStore | PgLeaseStore;

/** The store a server runs on, with the data directory's lock and the server's signing key. */
export interface OpenedServerStore {
  readonly store: ServerStore;
  readonly lock: DataDirLock;
  /** This start made the data directory. */
  readonly created: boolean;
  /** This start made the database (SQLite: a file it removes again if the start fails). */
  readonly freshDatabase: boolean;
  readonly key: KeyPairJwk;
}

/** Where the cluster records its signing key's fingerprint: every node must sign with that key. */
export const CLUSTER_KEY_META = 'cluster.serverKeyFingerprint';

/**
 * Opens the store of a starting server, as `store.kind` says (the only place a
 * kind is chosen): its data directory made and locked, the database checked
 * (or created), the server key read (or made), and what was unusual about
 * them logged.
 */
export async function openServerStore(config: Config, logger: Logger, newServerKey: boolean): Promise<OpenedServerStore> {
  if (config.store.kind === 'postgres') return openClusterStore(config, logger, newServerKey);
  const { store, lock, created, freshDatabase, tightened } = openServerDataDir(config);
  try {
    const { key, created: newKey } = await openServerKey(config, freshDatabase, newServerKey);
    logTightened(logger, tightened);
    if (freshDatabase && !newKey) {
      logger.warn({ file: config.dbFile, serverKey: config.serverKeyFile }, `${config.dataDir} holds a server key but no database: starting with a new, empty one (no license keys installed, a new evaluation); if that is not meant, stop the server and restore ${config.dbFile} from a backup`);
    } else if (newKey && !freshDatabase) {
      logger.warn({ file: config.serverKeyFile }, `new server key made (--new-server-key): its fingerprint is ${await thumbprint(key.publicJwk)}; clients that pinned the old one refuse this server until given it`);
    }
    return { store, lock, created, freshDatabase, key };
  } catch (err) {
    closeAfterFailedStart(config, { store, lock, freshDatabase });
    throw err;
  }
}

function logTightened(logger: Logger, tightened: readonly Tightened[]): void {
  for (const t of tightened) {
    logger.info({ file: t.path, mode: t.mode }, `${t.path} was mode ${t.mode}; made private (0700 for the folder, 0600 for files): the data directory holds license keys, the lease log with user and host names, and the server's signing key`);
  }
}

/**
 * A node of a cluster: its own data directory (locked; it holds the node's
 * copy of the cluster's server key and its admin token), and the shared
 * PostgreSQL database. The first node to start on an empty database makes the
 * key and records its fingerprint; every other node must have a copy of that
 * key (clients pin one fingerprint for the cluster) or it refuses to start.
 */
async function openClusterStore(config: Config, logger: Logger, newServerKey: boolean): Promise<OpenedServerStore> {
  const { lock, created, tightened } = lockServerDataDir(config);
  let store: PgLeaseStore | null = null;
  try {
    store = await PgLeaseStore.open(pgStoreOptions(config, logger));
    const key = await clusterServerKey(config, store, newServerKey, logger);
    logTightened(logger, tightened);
    return { store, lock, created, freshDatabase: false, key };
  } catch (err) {
    await store?.end();
    lock.release();
    throw err;
  }
}

async function clusterServerKey(config: Config, store: PgLeaseStore, makeNew: boolean, logger: Logger): Promise<KeyPairJwk> {
  const file = config.serverKeyFile;
  const recorded = await store.getMeta(CLUSTER_KEY_META);
  if (recorded !== undefined && !existsSync(file) && !makeNew) {
    throw new FloatdError(
      'CLUSTER_KEY_MISMATCH',
      `this node has no server key (${file}), and the cluster signs with the key whose fingerprint is ${recorded}: copy server-key.jwk from a node of the cluster to ${file} (mode 0600), so clients that pinned it trust this node too`,
      { file, cluster: recorded },
    );
  }
  const { key, created } = await openServerKey(config, recorded === undefined, makeNew);
  const fingerprint = await thumbprint(key.publicJwk);
  if (recorded === undefined) {
    const stored = await store.initMeta(CLUSTER_KEY_META, fingerprint);
    if (stored === fingerprint) return key;
    throw mismatch(file, fingerprint, stored);
  }
  if (recorded === fingerprint) return key;
  if (created && makeNew) {
    await store.setMeta(CLUSTER_KEY_META, fingerprint);
    logger.warn({ file }, `new cluster server key made (--new-server-key): its fingerprint is ${fingerprint}; copy ${file} to every other node before restarting it, and give clients that pinned the old fingerprint the new one`);
    return key;
  }
  throw mismatch(file, fingerprint, recorded);
}

function mismatch(file: string, mine: string, cluster: string): FloatdError {
  return new FloatdError(
    'CLUSTER_KEY_MISMATCH',
    `this node's server key ${file} (fingerprint ${mine}) is not the cluster's (fingerprint ${cluster}): clients pin one fingerprint for every node; copy server-key.jwk from a node of the cluster to ${file}`,
    { file, node: mine, cluster },
  );
}

/** How a node (or a command) connects to the cluster's database, from the store settings. */
export function pgStoreOptions(config: Config, logger: Logger | null): PgStoreOptions {
  const s = config.store;
  return {
    url: s.sslMode === null ? s.url! : withoutSslParameters(s.url!),
    ...(s.passwordFile === null ? {} : { password: readPasswordFile(s.passwordFile) }),
    ...(s.sslMode === null && s.caFile === null ? {} : { ssl: sslOptions(s) }),
    poolSize: s.poolSize,
    nodeId: config.nodeId,
    ...(logger === null ? {} : { onError: (err: unknown) => logger.warn({ err }, `database connection: ${(err as Error).message}`) }),
  };
}

/** TLS to the database: store.sslMode and store.caFile over the URL's own sslmode. */
function sslOptions(s: StoreConfig): false | ConnectionOptions {
  const ca = s.caFile === null ? undefined : readCa(s.caFile);
  switch (s.sslMode) {
    case 'disable':
      return false;
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
      // The chain is checked, the host name is not.
      return { ...(ca === undefined ? {} : { ca }), rejectUnauthorized: true, checkServerIdentity: () => undefined };
    default:
      return { ...(ca === undefined ? {} : { ca }), rejectUnauthorized: true };
  }
}

function readCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new FloatdError('CONFIG_INVALID', `setting store.caFile: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { setting: 'store.caFile' });
  }
}

/** The URL without its ssl* parameters, which would otherwise win over store.sslMode. */
function withoutSslParameters(url: string): string {
  const u = new URL(url);
  for (const k of [...u.searchParams.keys()]) if (k.startsWith('ssl')) u.searchParams.delete(k);
  return u.toString();
}

/** Closes what a start opened before it failed: a first start leaves no database without its key behind. */
export function closeAfterFailedStart(config: Config, opened: Pick<OpenedServerStore, 'store' | 'lock' | 'freshDatabase'>): void {
  opened.store.close();
  if (opened.freshDatabase) removeFreshDatabase(config);
  opened.lock.release();
}

/**
 * The SQLite store of an existing data directory, for the commands that read
 * its file directly (the lease log's chain, reports, inspection): never
 * created, so a mistyped path is an error, not a new empty server.
 */
export function openStore(config: Config, mode: 'read' | 'write'): SqliteLeaseStore {
  if (config.store.kind !== 'sqlite') {
    throw new FloatdError(
      'CONFIG_INVALID',
      `this command works on the SQLite data directory, and store.kind is "${config.store.kind}": with a PostgreSQL store, use it through a running node (--server, the admin API)`,
      { setting: 'store.kind' },
    );
  }
  return openDataDir(config, mode);
}

/** The store of a data directory or a cluster, for commands that need only its ports (keys, activations, settings). */
export async function openCommandStore(config: Config, mode: 'read' | 'write'): Promise<ServerStore> {
  if (config.store.kind === 'postgres') return PgLeaseStore.open(pgStoreOptions(config, null));
  return openStore(config, mode);
}

/** Closes a store a command opened, waiting for a networked one's connections to end. */
export async function closeCommandStore(store: ServerStore): Promise<void> {
  if (store.kind === 'postgres') await store.end();
  else store.close();
}

/** Runs `fn` on the data directory's store, closing it after. */
export async function withStore<T>(config: Config, mode: 'read' | 'write', fn: (store: SqliteLeaseStore) => T | Promise<T>): Promise<T> {
  const store = openStore(config, mode);
  try {
    return await fn(store);
  } finally {
    store.close();
  }
}
