import { existsSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../adapters/package-root.js';
import { readProductTerms, SHIPPED_PRODUCT_FILE, type ProductTerms } from '../adapters/crypto/product-file.js';
import type { JWK } from 'jose';
import type { Config } from '../config/config.js';
import { FloatdError, isStorageFault } from '../domain/errors.js';
import { createServerKey, readJwkFile, readServerKey, type KeyPairJwk } from '../adapters/crypto/keys.js';
import { createPrivateDir, createPrivateFile, isShared, modeOf, octal, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, tighten } from '../adapters/fs/private-files.js';
import { trustVendorKeys } from '../adapters/crypto/license-keys.js';
import type { Clock } from '../domain/clock.js';
import type { LeaseStore } from '../domain/ports.js';
import { Licensing } from './licensing.js';
import { EvaluationKeeper } from './evaluation.js';
import { EvaluationRecordFile } from '../adapters/fs/evaluation-record.js';
import type { Logger } from '../adapters/log/logger.js';
import { BUILT_IN_EVALUATION, decideEvaluationTerms, type EvaluationTermsDecided } from '../domain/evaluation.js';
import { LOCK_FILES, lockDataDir, lockHolder, type DataDirLock } from '../adapters/sqlite/data-dir-lock.js';
import { DatabaseUnusable, SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';

/** The settings that decide what an installed key means, as the server last started with them. */
const SETTINGS_META = 'server.settings';

export interface LicensingSettings {
  readonly vendorPublicKeys: readonly JWK[];
  readonly products: readonly string[];
  readonly evaluation: { readonly seats: number; readonly days: number };
  /** How activations are judged (absent in data directories recorded before activation existed). */
  readonly activation?: { readonly revalidateDays: number; readonly graceDays: number; readonly hostRoot: string };
  /** The vendor's product file in force: its key is trusted, its products served, its evaluation the most there is. */
  readonly product?: {
    readonly vendorKid: string;
    readonly products: readonly string[];
    readonly evaluation: { readonly seats: number; readonly days: number };
    /** The evaluation must be registered with the vendor before it grants (absent: not). */
    readonly evaluationActivation?: { readonly url: string | null } | null;
    /** The signed product file, which a registration request carries. */
    readonly token?: string;
  } | null;
  /** Who set the evaluation's seats and days (built-in terms, the product file, a setting that lowered them). */
  readonly evaluationSetBy?: EvaluationTermsDecided['setBy'];
  /** Evaluation settings that asked for more than the terms allow, held to them. */
  readonly evaluationClamped?: EvaluationTermsDecided['clamped'];
  /** The folder of the evaluation record (evaluation.stateDir). */
  readonly evaluationStateDir?: string;
}

/** The product file trusted in this data directory (floatd trust), as its signed terms. */
export const PRODUCT_META = 'vendor.product';
export { SHIPPED_PRODUCT_FILE };

/** The vendor's product terms for this data directory: the one trusted with floatd trust, else the one shipped beside floatd, else null. */
export async function productTermsOf(store: Pick<LeaseStore, 'getMeta'>): Promise<ProductTerms | null> {
  const stored = await store.getMeta(PRODUCT_META);
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
 * Licensing settings under the evaluation's terms: the built-in ones, or the
 * vendor's product file (its key is then trusted, and only its products are
 * served). evaluation.seats and evaluation.days may lower those terms, never
 * raise them: a setting that asks more is held to them (and listed in
 * evaluationClamped, for the server to warn).
 */
export function underProductTerms(settings: LicensingSettings, terms: ProductTerms | null, config: Config): LicensingSettings {
  const ask = (what: 'seats' | 'days') =>
    config.evaluationExplicit[what] ? { value: config.evaluation[what], setting: `evaluation.${what} (${config.evaluationSource[what]})` } : null;
  const limit = terms === null ? { ...BUILT_IN_EVALUATION, by: 'built-in terms' } : { ...terms.evaluation, by: `product file of vendor key ${terms.vendorKid}` };
  const decided = decideEvaluationTerms(limit, { seats: ask('seats'), days: ask('days') });
  const evaluation = { seats: decided.seats, days: decided.days };
  const common = { evaluation, evaluationSetBy: decided.setBy, evaluationClamped: decided.clamped, evaluationStateDir: config.evaluationStateDir };
  if (terms === null) return { ...settings, ...common, product: null };
  const keys = settings.vendorPublicKeys.some((k) => k.x === terms.vendorKey.x) ? settings.vendorPublicKeys : [...settings.vendorPublicKeys, terms.vendorKey];
  const products = settings.products.length === 0 ? terms.products : settings.products.filter((p) => terms.products.includes(p));
  return { ...settings, ...common, vendorPublicKeys: keys, products, product: { vendorKid: terms.vendorKid, products: terms.products, evaluation: terms.evaluation, evaluationActivation: terms.evaluationActivation, token: terms.token } };
}

function invalid(message: string): FloatdError {
  return new FloatdError('DATA_DIR_INVALID', message, { setting: 'dataDir' });
}

/** The contents of the data directory cannot be trusted: the server refuses to begin afresh on them. */
function damaged(file: string, message: string): FloatdError {
  return new FloatdError('DATA_DIR_DAMAGED', message, { setting: 'dataDir', file });
}

function explain(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EACCES' || e.code === 'EPERM') return 'permission denied';
  if (e.code === 'ENOTDIR') return 'a part of the path is a file, not a folder';
  return e.message;
}

/**
 * How long the server waits for a lock another process holds on its database
 * before answering UNAVAILABLE: SQLite waits on the event loop's thread, so
 * this bounds how long one request can hold up every other.
 */
export const SERVER_BUSY_TIMEOUT_MS = 200;

/**
 * An existing database: one that is empty, not floatd's or damaged is refused
 * (never made a fresh one: that would begin a new evaluation and forget the
 * installed keys). `verify` reads every page first (the server, at start).
 */
function openDatabase(config: Config, readonly: boolean, verify = false, busyTimeoutMs?: number): SqliteLeaseStore {
  try {
    return new SqliteLeaseStore(config.dbFile, { readonly, existing: true, verify, ...(busyTimeoutMs === undefined ? {} : { busyTimeoutMs }) });
  } catch (err) {
    // A lock another process holds, a full disk: coded, naming the file, for the operator to clear.
    if (isStorageFault(err)) throw err;
    const code = (err as { code?: unknown }).code;
    const why = err instanceof DatabaseUnusable ? err.why : code === 'SQLITE_NOTADB' ? 'it is not a database' : code === 'SQLITE_CORRUPT' ? 'it is damaged' : null;
    if (why === null) throw invalid(`cannot open ${config.dbFile}: ${explain(err)}`);
    throw damaged(
      config.dbFile,
      `the database ${config.dbFile} cannot be used: ${why}. Restore it from a backup (see "Files and backups" in docs/operations.md); ` +
        'floatd will not start afresh on it, which would begin a new evaluation and forget the installed license keys. ' +
        `To give up its contents and start as a new server, move ${config.dataDir} aside`,
    );
  }
}

/**
 * Makes the database of a new data directory under a temporary name and
 * renames it into place once its schema is in, so a start interrupted half-way
 * never leaves an empty floatd.db behind (which would be refused).
 */
function createDatabase(file: string): void {
  const temp = `${file}.new`;
  try {
    for (const f of [temp, `${temp}-wal`, `${temp}-shm`, `${temp}-journal`]) rmSync(f, { force: true });
    // Private before SQLite opens it: its -wal and -shm files take its mode.
    createPrivateFile(temp);
    new SqliteLeaseStore(temp).close();
    renameSync(temp, file);
  } catch (err) {
    throw invalid(`cannot create the database ${file}: ${explain(err)}`);
  }
}

/** A file or folder of the data directory made private (mode 0700 or 0600); the mode it had. */
export interface Tightened {
  readonly path: string;
  readonly mode: string;
}

/**
 * The data directory holds license keys, the lease log (user and host names)
 * and the server's signing key: the folder is made 0700 and every file of
 * floatd's in it 0600, whatever the umask was when they were made. The server
 * key is not changed here: one others could read is refused (see openServerKey).
 */
function tightenDataDir(config: Config): Tightened[] {
  const db = config.dbFile;
  const files = [db, `${db}-wal`, `${db}-shm`, `${db}-journal`, config.adminTokenFile, ...LOCK_FILES.map((f) => join(config.dataDir, f))];
  const done: Tightened[] = [];
  for (const [path, mode] of [[config.dataDir, PRIVATE_DIR_MODE] as const, ...files.map((f) => [f, PRIVATE_FILE_MODE] as const)]) {
    try {
      const before = tighten(path, mode);
      if (before !== null) done.push({ path, mode: octal(before) });
    } catch (err) {
      throw invalid(`cannot make ${path} private (mode ${octal(mode)}): ${explain(err)}; make it owned by the user floatd runs as`);
    }
  }
  return done;
}

export interface ServerDataDir {
  readonly store: SqliteLeaseStore;
  readonly lock: DataDirLock;
  /** This start made the data directory. */
  readonly created: boolean;
  /** This start made the database (there was none). */
  readonly freshDatabase: boolean;
  /** What was made private at this start, with the mode it had. */
  readonly tightened: readonly Tightened[];
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
 * locked for as long as the server runs, so a second server on it is refused;
 * its files are made private, and an existing database is checked page by page.
 */
/** The data directory of a starting server, made (if new) and locked: one server per folder. */
export function lockServerDataDir(config: Config): { lock: DataDirLock; created: boolean; tightened: Tightened[] } {
  const created = !checkIsFolder(config.dataDir);
  if (created) {
    try {
      createPrivateDir(config.dataDir);
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
    return { lock: result.lock, created, tightened: tightenDataDir(config) };
  } catch (err) {
    result.lock.release();
    throw err;
  }
}

export function openServerDataDir(config: Config): ServerDataDir {
  const { lock, created, tightened } = lockServerDataDir(config);
  try {
    const freshDatabase = !existsSync(config.dbFile);
    if (freshDatabase) createDatabase(config.dbFile);
    return { store: openDatabase(config, false, !freshDatabase, SERVER_BUSY_TIMEOUT_MS), lock, created, freshDatabase, tightened };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/** Removes a database this start made, after a start that failed before the data directory was complete. */
export function removeFreshDatabase(config: Config): void {
  for (const f of [config.dbFile, `${config.dbFile}-wal`, `${config.dbFile}-shm`]) rmSync(f, { force: true });
}

/**
 * The server's signing key: clients pin its fingerprint, so it is never
 * replaced unasked. It is made with a new database (a first start), or with
 * `makeNew` (`serve --new-server-key`) where none is. A missing key beside an
 * existing database, or a key other users can read, is an error naming the
 * file and what to do.
 */
export async function openServerKey(config: Config, freshDatabase: boolean, makeNew: boolean): Promise<{ key: KeyPairJwk; created: boolean }> {
  const file = config.serverKeyFile;
  let mode: number | null;
  try {
    mode = modeOf(file);
  } catch (err) {
    throw invalid(`the server key ${file} cannot be used: ${explain(err)}`);
  }
  const fingerprintNote = 'clients that pinned the fingerprint of the old key (floatd run --server-key-fingerprint, serverKeyFingerprint in the SDK) refuse the server until given the new one (floatd status shows it)';
  if (mode === null) {
    if (!freshDatabase && !makeNew) {
      throw damaged(
        file,
        `the server key ${file} is missing, but ${config.dataDir} holds a database: restore the key from a backup (see "Files and backups" in docs/operations.md). ` +
          `Only if it is lost for good, start once with floatd serve --new-server-key: ${fingerprintNote}`,
      );
    }
    try {
      return { key: await createServerKey(file), created: true };
    } catch (err) {
      throw invalid(`cannot write the server key ${file}: ${explain(err)}`);
    }
  }
  if (makeNew) {
    throw new FloatdError('USAGE', `--new-server-key: the server key ${file} exists, and a new one is made only where none is; to replace it, move it aside first (${fingerprintNote})`);
  }
  if (isShared(mode)) {
    throw invalid(
      `the server key ${file} is readable by other users (mode ${octal(mode)}): whoever copied it can sign leases your clients trust. ` +
        `Run chmod 600 ${file}; if others may have copied it, move it aside and start once with floatd serve --new-server-key (${fingerprintNote})`,
    );
  }
  try {
    return { key: await readServerKey(file), created: false };
  } catch (err) {
    throw invalid(`the server key ${file} cannot be used: ${(err as Error).message.replace(`${file}: `, '')}`);
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
export function recordLicensingSettings(store: Pick<LeaseStore, 'setMeta'>, settings: LicensingSettings): Promise<void> {
  return store.setMeta(SETTINGS_META, JSON.stringify(settings));
}

/**
 * The licensing settings of the server of this data directory, as it recorded
 * them at its last start. A database from before they were recorded falls back
 * to the command's own configuration.
 */
export async function recordedLicensingSettings(store: Pick<LeaseStore, 'getMeta'>, config: Config): Promise<LicensingSettings> {
  const text = await store.getMeta(SETTINGS_META);
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
export async function licensingFor(store: LeaseStore, clock: Clock, settings: LicensingSettings, evaluation?: EvaluationKeeper): Promise<Licensing> {
  const keeper = evaluation ?? (settings.evaluationStateDir === undefined ? null : evaluationKeeper(store, settings.evaluationStateDir, settings.activation?.hostRoot ?? '/'));
  return new Licensing(store, clock, await trustVendorKeys(settings.vendorPublicKeys), settings.products, keeper);
}

/** The evaluation record of this host in `dir`, kept beside the data directory's store. */
export function evaluationKeeper(store: LeaseStore, dir: string, hostRoot: string, logger: Logger | null = null): EvaluationKeeper {
  return new EvaluationKeeper(new EvaluationRecordFile(dir, hostRoot), store, logger);
}
