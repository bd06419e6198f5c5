import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CHILD_ENV, cli, exited, floatd, killChildren, MAIN, requireBuild, serve, spawnFloatd, vendorCli } from '../support/cli.js';
import { tempDir, testConfig, until } from '../support/helpers.js';
import { SqliteLeaseStore } from '../../src/adapters/sqlite/sqlite-lease-store.js';
import { Floatd } from '../../src/app/floatd.js';
import { silentLogger } from '../../src/adapters/log/logger.js';

beforeAll(requireBuild);
afterEach(killChildren);

const ROOT = join(import.meta.dirname, '..', '..');

/** A vendor key pair made with the CLI (in this process: the vendor tools are not what these tests check), and keys issued with it. */
async function vendor(dir: string) {
  const out = join(dir, 'vendor');
  expect((await vendorCli(['keygen', '--out', out])).code).toBe(0);
  const pub = join(out, 'vendor-public.jwk');
  const priv = join(out, 'vendor-private.jwk');
  const key = async () => {
    const r = await vendorCli(['issue', '--private-key', priv, '--licensee', 'Acme', '--product', 'cad', '--seats', '2']);
    expect(r.code, r.err).toBe(0);
    return r.out;
  };
  return { pub, priv, key };
}

/** The status a running server gives over its NDJSON door, asked in this process. */
async function remoteMode(address: string): Promise<unknown> {
  const r = await cli(['status', '--json', '--server', address]);
  return r.code === 0 ? (JSON.parse(r.out) as { mode: unknown }).mode : undefined;
}

