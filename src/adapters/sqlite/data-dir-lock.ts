import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createPrivateFile, PRIVATE_FILE_MODE } from '../fs/private-files.js';

const LOCK_FILE = 'floatd.lock';
const PID_FILE = 'floatd.pid';
/** The files the lock keeps in the data directory (the lock, its journal, the pid). */
export const LOCK_FILES = [LOCK_FILE, `${LOCK_FILE}-journal`, PID_FILE] as const;

export interface DataDirLock {
  release(): void;
}

export type LockResult = { readonly ok: true; readonly lock: DataDirLock } | { readonly ok: false; readonly holderPid: number | null };

function readPid(dir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dir, PID_FILE), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

/**
 * Takes the data directory's exclusive lock for as long as this server runs.
 * It is SQLite's own file lock (an OS record lock), held by keeping a write
 * lock on `floatd.lock`: the kernel drops it when the process ends in any way,
 * `kill -9` included, so a crashed server never leaves a stale lock behind, and
 * a recycled pid can never be mistaken for a live server.
 */
export function lockDataDir(dir: string, waitMs = 2000): LockResult {
  // Made private before SQLite opens it, so its journal is private too.
  createPrivateFile(join(dir, LOCK_FILE));
  const db = new Database(join(dir, LOCK_FILE));
  try {
    // Commands that only look (isDataDirLocked) hold a shared lock for an instant; wait them out.
    db.pragma(`busy_timeout = ${waitMs}`);
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL)');
    db.prepare('DELETE FROM holder').run();
    db.prepare('INSERT INTO holder (pid) VALUES (?)').run(process.pid);
    db.exec('COMMIT');
  } catch (err) {
    db.close();
    if (isBusy(err)) return { ok: false, holderPid: readPid(dir) };
    throw err;
  }
  writeFileSync(join(dir, PID_FILE), `${process.pid}\n`, { mode: PRIVATE_FILE_MODE });
  let held = true;
  return {
    ok: true,
    lock: {
      release() {
        if (!held) return;
        held = false;
        rmSync(join(dir, PID_FILE), { force: true });
        db.close();
      },
    },
  };
}

/** The pid of the server holding the data directory's lock, 0 if its pid file is gone, or null when no server holds it. */
export function lockHolder(dir: string): number | null {
  let db: Database.Database;
  try {
    db = new Database(join(dir, LOCK_FILE), { readonly: true, fileMustExist: true });
  } catch {
    return null;
  }
  try {
    db.pragma('busy_timeout = 0');
    db.prepare("SELECT COUNT(*) FROM sqlite_master").get();
    return null;
  } catch (err) {
    if (isBusy(err)) return readPid(dir) ?? 0;
    throw err;
  } finally {
    db.close();
  }
}
