import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { CHILD_ENV, MAIN, requireBuild } from '../support/cli.js';
import { tempDir, until } from '../support/helpers.js';

const FD_LIMIT = 256;
const children: ChildProcess[] = [];
const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** `floatd serve` under a soft descriptor limit of 256 (`ulimit -n`, as systemd's LimitNOFILE would set it). */
async function serveLimited(env: Record<string, string> = {}): Promise<{ port: number; log: () => Array<Record<string, unknown>> }> {
  requireBuild();
  const data = join(tempDir(), 'data');
  const child = spawn('sh', ['-c', `ulimit -n ${FD_LIMIT} && exec "$0" "$@"`, process.execPath, MAIN, 'serve', '--listen', '127.0.0.1:0', '--data-dir', data], {
    env: { ...CHILD_ENV, FLOATD_LOG_FORMAT: 'json', ...env },
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const log = () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  await until(() => /"msg":"listening"/.test(out) || child.exitCode !== null, 'floatd serve to listen');
  const listening = log().find((l) => l['msg'] === 'listening' && l['scheme'] === 'tcp');
  if (listening === undefined) throw new Error(`floatd serve did not start: ${out}`);
  return { port: listening['port'] as number, log };
}

/** Opens a connection and resolves with its first line, or '' if it closes (or is reset) without one. */
function firstLine(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    sockets.push(s);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve(buf.slice(0, buf.indexOf('\n')));
    });
    s.on('error', () => resolve(''));
    s.on('close', () => resolve(buf));
  });
}

describe('file descriptors', () => {
  it('the default connection cap follows the descriptor limit: past it clients are told TOO_MANY_CONNECTIONS, and the log says so', async () => {
    const { port, log } = await serveLimited();
    const cap = FD_LIMIT - 64;
    // Those within the cap hear nothing yet (they have not said hello).
    await Promise.all(Array.from({ length: cap }, () => new Promise<void>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => resolve());
      sockets.push(s);
      s.on('error', reject);
    })));
    await new Promise((r) => setTimeout(r, 200));
    const extra = await Promise.all(Array.from({ length: 10 }, () => firstLine(port)));
    for (const line of extra) expect(JSON.parse(line)).toMatchObject({ ok: false, error: { code: 'TOO_MANY_CONNECTIONS' } });
    await until(() => log().some((l) => l['level'] === 40 && /maximum of 192 connections over all listeners \(maxConnections\)/.test(String(l['msg']))), 'the refusal warning');
  });

  it('running out of descriptors is logged, not only felt as resets, and the server carries on', async () => {
    const { port, log } = await serveLimited({ FLOATD_MAX_CONNECTIONS: '1000' });
    await until(() => log().some((l) => l['level'] === 40 && /file-descriptor limit of 256 leaves room for about 192 connections/.test(String(l['msg']))), 'the start-up warning');
    await Promise.all(Array.from({ length: FD_LIMIT + 50 }, () => new Promise<void>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => resolve());
      sockets.push(s);
      s.on('error', () => resolve());
    })));
    await until(() => log().some((l) => l['level'] === 40 && /out of file descriptors \(EMFILE, limit 256/.test(String(l['msg']))), 'the warning of running out');
    for (const s of sockets.splice(0)) s.destroy();
    // Descriptors come back as those connections close; a new client is served.
    await new Promise((r) => setTimeout(r, 300));
    const t = await TcpTransport.connect(`127.0.0.1:${port}`);
    expect((await t.request('hello', { client: { user: 'after', instance: 'a-1' } })).ok).toBe(true);
    t.close();
  });
});
