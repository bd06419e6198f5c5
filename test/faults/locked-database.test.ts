import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { exited, killChildren, requireBuild, spawnFloatd } from '../support/cli.js';
import { tempDir, testConfig } from '../support/helpers.js';
import { prepareDataDir, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
const others: Database.Database[] = [];
let server: TestServer | undefined;
afterEach(async () => {
  killChildren();
  for (const db of others.splice(0)) if (db.open) db.close();
  await server?.stop();
  server = undefined;
});

function lock(file: string, sql: string): Database.Database {
  const db = new Database(file);
  others.push(db);
  db.exec(sql);
  return db;
}

async function serveOn(dataDir: string): Promise<{ code: number | null; err: string; ms: number }> {
  const started = Date.now();
  const child = spawnFloatd(['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0']);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.on('data', () => {});
  const { code } = await exited(child);
  return { code, err: err.trim(), ms: Date.now() - started };
}

describe('a database locked by another process', () => {
  it('serve exits at once with a coded message naming the file, and no stack trace, whether the lock blocks writes or reads too', async () => {
    const config = testConfig();
    await prepareDataDir(config);
    const writer = lock(config.dbFile, 'BEGIN EXCLUSIVE');
    const locked = await serveOn(config.dataDir);
    expect(locked.code).toBe(1);
    expect(locked.err).toContain(`floatd serve: UNAVAILABLE: storage unavailable: the database is locked by another process`);
    expect(locked.err).toContain(config.dbFile);
    expect(locked.err).not.toMatch(/^\s+at /m);
    expect(locked.ms).toBeLessThan(10_000);
    writer.exec('ROLLBACK');
    writer.close();

    // A lock in exclusive locking mode keeps readers out too: the database cannot even be opened.
    const exclusive = lock(config.dbFile, "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; INSERT INTO meta (key, value) VALUES ('held', 'x')");
    const shut = await serveOn(config.dataDir);
    expect(shut.code).toBe(1);
    expect(shut.err).toMatch(/^floatd serve: UNAVAILABLE: storage unavailable: the database is locked by another process/);
    expect(shut.err).not.toMatch(/^\s+at /m);
    exclusive.close();

    // Once the lock is gone, the same data directory serves.
    const child = spawnFloatd(['serve', '--data-dir', config.dataDir, '--listen', '127.0.0.1:0']);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('"msg":"listening"')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
    });
    child.kill('SIGTERM');
    expect((await exited(child)).code).toBe(0);
  });

  it('serve on a database it cannot open exits with a coded message naming it', async () => {
    const dataDir = tempDir();
    mkdirSync(join(dataDir, 'floatd.db'));
    const r = await serveOn(dataDir);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^floatd serve: DATA_DIR_INVALID: cannot open .*floatd\.db/);
    expect(r.err).not.toMatch(/^\s+at /m);
  });

  it('floatd run waits through UNAVAILABLE and starts its command once the lock is gone', async () => {
    server = await startServer({ seats: 2, flags: { leaseSeconds: 60 } });
    const other = lock(server.config.dbFile, 'BEGIN EXCLUSIVE');
    const child = spawnFloatd(['run', '--server', server.address, '--product', 'cad', '--retry-seconds', '1', '--', process.execPath, '-e', 'console.log("ran")']);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    // The lock goes once floatd run has been told UNAVAILABLE, not after a fixed wait.
    for (const until = Date.now() + 20_000; !/waiting for a lease: UNAVAILABLE \(locked\)/.test(err); ) {
      if (Date.now() > until || child.exitCode !== null) throw new Error(`floatd run was never told UNAVAILABLE: ${err}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    other.exec('COMMIT');
    const { code } = await exited(child);
    expect(err).toMatch(/waiting for a lease: UNAVAILABLE \(locked\)/);
    expect(out.trim()).toBe('ran');
    expect(code).toBe(0);
  });
});
