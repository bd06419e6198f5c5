import type { Clock, TimerHandle } from '../../src/domain/clock.js';

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock pair (wall and monotonic) that moves only when told to, for tests:
 * server and client can share one, so hours of leasing pass in milliseconds
 * without sleeping. Timers run on the monotonic clock, as real ones do, so
 * `jumpWall` (someone setting the system clock) moves the wall clock alone.
 */
export class FakeClock implements Clock {
  private t: number;
  private mono = 0;
  private seq = 0;
  private pending: Pending[] = [];

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  monotonic(): number {
    return this.mono;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const p: Pending = { at: this.mono + Math.max(0, delayMs), seq: this.seq++, fn, cancelled: false };
    this.pending.push(p);
    return { cancel: () => void (p.cancelled = true) };
  }

  /** Moves time forward, firing due timers in order (timers they set fire too when due). */
  advance(ms: number): void {
    const target = this.mono + ms;
    for (;;) {
      this.pending = this.pending.filter((p) => !p.cancelled);
      this.pending.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.pending[0];
      if (next === undefined || next.at > target) break;
      this.pending.shift();
      this.t += next.at - this.mono;
      this.mono = next.at;
      next.fn();
    }
    this.t += target - this.mono;
    this.mono = target;
  }

  /** Sets the wall clock `ms` ahead (or back, when negative); the monotonic clock and timers do not notice. */
  jumpWall(ms: number): void {
    this.t += ms;
  }

  pendingTimers(): number {
    return this.pending.filter((p) => !p.cancelled).length;
  }
}

const tick = () => new Promise((r) => setTimeout(r, 5));

/**
 * Moves a fake clock in steps, letting real I/O (sockets, TLS handshakes) run
 * between them, until `done()` or `maxMs` of fake time is used up; then waits
 * up to `settleTicks` short real ticks for `done()`.
 */
export async function advanceUntil(clock: FakeClock, done: () => boolean, maxMs: number, stepMs = 250, settleTicks = 10): Promise<void> {
  for (let spent = 0; !done() && spent < maxMs; spent += stepMs) {
    clock.advance(stepMs);
    for (let i = 0; i < 4; i++) await tick();
  }
  for (let i = 0; i < settleTicks && !done(); i++) await tick();
}
