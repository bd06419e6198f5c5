import { join } from 'node:path';
import type pg from 'pg';
import { FloatdError } from '../../domain/errors.js';
import { packageRoot } from '../package-root.js';
import { loadMigrations, type Migration } from '../sqlite/migrate.js';

/** The PostgreSQL schema's migrations: migrations/postgres/NNN-name.sql. */
export function loadPgMigrations(): Migration[] {
  return loadMigrations(join(packageRoot(), 'migrations', 'postgres'));
}

/** The advisory lock key every node takes while it migrates: nodes starting together migrate one at a time. */
const MIGRATION_LOCK = 0x666c6f61; // "floa"

/**
 * Brings the schema up to date under a session advisory lock, each migration
 * in its own transaction, tracked in floatd_schema. Refuses a schema newer
 * than this build (another node was upgraded first): STORE_SCHEMA_NEWER.
 */
export async function migratePg(client: pg.ClientBase, migrations = loadPgMigrations()): Promise<number> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    await client.query('CREATE TABLE IF NOT EXISTS floatd_schema (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM floatd_schema');
    const current = rows[0]?.v ?? 0;
    const latest = migrations.at(-1)?.version ?? 0;
    if (current > latest) {
      throw new FloatdError(
        'STORE_SCHEMA_NEWER',
        `the database schema (version ${current}) is newer than this floatd understands (${latest}): another node runs a newer floatd; upgrade this one`,
        { schemaVersion: current, understood: latest },
      );
    }
    for (const m of migrations) {
      if (m.version <= current) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO floatd_schema (version) VALUES ($1)', [m.version]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    }
    return latest;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {});
  }
}
