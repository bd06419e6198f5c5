import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { exited, floatd, killChildren, requireBuild, spawnFloatd } from '../support/cli.js';
import { tempDir } from '../support/helpers.js';

beforeAll(requireBuild);
afterEach(killChildren);

/** A port free on 127.0.0.1 now (taken from the system, then let go). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

describe('floatd serve and signals', () => {
  it('stops cleanly on a SIGTERM sent as soon as its port accepts a connection', async () => {
    const data = join(tempDir(), 'data');
    const port = await freePort();
    const child = spawnFloatd(['serve', '--data-dir', data, '--listen', `127.0.0.1:${port}`]);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const startedAt = Date.now();
    while (!(await accepts(port))) {
      if (child.exitCode !== null || Date.now() - startedAt > 10_000) throw new Error(`serve never listened: ${out}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    child.kill('SIGTERM');
    expect(await exited(child)).toEqual({ code: 0, signal: null });
    expect(out).toContain('"msg":"stopped"');
    // The stop is in the lease log: the server recorded it, as it does at every clean stop.
    const events = floatd(['log', '--data-dir', data, '--json']).out.split('\n').map((l) => JSON.parse(l).event as string);
    expect(events.at(-1)).toBe('server-stopped');
  });

  it('a server whose start fails logs its error, not "stopped", and exits non-zero', async () => {
    const data = join(tempDir(), 'data');
    // The NDJSON port is free, the web port is taken: the start fails after the first listener bound.
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const webPort = (taken.address() as { port: number }).port;
    try {
      const child = spawnFloatd(['serve', '--data-dir', data, '--listen', '127.0.0.1:0', '--http-listen', `127.0.0.1:${webPort}`]);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      expect((await exited(child)).code).toBe(1);
      expect(out).toContain('LISTEN_FAILED');
      expect(out).not.toContain('"msg":"stopped"');
    } finally {
      taken.close();
    }
  });

  it('refuses a log destination whose folder cannot be made (FLOATD_LOG_DESTINATION=/proc/nope/x.log) at once with CONFIG_INVALID naming the setting', async () => {
    const data = join(tempDir(), 'data');
    const child = spawnFloatd(['serve', '--data-dir', data, '--listen', '127.0.0.1:0'], { FLOATD_LOG_DESTINATION: '/proc/nope/x.log' });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    // It used to spin at full CPU for ever; a start-up error takes well under the limit here.
    const timeout = new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 15_000).unref());
    expect(await Promise.race([exited(child), timeout])).toEqual({ code: 1, signal: null });
    expect(err).toContain('CONFIG_INVALID');
    expect(err).toContain('log.destination');
    expect(err).toContain('/proc/nope/x.log');
  });
});
