import type { Config } from '../config/config.js';
import { FloatdError } from '../domain/errors.js';
import type { KeyPairJwk } from '../adapters/crypto/keys.js';
import { thumbprint } from '../adapters/crypto/keys.js';
import type { Logger } from '../adapters/log/logger.js';
import type { DataDirLock } from '../adapters/sqlite/data-dir-lock.js';
import type { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import { openDataDir, openServerDataDir, openServerKey, removeFreshDatabase } from './data-dir.js';

/** The store a server runs on, with the data directory's lock and the server's signing key. */
export interface OpenedServerStore {
  readonly store: SqliteLeaseStore;
  readonly lock: DataDirLock;
  /** This start made the data directory. */
  readonly created: boolean;
  /** This start made the database. */
  readonly freshDatabase: boolean;
  readonly key: KeyPairJwk;
}

/** The only place a store kind is chosen: `store.kind` names it (`sqlite`, the embedded default, today). */
function checkKind(config: Config): void {
  if (config.store.kind !== 'sqlite') throw new FloatdError('CONFIG_INVALID', `setting store.kind: "${String(config.store.kind)}" is not a store this floatd has (sqlite)`, { setting: 'store.kind' });
}

/**
 * Opens the store of a starting server: its data directory made and locked,
 * the database checked (or created), the server key read (or made), and what
 * was unusual about them logged.
 */
export async function openServerStore(config: Config, logger: Logger, newServerKey: boolean): Promise<OpenedServerStore> {
  checkKind(config);
  const { store, lock, created, freshDatabase, tightened } = openServerDataDir(config);
  try {
    const { key, created: newKey } = await openServerKey(config, freshDatabase, newServerKey);
    for (const t of tightened) {
      logger.info({ file: t.path, mode: t.mode }, `${t.path} was mode ${t.mode}; made private (0700 for the folder, 0600 for files): the data directory holds license keys, the lease log with user and host names, and the server's signing key`);
    }
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

/** Closes what a start opened before it failed: a first start leaves no database without its key behind. */
export function closeAfterFailedStart(config: Config, opened: Pick<OpenedServerStore, 'store' | 'lock' | 'freshDatabase'>): void {
  opened.store.close();
  if (opened.freshDatabase) removeFreshDatabase(config);
  opened.lock.release();
}

/**
 * The store of an existing data directory, for every command but `serve`:
 * never created, so a mistyped path is an error, not a new empty server.
 */
export function openStore(config: Config, mode: 'read' | 'write'): SqliteLeaseStore {
  checkKind(config);
  return openDataDir(config, mode);
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