/** Polls an asynchronous check (every 25 ms, for up to 5 s) for what another process does. */
async function untilAsync(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * A data directory a server has run on and stopped again: made, started and stopped by the
 * same code `floatd serve` runs, in this process (the tests that use it look at what is left).
 */
async function usedDataDir(): Promise<string> {
  const data = join(tempDir(), 'data');
  const server = await Floatd.create(testConfig({}, data), { logger: silentLogger() });
  await server.start();
  await server.stop();
  return data;
}

async function json(args: string[]): Promise<Record<string, unknown>> {
  const r = await cli(args);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as Record<string, unknown>;
}

const noStackTrace = (text: string) => expect(text).not.toMatch(/\n\s+at /);

describe('commands that act on a data directory', () => {
  it('refuse a missing data directory, naming it and what to pass, and create nothing', async () => {
    const missing = join(tempDir(), 'typo');
    const key = await (await vendor(tempDir())).key();
    for (const args of [['license', 'add', key], ['license', 'list'], ['license', 'remove', 'x'], ['status'], ['log'], ['rules', 'reload']]) {
      const r = await cli([...args, '--data-dir', missing]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err).toContain(`DATA_DIR_INVALID: no floatd data directory at ${missing}`);
      expect(r.err).toContain('--data-dir');
    }
    expect(existsSync(missing)).toBe(false);
    // Nor in the current directory when none is given.
    const cwd = tempDir();
    const r = await cli(['license', 'list'], { cwd });
    expect(r.code).toBe(1);
    expect(r.err).toContain(`DATA_DIR_INVALID: no floatd data directory at ${join(cwd, 'data')}`);
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  });

  it('judge keys with the vendor keys the running server trusts: license add needs no vendor key, and an untrusted key changes nothing', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    const v = await vendor(dir);
    const server = await serve(['--data-dir', data, '--vendor-public-key', v.pub]);
    const remote = ['status', '--json', '--server', `127.0.0.1:${server.port}`];

    // A key from a vendor the server does not trust is refused, and evaluation goes on.
    const stranger = await (await vendor(tempDir())).key();
    const refused = await cli(['license', 'add', stranger, '--data-dir', data]);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('LICENSE_KEY_UNKNOWN_VENDOR');
    expect((await cli(['license', 'list', '--data-dir', data])).out).toBe('no license key installed');
    expect((await json(remote))['mode']).toBe('evaluation');

    // Passing a vendor key to license commands is refused with the reason: the server's keys decide.
    const flag = await cli(['license', 'add', stranger, '--data-dir', data, '--vendor-public-key', v.pub]);
    expect(flag.code).toBe(2);
    expect(flag.err).toMatch(/USAGE: floatd license judges license keys with the vendor keys the server trusts/);

    const added = await cli(['license', 'add', await v.key(), '--data-dir', data]);
    expect(added.code, added.err).toBe(0);
    await untilAsync(async () => (await remoteMode(`127.0.0.1:${server.port}`)) === 'licensed', 'the server to use the key');
    await until(() => /"level":30,[^\n]*"msg":"license key [\w-]+ added: 2 seat\(s\) of cad"/.test(server.log()), 'the server to log the added key at info');
  });

  it('offline status tells what the running server tells, also for a licensed server and an expired evaluation', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    const v = await vendor(dir);
    // Evaluation that is over at once: the offline command (which has no such setting) must not say "30 days left".
    const child = spawnFloatd(['serve', '--data-dir', data, '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--vendor-public-key', v.pub], { FLOATD_EVALUATION_DAYS: '0' });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => /"scheme":"http"[^\n]*"msg":"listening"/.test(out), 'the server to listen');
    const portOf = (scheme: string) => new RegExp(`"scheme":"${scheme}","address":"[^"]*","port":(\\d+)`).exec(out)![1];
    const port = portOf('tcp');
    const webPort = portOf('http');
    // The running server's full view comes from the web endpoint with the admin token (its NDJSON door gives anyone the public view).
    const full = ['status', '--json', '--server', `http://127.0.0.1:${webPort}`, '--token-file', join(data, 'admin-token')];
    const same = (s: Record<string, unknown>) => {
      const { downToleranceMs: _d, ...rest } = s;
      return rest;
    };
    const offline = await json(['status', '--json', '--data-dir', data]);
    expect(offline).toMatchObject({ mode: 'evaluation', evaluation: { expired: true, daysLeft: 0 }, running: true });
    expect(same(offline)).toEqual(same(await json(full)));
    expect((await cli(['status', '--data-dir', data])).out).toContain('EVALUATION OVER');

    expect((await cli(['license', 'add', await v.key(), '--data-dir', data])).code).toBe(0);
    await untilAsync(async () => (await remoteMode(`127.0.0.1:${port}`)) === 'licensed', 'the server to use the key');
    const licensed = await json(['status', '--json', '--data-dir', data]);
    expect(licensed).toMatchObject({ mode: 'licensed', keys: [{ licensee: 'Acme', state: 'valid' }], rejectedKeys: [] });
    expect(same(licensed)).toEqual(same(await json(full)));
    child.kill('SIGTERM');
    expect((await exited(child)).code).toBe(0);
    expect(await json(['status', '--json', '--data-dir', data])).toMatchObject({ mode: 'licensed', running: false, rules: null });
  });

  it('refuses a second server on the same data directory, naming the first one\'s pid', async () => {
    const data = join(tempDir(), 'data');
    const first = await serve(['--data-dir', data]);
    const second = await cli(['serve', '--data-dir', data, '--listen', '127.0.0.1:0']);
    expect(second.code).toBe(1);
    expect(second.err).toContain(`DATA_DIR_LOCKED: another floatd server (pid ${first.child.pid}) is running on ${data}`);
    noStackTrace(second.err);
    // The first one is still the one commands see.
    const running = (await json(['status', '--json', '--data-dir', data])) as { running: boolean; listeners: Array<{ scheme: string; port: number }> };
    expect(running.running).toBe(true);
    expect(running.listeners.find((l) => l.scheme === 'tcp')?.port).toBe(first.port);
    first.child.kill('SIGKILL');
    await exited(first.child);
    // A crashed server leaves no stale lock.
    const third = await serve(['--data-dir', data]);
    expect(third.port).toBeGreaterThan(0);
  });

  it('says what is wrong, without a stack trace, when the port is taken or the data directory is a file, and a failed start starts no evaluation', async () => {
    const taken: Server = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    const data = join(tempDir(), 'data');
    const busy = floatd(['serve', '--data-dir', data, '--listen', `127.0.0.1:${port}`]);
    taken.close();
    expect(busy.code).toBe(1);
    expect(busy.err).toContain(`LISTEN_FAILED: cannot listen on 127.0.0.1:${port} (listener "tcp"): the address is already in use`);
    noStackTrace(busy.err);
    expect(busy.out).not.toContain('evaluation mode');
    // The data directory this start made is gone again: no database, no evaluation clock.
    expect(existsSync(data)).toBe(false);

    const file = join(tempDir(), 'not-a-dir');
    writeFileSync(file, 'x');
    for (const args of [['serve', '--listen', '127.0.0.1:0'], ['status']]) {
      const r = await cli([...args, '--data-dir', file]);
      expect(r.code).toBe(1);
      expect(r.err).toContain(`DATA_DIR_INVALID: the data directory ${file} is a file, not a folder`);
      noStackTrace(r.err);
    }
  });

  it('refuses a vendor private key given as the public key', async () => {
    const dir = tempDir();
    const v = await vendor(dir);
    const r = await cli(['serve', '--data-dir', join(dir, 'data'), '--listen', '127.0.0.1:0', '--vendor-public-key', v.priv]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`CONFIG_INVALID: setting vendorPublicKeys: ${v.priv}: is a private key`);
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });

  it('ends quietly with status 0 when its reader goes away (floatd log | head -1, rules simulate | head -1)', async () => {
    const dir = tempDir();
    const data = await usedDataDir();
    const store = new SqliteLeaseStore(join(data, 'floatd.db'));
    store.transact((tx) => {
      for (let i = 0; i < 5000; i++) tx.appendEvent({ ts: Date.now(), event: 'denied', user: `user-${i}`, code: 'NO_FREE_SEATS', message: 'every seat of cad is taken' });
    });
    store.close();
    const rules = join(dir, 'rules.clt');
    writeFileSync(rules, 'CLT ALL connection_limit=1\n');
    const events = join(dir, 'events.jsonl');
    writeFileSync(events, Array.from({ length: 5000 }, (_, i) => JSON.stringify({ tMs: i, op: 'acquire', lease: `l${i}`, user: 'u' })).join('\n'));
    for (const cmd of [`log --data-dir ${data}`, `rules simulate ${rules} --events ${events}`]) {
      const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${MAIN}" ${cmd} | head -1`], { encoding: 'utf8' });
      expect(r.stderr, cmd).toBe('');
      expect(r.status, cmd).toBe(0);
      expect(r.stdout.split('\n').filter((l) => l !== '')).toHaveLength(1);
    }
  });

  it('npm start stops the server cleanly on SIGTERM to npm', async () => {
    const data = join(tempDir(), 'data');
    const npm = spawn('npm', ['start', '--silent', '--', '--data-dir', data, '--listen', '127.0.0.1:0'], { cwd: ROOT, env: CHILD_ENV });
    let out = '';
    npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
    npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const closed = new Promise((r) => npm.once('close', r));
    try {
      await until(() => out.includes('"msg":"listening"'), 'npm start to bring the server up');
    } finally {
      // Also when the server never came up: no npm and server left running after the test.
      npm.kill('SIGTERM');
    }
    await closed;
    await until(() => out.includes('"msg":"stopped"'), 'the server to stop');
    // The data directory is free again: nothing was orphaned.
    expect((await json(['status', '--json', '--data-dir', data]))['running']).toBe(false);
  });
});

