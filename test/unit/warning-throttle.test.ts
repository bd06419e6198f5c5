import { describe, expect, it } from 'vitest';
import { WarningThrottle } from '../../src/app/warning-throttle.js';

describe('WarningThrottle', () => {
  it('lets one warning per key through per period and counts the ones held back', () => {
    const t = new WarningThrottle(60_000);
    expect(t.admit('10.0.0.1', 0)).toEqual({ held: 0 });
    expect(t.admit('10.0.0.1', 1_000)).toBeNull();
    expect(t.admit('10.0.0.1', 59_999)).toBeNull();
    expect(t.admit('10.0.0.2', 59_999)).toEqual({ held: 0 });
    expect(t.admit('10.0.0.1', 60_000)).toEqual({ held: 2 });
    expect(t.admit('10.0.0.1', 60_001)).toBeNull();
    expect(t.admit('10.0.0.1', 200_000)).toEqual({ held: 1 });
  });

  it('keeps a bounded table: expired keys go first, and it never grows past its cap', () => {
    const t = new WarningThrottle(60_000, 3);
    for (const k of ['a', 'b', 'c']) t.admit(k, 0);
    expect(t.admit('d', 60_000)).toEqual({ held: 0 });
    expect(t.admit('d', 60_001)).toBeNull();
    expect(t.admit('e', 60_002)).toEqual({ held: 0 });
    expect(t.admit('f', 60_003)).toEqual({ held: 0 });
    // Full of keys still in their period: the table starts afresh rather than growing.
    expect(t.admit('g', 60_004)).toEqual({ held: 0 });
    expect(t.admit('d', 60_005)).toEqual({ held: 0 });
  });
});
