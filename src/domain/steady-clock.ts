import type { Clock, TimerHandle } from './clock.js';

/**
 * Lease time that cannot jump: wall-clock milliseconds as they were when the
 * server started (or last re-based), carried forward by the monotonic clock.
 * Expiry is decided on it, so setting the system clock, or NTP stepping it,
 * neither expires running leases nor keeps dead ones alive. `drift()` says how
 * far the wall clock has moved against it; `rebase()` takes the wall clock's
 * side again, which the server does together with moving every stored expiry
 * by the same amount (each lease keeps the time it had left).
 */
export class SteadyClock implements Clock {
  private base: number;

  constructor(private readonly source: Clock) {
    this.base = source.now() - source.monotonic();
  }

  now(): number {
    // Whole milliseconds, as every stored time is (the monotonic clock has fractions).
    return Math.floor(this.base + this.source.monotonic());
  }

  monotonic(): number {
    return this.source.monotonic();
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    return this.source.setTimer(delayMs, fn);
  }

  /** The wall clock minus lease time: positive when the wall clock has jumped ahead. */
  drift(): number {
    return this.source.now() - this.now();
  }

  /** The wall clock as it reads now (for logging it beside lease time). */
  wallNow(): number {
    return this.source.now();
  }

  /** Moves lease time by `shiftMs` (a drift measured just before). */
  rebase(shiftMs: number): void {
    this.base += shiftMs;
  }
}
