import { chmodSync, closeSync, fchmodSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** The data directory's mode: only the server's own user may enter it. */
export const PRIVATE_DIR_MODE = 0o700;
/** The mode of every file floatd keeps: only the server's own user may read it. */
export const PRIVATE_FILE_MODE = 0o600;

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/**
 * Creates `file` empty, mode 0600 whatever the umask, unless it exists;
 * returns whether it did. SQLite gives a database's -wal and -shm files the
 * database file's mode, so a database made this way keeps them private too.
 */
export function createPrivateFile(file: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', PRIVATE_FILE_MODE);
  } catch (err) {
    if (errno(err) === 'EEXIST') return false;
    throw err;
  }
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE);
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Makes a folder (and missing parents) and gives it mode 0700 whatever the umask; returns whether it was made.
 * One folder at a time rather than mkdirSync's recursive mode, which never returns where a parent
 * cannot hold folders (it loops on /proc/nope/x): here such a path fails at once with ENOENT.
 */
export function createPrivateDir(dir: string): boolean {
  const missing: string[] = [];
  for (let at = resolve(dir); ; at = dirname(at)) {
    try {
      statSync(at);
      break;
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
    }
    missing.push(at);
    if (dirname(at) === at) break;
  }
  for (const folder of missing.reverse()) {
    try {
      mkdirSync(folder, { mode: PRIVATE_DIR_MODE });
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err;
    }
  }
  if (missing.length === 0) return false;
  chmodSync(dir, PRIVATE_DIR_MODE);
  return true;
}

/** The permission bits of `path`, or null when it does not exist. */
export function modeOf(path: string): number | null {
  try {
    return statSync(path).mode & 0o777;
  } catch (err) {
    if (errno(err) === 'ENOENT') return null;
    throw err;
  }
}

/** True when group or others may do anything with `path`. */
export function isShared(mode: number): boolean {
  return (mode & 0o077) !== 0;
}

/**
 * Takes from `path` every permission `mode` does not grant (never adds one);
 * returns the mode it had when that changed it, null otherwise (or when missing).
 */
export function tighten(path: string, mode: number): number | null {
  const before = modeOf(path);
  if (before === null || (before & ~mode) === 0) return null;
  chmodSync(path, before & mode);
  return before;
}

/** "0644": a mode as people write it. */
export function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

/** Creates the folder a file floatd writes goes into, private when floatd makes it. */
export function ensureParent(file: string): void {
  createPrivateDir(dirname(file));
}
