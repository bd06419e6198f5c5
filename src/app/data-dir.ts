import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../adapters/package-root.js';
import { readProductTerms, type ProductTerms } from '../adapters/crypto/product-file.js';
import type { JWK } from 'jose';
import type { Config } from '../config/config.js';
import { FloatdError } from '../domain/errors.js';
import { readJwkFile } from '../adapters/crypto/keys.js';
import { trustVendorKeys } from '../adapters/crypto/license-keys.js';
import type { Clock } from '../domain/clock.js';
import type { LeaseStore } from '../domain/ports.js';
import { Licensing } from './licensing.js';
import { lockDataDir, lockHolder, type DataDirLock } from '../adapters/sqlite/data-dir-lock.js';
import { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';

/** The settings that decide what an installed key means, as the server last started with them. */
const SETTINGS_META = 'server.settings';

export interface LicensingSettings {
  readonly vendorPublicKeys: readonly JWK[];
  readonly products: readonly string[];
  readonly evaluation: { readonly seats: number; readonly days: number };
  /** How activations are judged (absent in data directories recorded before activation existed). */
  readonly activation?: { readonly revalidateDays: number; readonly graceDays: number; readonly hostRoot: string };
  /** The vendor's product file in force: its key is trusted, its products served, its evaluation the most there is. */
  readonly product?: { readonly vendorKid: string; readonly products: readonly string[]; readonly evaluation: { readonly seats: number; readonly days: number } } | null;
}

/** The product file trusted in this data directory (floatd trust), as its signed terms. */
export const PRODUCT_META = 'vendor.product';
/** A product file shipped beside floatd (in its package folder) is in force when none was trusted. */
export const SHIPPED_PRODUCT_FILE = 'floatd-product.json';

/** The vendor's product terms for this data directory: the one trusted with floatd trust, else the one shipped beside floatd, else null. */
export async function productTermsOf(store: Pick<LeaseStore, 'getMeta'>): Promise<ProductTerms | null> {
  const stored = store.getMeta(PRODUCT_META);
  if (stored !== undefined && stored !== '') return readProductTerms(stored);
  const shipped = join(packageRoot(), SHIPPED_PRODUCT_FILE);
  if (!existsSync(shipped)) return null;
  try {
    return await readProductTerms(readFileSync(shipped, 'utf8'));
  } catch (err) {
    throw new FloatdError('PRODUCT_FILE_INVALID', `${shipped}: ${(err as Error).message}`);
  }
}

/**
 * Licensing settings under a vendor's product terms: the vendor's key is
 * trusted, only its products are served, and the evaluation is the vendor's —
 * lowered (never raised) by evaluation.seats and evaluation.days when the
 * operator set them.
 */
export function underProductTerms(settings: LicensingSettings, terms: ProductTerms | null, config: Config): LicensingSettings {
  if (terms === null) return { ...settings, product: null };
  const keys = settings.vendorPublicKeys.some((k) => k.x === terms.vendorKey.x) ? settings.vendorPublicKeys : [...settings.vendorPublicKeys, terms.vendorKey];
  const products = settings.products.length === 0 ? terms.products : settings.products.filter((p) => terms.products.includes(p));
  const seats = config.evaluationExplicit.seats ? Math.min(config.evaluation.seats, terms.evaluation.seats) : terms.evaluation.seats;
  const days = config.evaluationExplicit.days ? Math.min(config.evaluation.days, terms.evaluation.days) : terms.evaluation.days;
  return { ...settings, vendorPublicKeys: keys, products, evaluation: { seats, days }, product: { vendorKid: terms.vendorKid, products: terms.products, evaluation: terms.evaluation } };
}

function invalid(message: string): FloatdError {
  return new FloatdError('DATA_DIR_INVALID', message, { setting: 'dataDir' });
}

function explain(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EACCES' || e.code === 'EPERM') return 'permission denied';
  if (e.code === 'ENOTDIR') return 'a part of the path is a file, not a folder';
  if (e.code === 'SQLITE_NOTADB') return 'the file is not a floatd database';
  return e.message;
}

function openDatabase(config: Config, readonly: boolean): SqliteLeaseStore {
  try {
    return new SqliteLeaseStore(config.dbFile, { readonly });
  } catch (err) {
    throw invalid(`cannot open ${config.dbFile}: ${explain(err)}`);
  }
}

function checkIsFolder(dir: string): boolean {
  try {
    if (!statSync(dir).isDirectory()) throw invalid(`the data directory ${dir} is a file, not a folder (setting dataDir)`);
    return true;
  } catch (err) {
    if (err instanceof FloatdError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false;
    throw invalid(`cannot use the data directory ${dir}: ${explain(err)}`);
  }
}

/**
 * The data directory of a starting server: created on first start (mode 0700),
 * locked for as long as the server runs, so a second server on it is refused.
 */
export function openServerDataDir(config: Config): { store: SqliteLeaseStore; lock: DataDirLock; created: boolean } {
  const created = !checkIsFolder(config.dataDir);
  if (created) {
    try {
      mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw invalid(`cannot create the data directory ${config.dataDir}: ${explain(err)}`);
    }
  }
  let result;
  try {
    result = lockDataDir(config.dataDir);
  } catch (err) {
    throw invalid(`cannot lock the data directory ${config.dataDir}: ${explain(err)}`);
  }
  if (!result.ok) {
    throw new FloatdError(
      'DATA_DIR_LOCKED',
      `another floatd server${result.holderPid ? ` (pid ${result.holderPid})` : ''} is running on ${config.dataDir}; stop it first, or give this one its own --data-dir`,
      { pid: result.holderPid },
    );
  }
  try {
    return { store: openDatabase(config, false), lock: result.lock, created };
  } catch (err) {
    result.lock.release();
    throw err;
  }
}

/**
 * The database of an existing data directory, for every command but `serve`:
 * they never create one, so a mistyped path is an error, not a new empty server.
 */
export function openDataDir(config: Config, mode: 'read' | 'write'): SqliteLeaseStore {
  const hint = `start the server there first (floatd serve --data-dir ${config.dataDir}), or name the server's data directory with --data-dir or --config`;
  if (!checkIsFolder(config.dataDir)) throw invalid(`no floatd data directory at ${config.dataDir}: ${hint}`);
  if (!existsSync(config.dbFile)) throw invalid(`${config.dataDir} holds no floatd database (floatd.db): ${hint}`);
  return openDatabase(config, mode === 'read');
}

/** The pid of the server running on the data directory (0 if unknown), or null when none runs. */
export function runningServerPid(config: Config): number | null {
  return lockHolder(config.dataDir);
}

/** Reads the vendor public keys named in config, naming any bad file. */
export function readVendorKeyFiles(config: Config): JWK[] {
  return config.vendorPublicKeys.map((file) => {
    try {
      return readJwkFile(file, 'public');
    } catch (err) {
      throw new FloatdError('CONFIG_INVALID', `setting vendorPublicKeys: ${(err as Error).message}`, { setting: 'vendorPublicKeys' });
    }
  });
}

export function licensingSettings(config: Config): LicensingSettings {
  return {
    vendorPublicKeys: readVendorKeyFiles(config),
    products: config.products,
    evaluation: config.evaluation,
    activation: { revalidateDays: config.activation.revalidateDays, graceDays: config.activation.graceDays, hostRoot: config.hostRoot },
  };
}

/** Kept in the data directory at every start, so commands judge keys exactly as the server does. */
export function recordLicensingSettings(store: SqliteLeaseStore, settings: LicensingSettings): void {
  store.setMeta(SETTINGS_META, JSON.stringify(settings));
}

/**
 * The licensing settings of the server of this data directory, as it recorded
 * them at its last start. A database from before they were recorded falls back
 * to the command's own configuration.
 */
export function recordedLicensingSettings(store: SqliteLeaseStore, config: Config): LicensingSettings {
  const text = store.getMeta(SETTINGS_META);
  if (text === undefined) return licensingSettings(config);
  try {
    return JSON.parse(text) as LicensingSettings;
  } catch {
    throw invalid(`${config.dbFile}: the recorded server settings are unreadable; start the server once to record them again`);
  }
}

/**
 * Licensing as the settings define it: the one place it is built, for the
 * server (from its config) and for every command (from what the server recorded).
 */
export async function licensingFor(store: LeaseStore, clock: Clock, settings: LicensingSettings): Promise<Licensing> {
  return new Licensing(store, clock, await trustVendorKeys(settings.vendorPublicKeys), settings.products, settings.product !== undefined && settings.product !== null);
}
