import { FloatdError, isStorageFault } from '../../domain/errors.js';

/** What kind of storage fault an SQLite error is: the reason of the UNAVAILABLE error it becomes. */
export type StorageFaultReason = 'disk-full' | 'io-error' | 'locked' | 'read-only';

const PLAIN: Record<StorageFaultReason, string> = {
  'disk-full': 'the disk holding the database is full',
  'io-error': 'the disk holding the database reports I/O errors',
  locked: 'the database is locked by another process (an sqlite3 shell or a backup tool holding a transaction open?)',
  'read-only': 'the database cannot be written (read-only file or file system)',
};

function reasonOf(code: string): StorageFaultReason | null {
  if (code === 'SQLITE_FULL') return 'disk-full';
  if (code === 'SQLITE_IOERR' || code.startsWith('SQLITE_IOERR_') || code === 'SQLITE_CANTOPEN' || code.startsWith('SQLITE_CANTOPEN_')) return 'io-error';
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED' || code.startsWith('SQLITE_LOCKED_')) return 'locked';
  if (code === 'SQLITE_READONLY' || code.startsWith('SQLITE_READONLY_')) return 'read-only';
  return null;
}

/**
 * An SQLite error that is a fault of the storage rather than of floatd (a full
 * disk, an I/O error, a lock another process holds) as the UNAVAILABLE error
 * it is for everyone above the store; anything else is null. The SQLite code
 * stays in `sqliteCode` for the server log.
 */
export function storageFault(err: unknown, file: string): FloatdError | null {
  if (err instanceof FloatdError) return isStorageFault(err) ? err : null;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return null;
  const reason = reasonOf(code);
  if (reason === null) return null;
  return new FloatdError('UNAVAILABLE', `storage unavailable: ${PLAIN[reason]} (${file}: ${(err as Error).message}, ${code})`, { reason, sqliteCode: code });
}

/** Runs `fn`, turning a storage fault into UNAVAILABLE; other errors pass unchanged. */
export function guardStorage<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw storageFault(err, file) ?? err;
  }
}
