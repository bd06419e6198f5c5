import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { defaultMaxConnections, descriptorHeadroom, FALLBACK_MAX_CONNECTIONS, softFdLimit } from '../../src/config/fd-limit.js';
import { TokenBuckets } from '../../src/app/rate-limit.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe('the default connection cap', () => {
  it('reads the soft descriptor limit from /proc/self/limits', () => {
    expect(softFdLimit(() => LIMITS)).toBe(1024);
    expect(softFdLimit(() => LIMITS.replace('1024  ', 'unlimited'))).toBeNull();
    expect(softFdLimit(() => 'nothing here')).toBeNull();
    expect(softFdLimit(() => {
      throw new Error('ENOENT');
    })).toBeNull();
  });

  it('leaves a tenth of the descriptors (at least 64) for the database, logs, listeners and the web endpoint', () => {
    expect(descriptorHeadroom(256)).toBe(64);
    expect(defaultMaxConnections(1024)).toBe(921);
    expect(defaultMaxConnections(20_000)).toBe(18_000);
    expect(defaultMaxConnections(1_048_576)).toBe(943_718);
    expect(defaultMaxConnections(null)).toBe(FALLBACK_MAX_CONNECTIONS);
    expect(defaultMaxConnections(10)).toBe(1);
  });

  it('is what the config has unless set', () => {
    expect(loadConfig({ env: {}, cwd: '/' }).maxConnections).toBe(defaultMaxConnections());
    expect(loadConfig({ env: { FLOATD_MAX_CONNECTIONS: '500' }, cwd: '/' }).maxConnections).toBe(500);
  });
});

describe('abuse-limit and backpressure settings', () => {
  it('are on at levels no legitimate site reaches (limits) and 64 KiB / 32 MiB / 30 s (backpressure) by default; 0 turns a limit off', () => {
    const c = loadConfig({ env: {}, cwd: '/' });
    expect(c.maxConnectionsPerAddress).toBe(1000);
    expect(c.acquireRateLimit).toEqual({ perSecond: 200, burst: 2000 });
    const off = loadConfig({ env: { FLOATD_MAX_CONNECTIONS_PER_ADDRESS: '0', FLOATD_ACQUIRE_RATE_LIMIT_PER_SECOND: '0' }, cwd: '/' });
    expect(off.maxConnectionsPerAddress).toBe(0);
    expect(off.acquireRateLimit).toBeNull();
    expect(c.backpressure).toEqual({ connectionBytes: 65536, totalBytes: 32 << 20, drainTimeoutSeconds: 30 });
  });

  it('are read from the file, the environment and flags; the burst defaults to one second of the rate', () => {
    const c = loadConfig({ env: { FLOATD_MAX_CONNECTIONS_PER_ADDRESS: '16', FLOATD_ACQUIRE_RATE_LIMIT_PER_SECOND: '2.5' }, cwd: '/' });
    expect(c.maxConnectionsPerAddress).toBe(16);
    expect(c.acquireRateLimit).toEqual({ perSecond: 2.5, burst: 3 });
    const d = loadConfig({ env: {}, flags: { 'acquireRateLimit.perSecond': 5, 'acquireRateLimit.burst': 50, 'backpressure.drainTimeoutSeconds': 5 }, cwd: '/' });
    expect(d.acquireRateLimit).toEqual({ perSecond: 5, burst: 50 });
    expect(d.backpressure.drainTimeoutSeconds).toBe(5);
  });

  it.each([
    [{ maxConnectionsPerAddress: '-1' }, /setting maxConnectionsPerAddress \(command line\) must be a whole number from 0/],
    [{ 'acquireRateLimit.perSecond': 'fast' }, /setting acquireRateLimit.perSecond \(command line\) must be a number from 0/],
    [{ 'acquireRateLimit.perSecond': 0, 'acquireRateLimit.burst': 10 }, /setting acquireRateLimit.burst \(command line\) is set but acquireRateLimit.perSecond is not/],
    [{ 'backpressure.connectionBytes': 100 }, /setting backpressure.connectionBytes \(command line\) must be a whole number from 4096/],
    [{ 'backpressure.connectionBytes': 1 << 20, 'backpressure.totalBytes': 1 << 19 }, /setting backpressure.totalBytes \(command line\) must be at least backpressure.connectionBytes/],
    [{ 'backpressure.drainTimeoutSeconds': 0 }, /setting backpressure.drainTimeoutSeconds/],
  ])('refuses %j naming the setting', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags, cwd: '/' })).toThrow(message);
  });
});

describe('TokenBuckets', () => {
  it('lets a burst through, then one per interval, per key, and says how long to wait', () => {
    const b = new TokenBuckets({ perSecond: 2, burst: 3 });
    expect([b.take('a', 0), b.take('a', 0), b.take('a', 0)]).toEqual([null, null, null]);
    expect(b.take('a', 0)).toBe(500);
    expect(b.take('b', 0)).toBeNull();
    expect(b.take('a', 250)).toBe(250);
    expect(b.take('a', 500)).toBeNull();
    // A long pause refills to the burst, not beyond.
    for (let i = 0; i < 3; i++) expect(b.take('a', 60_000)).toBeNull();
    expect(b.take('a', 60_000)).toBe(500);
  });

  it('keeps a bounded table: full buckets are forgotten first', () => {
    const b = new TokenBuckets({ perSecond: 1, burst: 1 }, 2);
    expect(b.take('a', 0)).toBeNull();
    expect(b.take('b', 0)).toBeNull();
    // 'a' and 'b' refilled by t=5000: forgetting them changes nothing for them.
    expect(b.take('c', 5000)).toBeNull();
    expect(b.take('a', 5000)).toBeNull();
    expect(b.take('a', 5000)).toBe(1000);
  });
});
