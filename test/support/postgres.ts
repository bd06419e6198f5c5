import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  /** Kills the server's postmaster with SIGKILL (a crash: no clean shutdown). */
  kill(): void;
  /** Makes this standby the primary (pg_ctl promote) and waits until it accepts writes. */
  promote(): void;
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
  const dataDir = privateDir('floatd-pg-');
  run('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C']);
  const port = await freePort();
  writeConf(dataDir, { ...baseConf(port, dataDir, options.durable === true), ...options.settings });
  const server = serverAt(dataDir, port);
  server.start();
  return server;
}

function serverAt(dataDir: string, port: number): PgServer {
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
    kill() {
      if (!running) return;
      const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGKILL');
      running = false;
    },
    promote() {
      run('pg_ctl', ['-D', dataDir, '-w', '-t', '30', 'promote']);
    },
  };
  return server;
}

function writeConf(dataDir: string, conf: Record<string, string>, append = false): void {
  const file = join(dataDir, 'postgresql.auto.conf');
  const text = Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n';
  if (append) appendFileSync(file, text);
  else writeFileSync(file, text);
  if (asRoot) chownSync(file, postgresUid(), postgresGid());
}

let ids: { uid: number; gid: number } | null = null;
function postgresUid(): number {
  ids ??= { uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })) };
  return ids.uid;
}
function postgresGid(): number {
  postgresUid();
  return ids!.gid;
}

function privateDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (asRoot) chownSync(dir, postgresUid(), postgresGid());
  return dir;
}

function baseConf(port: number, dataDir: string, durable: boolean): Record<string, string> {
  return {
    port: String(port),
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${dataDir}'`,
    max_connections: '200',
    fsync: durable ? 'on' : 'off',
    synchronous_commit: durable ? 'on' : 'off',
    full_page_writes: durable ? 'on' : 'off',
    shared_buffers: '32MB',
    log_min_messages: 'warning',
  };
}

/**
 * A standby of `primary` made with pg_basebackup, streaming from it, started.
 * With `synchronous`, the primary waits for it at every commit
 * (synchronous_standby_names names it), so a promoted standby has every
 * commit the primary acknowledged.
 */
export async function startStandby(primary: PgServer, options: { synchronous?: boolean; name?: string } = {}): Promise<PgServer> {
  const name = options.name ?? 'standby1';
  const dataDir = privateDir('floatd-pg-standby-');
  run('pg_basebackup', ['-D', dataDir, '-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-R', '-X', 'stream', '--checkpoint=fast', '--no-sync']);
  const port = await freePort();
  writeConf(dataDir, { ...baseConf(port, dataDir, true), cluster_name: `'${name}'` }, true);
  const standby = serverAt(dataDir, port);
  standby.start();
  if (options.synchronous === true) {
    const c = new pg.Client({ connectionString: primary.url() });
    await c.connect();
    try {
      await c.query(`ALTER SYSTEM SET synchronous_standby_names = '${name}'`);
      await c.query('SELECT pg_reload_conf()');
      // Until the standby streams, commits on the primary would wait for it.
      for (let i = 0; i < 300; i++) {
        const { rows } = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_replication WHERE application_name = $1 AND sync_state = 'sync' AND state = 'streaming'", [name]);
        if (rows[0]!.n > 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await c.end();
    }
  }
  return standby;
}
