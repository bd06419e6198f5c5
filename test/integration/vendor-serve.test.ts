import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { exited, floatdVendor, killChildren, requireBuild, spawnVendor, vendorCli } from '../support/cli.js';
import { tempDir } from '../support/helpers.js';

beforeAll(() => requireBuild());
afterEach(() => killChildren());

/** `floatd-vendor serve` as a real process; resolves once its log says it listens, with the port. */
function vendorServe(args: string[]): Promise<{ child: ChildProcess; port: number; log: () => string }> {
  const child = spawnVendor(['serve', ...args]);
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"port":(\d+)[^\n]*"msg":"activation service listening"/.exec(out);
      if (m) resolve({ child, port: Number(m[1]), log: () => out });
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => reject(new Error(`vendor serve exited with ${code}: ${out}`)));
  });
}

/** Whether something accepts a TCP connection on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

function vendorKeys(): { keys: string; privateKey: string } {
  const keys = tempDir('floatd-vkeys-');
  expect(floatdVendor(['keygen', '--out', keys]).code).toBe(0);
  return { keys, privateKey: join(keys, 'vendor-private.jwk') };
}

describe('floatd-vendor serve', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`stops on ${signal} within a second, exit code 0, with its port closed (after serving a keep-alive client)`, async () => {
      const { privateKey } = vendorKeys();
      const vdir = tempDir('floatd-vdir-');
      const { child, port, log } = await vendorServe(['--listen', '127.0.0.1:0', '--data-dir', vdir, '--private-key', privateKey]);
      // A client that keeps its connection open, as fetch does.
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      const sent = Date.now();
      child.kill(signal);
      const { code, signal: killedBy } = await exited(child);
      expect(Date.now() - sent).toBeLessThan(2000);
      expect({ code, killedBy }).toEqual({ code: 0, killedBy: null });
      expect(await accepts(port)).toBe(false);
      expect(log()).toMatch(/"msg":"shutting down"[\s\S]*"msg":"stopped"/);
    });
  }

  it('stops cleanly on a SIGTERM sent as soon as its port accepts a connection', async () => {
    const { privateKey } = vendorKeys();
    const vdir = tempDir('floatd-vdir-');
    const child = spawnVendor(['serve', '--listen', '127.0.0.1:0', '--data-dir', vdir, '--private-key', privateKey]);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const port = await new Promise<number>((resolve) => {
      const look = () => {
        const m = /"port":(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
        else setTimeout(look, 5);
      };
      look();
    });
    expect(await accepts(port)).toBe(true);
    child.kill('SIGTERM');
    expect(await exited(child)).toEqual({ code: 0, signal: null });
    expect(out).toMatch(/"msg":"stopped"/);
  });

  it('listens on port 8999 by default, apart from floatd\'s own ports (8989, 8990, 8991)', async () => {
    expect((await vendorCli(['--help'])).out).toContain('default listen 0.0.0.0:8999');
    const { privateKey } = vendorKeys();
    const vdir = tempDir('floatd-vdir-');
    const child = spawnVendor(['serve', '--data-dir', vdir, '--private-key', privateKey]);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    // Either it listens on 8999, or 8999 is taken on this machine and it says so: the default is 8999 both ways.
    await new Promise<void>((resolve) => {
      const look = () => (/activation service listening|LISTEN_FAILED/.test(out) ? resolve() : setTimeout(look, 10));
      look();
    });
    expect(out).toMatch(/"port":8999[^\n]*"msg":"activation service listening"|cannot listen on \S*:8999 /);
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited(child);
  });

  it('keeps its database private: the folder 0700, the database 0600, also when they were made open before', async () => {
    const { privateKey } = vendorKeys();
    const fresh = join(tempDir('floatd-vparent-'), 'vdir');
    expect((await vendorCli(['activations', 'list', '--data-dir', fresh])).code).toBe(0);
    expect(statSync(fresh).mode & 0o777).toBe(0o700);
    expect(statSync(join(fresh, 'vendor.db')).mode & 0o777).toBe(0o600);
    // A folder and database some earlier version left open to everyone are tightened.
    const old = join(tempDir('floatd-vparent-'), 'old');
    mkdirSync(old);
    chmodSync(old, 0o755);
    expect((await vendorCli(['issue', '--private-key', privateKey, '--licensee', 'Acme', '--product', 'cad', '--seats', '2', '--data-dir', old])).code).toBe(0);
    chmodSync(join(old, 'vendor.db'), 0o644);
    chmodSync(old, 0o755);
    writeFileSync(join(old, 'notes.txt'), 'kept as it is');
    expect((await vendorCli(['activations', 'list', '--data-dir', old])).code).toBe(0);
    expect(statSync(old).mode & 0o777).toBe(0o700);
    expect(statSync(join(old, 'vendor.db')).mode & 0o777).toBe(0o600);
  });
});
