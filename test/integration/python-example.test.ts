import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../support/server.js';

const EXAMPLE = join(import.meta.dirname, '..', '..', 'examples', 'python', 'floatd_client.py');
const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

function python(args: string[]): Promise<{ code: number | null; lines: Array<Record<string, unknown>>; err: string }> {
  const child = spawn('python3', [EXAMPLE, ...args], { env: { PATH: process.env['PATH'] } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, err, lines: out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) }));
  });
}

describe('the Python example client (docs/client.md)', () => {
  it('acquires, renews and releases against a real server', async () => {
    const s = await startServer();
    servers.push(s);
    const r = await python(['--server', s.address, '--product', 'cad', '--user', 'py', '--instance', 'py-1', '--hold', '1', '--renew-after-ms', '200']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const kinds = r.lines.map((l) => Object.keys(l)[0]);
    expect(kinds[0]).toBe('connected');
    expect(kinds[1]).toBe('acquired');
    expect(kinds.filter((k) => k === 'renewed').length).toBeGreaterThanOrEqual(2);
    expect(kinds.at(-1)).toBe('released');
    const leaseId = r.lines[1]!['acquired'];
    const log = s.floatd.store.queryEvents({ user: 'py' });
    expect(log[0]).toMatchObject({ event: 'granted', leaseId, instance: 'py-1' });
    expect(log.filter((e) => e.event === 'renewed').length).toBeGreaterThanOrEqual(2);
    expect(log.at(-1)).toMatchObject({ event: 'released', leaseId });
    expect(s.floatd.store.allLeases()).toEqual([]);
  });

  it('reports no free seat and gives up when retrying is off', async () => {
    const s = await startServer({ seats: 1 });
    servers.push(s);
    await (await s.connect('bob')).request('acquire', {});
    const r = await python(['--server', s.address, '--user', 'py', '--retry-seconds', '0']);
    expect(r.code).toBe(1);
    expect(r.lines.at(-1)).toMatchObject({ denied: 'NO_FREE_SEATS' });
  });
});
