import { describe, expect, it } from 'vitest';
import { Backoff, DEFAULT_BACKOFF } from '../../src/client/backoff.js';
import { FakeClock } from '../support/fake-clock.js';

/** A random source that gives these draws in turn. */
const draws = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length]!;
};

describe('Backoff', () => {
  it('draws each wait below a bound that starts at 100 ms and doubles up to 5 s', () => {
    expect(DEFAULT_BACKOFF).toEqual({ initialMs: 100, maxMs: 5000 });
    const highest = new Backoff({}, () => 0.999_999_9);
    expect(Array.from({ length: 9 }, () => highest.next())).toEqual([99, 199, 399, 799, 1599, 3199, 4999, 4999, 4999]);
    const half = new Backoff({}, () => 0.5);
    expect(Array.from({ length: 8 }, () => half.next())).toEqual([50, 100, 200, 400, 800, 1600, 2500, 2500]);
  });

  it('is full jitter: a draw of 0 waits not at all, and no draw reaches the bound', () => {
    const lowest = new Backoff({ initialMs: 200, maxMs: 1000 }, () => 0);
    expect(Array.from({ length: 5 }, () => lowest.next())).toEqual([0, 0, 0, 0, 0]);
    // A source that misbehaves (1, above 1, NaN) is held inside the bound.
    const wild = new Backoff({ initialMs: 200, maxMs: 1000 }, draws(1, 7, Number.NaN, -3));
    expect(Array.from({ length: 4 }, () => wild.next())).toEqual([199, 399, 0, 0]);
  });

  it('stays inside its bounds for any draw, and starts over after reset()', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 3000 }, draws(0.13, 0.87, 0.5, 0.999, 0.01, 0.66, 0.42));
    for (let round = 0; round < 3; round++) {
      let bound = 100;
      for (let i = 0; i < 10; i++) {
        expect(b.ceilingMs).toBe(bound);
        const wait = b.next();
        expect(wait).toBeGreaterThanOrEqual(0);
        expect(wait).toBeLessThan(bound);
        bound = Math.min(3000, bound * 2);
      }
      b.reset();
    }
  });

  it('spaces retries on a clock as drawn: the n-th try comes before the sum of the bounds so far', () => {
    // Tries scheduled one after another on a fake clock, as the lease client schedules its rounds.
    const clock = new FakeClock();
    const b = new Backoff({ initialMs: 100, maxMs: 800 }, draws(0.25, 0.75));
    const at: number[] = [];
    const retry = (left: number) => {
      if (left === 0) return;
      clock.setTimer(b.next(), () => {
        at.push(clock.monotonic());
        retry(left - 1);
      });
    };
    retry(6);
    clock.advance(10_000);
    // 0.25·100, 0.75·200, 0.25·400, 0.75·800, 0.25·800, 0.75·800
    expect(at).toEqual([25, 175, 275, 875, 1075, 1675]);
  });

  it('refuses bounds that make no sense', () => {
    expect(() => new Backoff({ initialMs: 0 })).toThrow(/initialMs/);
    expect(() => new Backoff({ initialMs: Number.NaN })).toThrow(/initialMs/);
    expect(() => new Backoff({ initialMs: 500, maxMs: 100 })).toThrow(/maxMs/);
    // A first bound above the default cap raises the cap with it.
    expect(new Backoff({ initialMs: 8000 }, () => 0.5).next()).toBe(4000);
  });
});
