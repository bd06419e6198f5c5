import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LogDestination, type LogOutage } from '../../src/adapters/log/log-destination.js';
import { createLogger } from '../../src/adapters/log/logger.js';
import { tempDir } from '../support/helpers.js';

const flushed = (d: LogDestination) => new Promise<void>((resolve) => d.flush(() => resolve()));

describe('LogDestination', () => {
  it('writes every line, in order, without blocking the caller', async () => {
    const file = join(tempDir(), 'floatd.log');
    const d = new LogDestination(openSync(file, 'a'));
    for (let i = 0; i < 5000; i++) d.write(`{"n":${i}}\n`);
    await flushed(d);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(5000);
    expect(lines.map((l) => (JSON.parse(l) as { n: number }).n)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(d.dropped).toBe(0);
  });

  it('on a full device drops and counts lines, says so once, never throws, and tries again once per retry interval', async () => {
    const failing: string[] = [];
    const recovered: LogOutage[] = [];
    const d = new LogDestination(openSync('/dev/full', 'a'), { retryMs: 100, onFailing: (code) => failing.push(code), onRecovered: (o) => recovered.push(o) });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 1000; i++) d.write('{"msg":"x"}\n');
      await flushed(d);
      // The next attempt comes after retryMs; a loaded machine may run that timer late.
      for (let waited = 0; d.dropped < (round + 1) * 1000 && waited < 5000; waited += 10) await new Promise((r) => setTimeout(r, 10));
    }
    // Each round's lines waited for the next attempt, which failed too.
    expect(d.dropped).toBe(3000);
    expect(failing).toEqual(['ENOSPC']);
    expect(recovered).toEqual([]);
  });

  it('keeps the unwritten log bounded: past the bound, lines are dropped and counted, not held', () => {
    const d = new LogDestination(openSync('/dev/null', 'a'), { maxBufferBytes: 1000 });
    // The first line goes out at once; the rest queue behind it in this same turn.
    for (let i = 0; i < 500; i++) d.write(`${'x'.repeat(99)}\n`);
    expect(d.dropped).toBeGreaterThanOrEqual(489);
  });

  it('the pretty format goes through the same destination: readable lines in a file, dropped lines on a full device, never an exception', async () => {
    const file = join(tempDir(), 'floatd.log');
    const logger = createLogger({ level: 'info', destination: file, format: 'pretty' });
    logger.info({ seats: 5 }, 'hello there');
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    expect(readFileSync(file, 'utf8')).toMatch(/INFO: hello there\n\s+seats: 5/);
    const full = createLogger({ level: 'info', destination: '/dev/full', format: 'pretty' });
    for (let i = 0; i < 1000; i++) full.info('into the void');
    await new Promise<void>((resolve) => full.flush(() => resolve()));
  });

  it('a log file floatd cannot write is a setting error naming log.destination', () => {
    const dir = tempDir();
    expect(() => createLogger({ level: 'info', destination: dir, format: 'json' })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: `setting log.destination: cannot write the log file ${dir}: it is a folder` }),
    );
    expect(() => createLogger({ level: 'info', destination: '/dev/null/x/floatd.log', format: 'json' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
