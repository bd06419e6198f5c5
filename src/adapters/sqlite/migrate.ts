import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { packageRoot } from '../package-root.js';
import { FloatdError } from '../../domain/errors.js';

const MIGRATION_RE = /^(\d{3})-[a-z0-9-]+\.sql$/;

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export function loadMigrations(dir = join(packageRoot(), 'migrations')): Migration[] {
  return readdirSync(dir)
    .filter((name) => MIGRATION_RE.test(name))
    .sort()
    .map((name) => ({ version: Number(MIGRATION_RE.exec(name)![1]), name, sql: readFileSync(join(dir, name), 'utf8') }));
}

/**
 * Brings the schema up to date, each migration in its own transaction, tracked
 * by `PRAGMA user_version`. Refuses a database newer than this build.
 */
export function migrate(db: Database.Database, migrations = loadMigrations()): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new FloatdError('DATA_DIR_INVALID', `the database schema (version ${current}) is newer than this floatd understands (${latest}); upgrade floatd`, { schemaVersion: current, understood: latest });
  }
  for (const m of migrations) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return latest;
}
