import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/**
 * A real PostgreSQL server for tests: Debian's binaries, a cluster made with
 * initdb in a temp folder, started with pg_ctl on a free loopback port. As
 * root, the server runs as the `postgres` user (initdb refuses root).
 */
export interface PgServer {
  readonly port: number;
  readonly dataDir: string;
  /** The superuser's URL of database `name` (default `postgres`). */
  url(name?: string): string;
  /** Makes a new, empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Stops the server (fast shutdown: sessions are cut, committed data stays). */
  stop(): void;
  /** Starts it again on the same port and data. */
  start(): void;
  /** Stops it if running and removes its folder. */
  destroy(): void;
}

/** The folder of the newest PostgreSQL's binaries on this machine, or null. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions.length === 0 ? null : join(root, versions[0]!, 'bin');
}

export const POSTGRES_BIN = postgresBinDir();
export const IN_CI = process.env.CI === 'true';

const asRoot = process.getuid?.() === 0;

function run(bin: string, args: string[]): void {
  const argv = asRoot ? ['-u', 'postgres', '--', join(POSTGRES_BIN!, bin), ...args] : args;
  const cmd = asRoot ? 'runuser' : join(POSTGRES_BIN!, bin);
  const r = spawnSync(cmd, argv, { encoding: 'utf8', cwd: tmpdir() });
  if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let databases = 0;

/**
 * Starts a PostgreSQL server for a test file. `settings` are extra
 * postgresql.conf lines. fsync is off unless `durable` (tests that kill the
 * server and count what survived need it on).
 */
export async function startPostgres(options: { settings?: Record<string, string>; durable?: boolean } = {}): Promise<PgServer> {
  if (POSTGRES_BIN === null) throw new Error('PostgreSQL is not installed (apt-get install postgresql): no /usr/lib/postgresql/*/bin/initdb');
  const dataDir = mkdtempSync(join(tmpdir(), 'floatd-pg-'));
  if (asRoot) chownSync(dataDir, Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })));
  run('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C']);
  const port = await freePort();
  const conf: Record<string, string> = {
    port: String(port),
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${dataDir}'`,
    max_connections: '200',
    fsync: options.durable === true ? 'on' : 'off',
    synchronous_commit: options.durable === true ? 'on' : 'off',
    full_page_writes: options.durable === true ? 'on' : 'off',
    shared_buffers: '32MB',
    log_min_messages: 'warning',
    ...options.settings,
  };
  writeFileSync(join(dataDir, 'postgresql.auto.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  if (asRoot) chownSync(join(dataDir, 'postgresql.auto.conf'), Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })));
  let running = false;
  const server: PgServer = {
    port,
    dataDir,
    url: (name = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${name}`,
    async createDatabase(name = `floatd_${process.pid}_${++databases}`) {
      const c = new pg.Client({ connectionString: server.url() });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return server.url(name);
    },
    start() {
      run('pg_ctl', ['-D', dataDir, '-l', join(dataDir, 'server.log'), '-w', '-t', '30', 'start']);
      running = true;
    },
    stop() {
      if (!running) return;
      run('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '30', 'stop']);
      running = false;
    },
    destroy() {
      try {
        server.stop();
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
  server.start();
  return server;
}