describe('the files of the data directory', () => {
  const mode = (path: string) => statSync(path).mode & 0o777;
  const DATA_FILES = ['floatd.db', 'floatd.db-wal', 'floatd.db-shm', 'server-key.jwk', 'admin-token', 'floatd.lock', 'floatd.pid'];

  /** Runs `fn` with the most permissive umask; children started meanwhile inherit it. */
  async function withUmask<T>(mask: number, fn: () => Promise<T>): Promise<T> {
    const before = process.umask(mask);
    try {
      return await fn();
    } finally {
      process.umask(before);
    }
  }

  async function stopped(child: ChildProcess) {
    child.kill('SIGTERM');
    expect((await exited(child)).code).toBe(0);
  }

  it('are private whatever the umask: the folder 0700, every file 0600, and the log file floatd makes', async () => {
    const dir = tempDir();
    const data = join(dir, 'data');
    const logFile = join(dir, 'logs', 'floatd.log');
    await withUmask(0, async () => {
      const child = spawnFloatd(['serve', '--data-dir', data, '--listen', '127.0.0.1:0'], { FLOATD_LOG_DESTINATION: logFile });
      await until(() => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('"msg":"listening"'), 'the server to listen');
      expect(mode(data)).toBe(0o700);
      for (const f of DATA_FILES) expect([f, mode(join(data, f))]).toEqual([f, 0o600]);
      expect(mode(logFile)).toBe(0o600);
      expect(mode(join(dir, 'logs'))).toBe(0o700);
      await stopped(child);
    });
    // Nothing else is left in the folder, and no file of it was ever more open.
    expect(readdirSync(data).sort()).toEqual(['admin-token', 'floatd.db', 'floatd.lock', 'server-key.jwk']);
  });

  it('leave an existing log file the mode its owner gave it (logrotate\'s create 0640, say)', async () => {
    const logFile = join(tempDir(), 'floatd.log');
    writeFileSync(logFile, '');
    chmodSync(logFile, 0o640);
    const child = spawnFloatd(['serve', '--data-dir', join(tempDir(), 'data'), '--listen', '127.0.0.1:0'], { FLOATD_LOG_DESTINATION: logFile });
    await until(() => readFileSync(logFile, 'utf8').includes('"msg":"listening"'), 'the server to listen');
    expect(mode(logFile)).toBe(0o640);
    await stopped(child);
  });

  it('of an existing data directory are made private at start, each with an info line', async () => {
    const data = await usedDataDir();
    chmodSync(data, 0o755);
    for (const f of ['floatd.db', 'admin-token', 'floatd.lock']) chmodSync(join(data, f), 0o644);
    const server = await withUmask(0, () => serve(['--data-dir', data]));
    expect(mode(data)).toBe(0o700);
    for (const f of DATA_FILES) expect([f, mode(join(data, f))]).toEqual([f, 0o600]);
    for (const [path, was] of [[data, '0755'], [join(data, 'floatd.db'), '0644'], [join(data, 'admin-token'), '0644'], [join(data, 'floatd.lock'), '0644']]) {
      expect(server.log()).toMatch(new RegExp(`"level":30,[^\\n]*"file":"${path}","mode":"${was}"[^\\n]*"msg":"${path} was mode ${was}; made private`));
    }
    await stopped(server.child);
  });

  it('refuse a start without the server key beside an existing database, naming the file and what to do; --new-server-key makes one', async () => {
    const data = await usedDataDir();
    const keyFile = join(data, 'server-key.jwk');
    const before = (await json(['status', '--json', '--data-dir', data]))['serverKeyFingerprint'];
    rmSync(keyFile);
    const r = await cli(['serve', '--data-dir', data, '--listen', '127.0.0.1:0']);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`DATA_DIR_DAMAGED: the server key ${keyFile} is missing, but ${data} holds a database: restore the key from a backup`);
    expect(r.err).toContain('floatd serve --new-server-key');
    noStackTrace(r.err);
    expect(existsSync(keyFile)).toBe(false);

    const server = await serve(['--data-dir', data, '--new-server-key']);
    expect(server.log()).toMatch(/"level":40,[^\n]*"msg":"new server key made \(--new-server-key\): its fingerprint is /);
    expect(mode(keyFile)).toBe(0o600);
    const after = (await json(['status', '--json', '--data-dir', data]))['serverKeyFingerprint'];
    expect(after).not.toBe(before);
    await stopped(server.child);
    // It is never made over an existing key.
    const again = await cli(['serve', '--data-dir', data, '--listen', '127.0.0.1:0', '--new-server-key']);
    expect(again.code).toBe(2);
    expect(again.err).toContain(`USAGE: --new-server-key: the server key ${keyFile} exists`);
    expect((await json(['status', '--json', '--data-dir', data]))['serverKeyFingerprint']).toBe(after);
  });

  it('refuse a server key other users can read, naming the file and what to do', async () => {
    const data = await usedDataDir();
    const keyFile = join(data, 'server-key.jwk');
    for (const m of [0o644, 0o640, 0o604]) {
      chmodSync(keyFile, m);
      const r = await cli(['serve', '--data-dir', data, '--listen', '127.0.0.1:0']);
      expect(r.code).toBe(1);
      expect(r.err).toContain(`DATA_DIR_INVALID: the server key ${keyFile} is readable by other users (mode 0${m.toString(8)}): whoever copied it can sign leases your clients trust. Run chmod 600 ${keyFile}`);
      noStackTrace(r.err);
      expect(mode(keyFile)).toBe(m);
    }
    chmodSync(keyFile, 0o600);
    await stopped((await serve(['--data-dir', data])).child);
  });

  it('refuse an empty, foreign or damaged database instead of starting a fresh evaluation', async () => {
    const data = await usedDataDir();
    const db = join(data, 'floatd.db');
    const good = readFileSync(db);
    const cases: Array<[string, () => void, string]> = [
      ['empty', () => writeFileSync(db, ''), 'it is empty: it holds no floatd data'],
      ['garbage', () => writeFileSync(db, Buffer.alloc(8192, 0x41)), 'it is not a database'],
      [
        'foreign',
        () => {
          rmSync(db);
          const other = new Database(db);
          other.exec('CREATE TABLE photos (id INTEGER PRIMARY KEY)');
          other.close();
        },
        'it is not a floatd database: it holds tables of another program',
      ],
      [
        'damaged',
        () => {
          // Every page but the schema's overwritten: the file still opens, its tables do not read.
          const reader = new Database(db, { readonly: true });
          const pageSize = reader.pragma('page_size', { simple: true }) as number;
          const schema = new Set(reader.prepare<[], { pageno: number }>("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'").all().map((r) => r.pageno));
          reader.close();
          const bytes = Buffer.from(good);
          for (let page = 2; page * pageSize <= bytes.length; page++) {
            if (!schema.has(page)) bytes.fill(0x5a, (page - 1) * pageSize, page * pageSize);
          }
          writeFileSync(db, bytes);
        },
        'it is damaged (PRAGMA quick_check: ',
      ],
    ];
    for (const [name, damage, why] of cases) {
      damage();
      const size = statSync(db).size;
      // In this process the server's log goes to a file of the test's, where a real one's goes to its stdout.
      const logFile = join(tempDir(), 'floatd.log');
      const r = await cli(['serve', '--data-dir', data, '--listen', '127.0.0.1:0'], { env: { FLOATD_LOG_DESTINATION: logFile } });
      const logged = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      expect(r.code, name).toBe(1);
      expect(r.err, name).toContain(`DATA_DIR_DAMAGED: the database ${db} cannot be used: ${why}`);
      expect(r.err, name).toMatch(/\. Restore it from a backup \(see "Files and backups" in docs\/operations\.md\)/);
      expect(r.err.split('\n'), name).toHaveLength(1);
      expect(r.err, name).toContain('floatd will not start afresh on it, which would begin a new evaluation');
      noStackTrace(r.err);
      expect(r.out + logged, name).not.toContain('evaluation mode');
      expect(statSync(db).size, name).toBe(size);
      writeFileSync(db, good);
    }
    // Commands that read or change the database refuse the empty one too, rather than fill it.
    writeFileSync(db, '');
    for (const args of [['status'], ['license', 'list'], ['license', 'add', 'x.y.z'], ['log']]) {
      const r = await cli([...args, '--data-dir', data]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err, args.join(' ')).toContain(`DATA_DIR_DAMAGED: the database ${db} cannot be used: it is empty`);
    }
    expect(statSync(db).size).toBe(0);
  });

  it('a server key without its database: starts with a new database, keeps the key, and warns', async () => {
    const data = await usedDataDir();
    const before = (await json(['status', '--json', '--data-dir', data]))['serverKeyFingerprint'];
    rmSync(join(data, 'floatd.db'));
    const server = await serve(['--data-dir', data]);
    expect(server.log()).toMatch(/"level":40,[^\n]*"msg":"[^"]* holds a server key but no database: starting with a new, empty one/);
    expect((await json(['status', '--json', '--data-dir', data]))['serverKeyFingerprint']).toBe(before);
    await stopped(server.child);
  });
});
