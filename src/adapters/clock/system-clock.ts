import type { Clock, TimerHandle } from '../../domain/clock.js';

/** The one place floatd reads the wall clock. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  monotonic(): number {
    return performance.now();
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    // Node caps timers at 2^31-1 ms; longer waits are re-armed by the caller's loop.
    const timer = setTimeout(fn, Math.max(0, Math.min(delayMs, 2_147_483_647)));
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  }
}
