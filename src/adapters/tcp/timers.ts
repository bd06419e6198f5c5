import type { Clock } from '../../domain/clock.js';

/** A pending timer of the `Timers` port. */
export interface TimerHandle {
  /** Starts the wait of a pending timer over from now, with the same delay. */
  refresh(): void;
}

/**
 * How the TCP adapter waits: the connections' handshake, idle, drain and
 * linger timeouts go through this port instead of the global setTimeout, so
 * tests can drive them with a fake clock. Timers never keep the process alive.
 */
export interface Timers {
  set(delayMs: number, fn: () => void): TimerHandle;
  /** Cancels a timer; `undefined` and timers that already fired are ignored. */
  clear(handle: TimerHandle | undefined): void;
}

/** The event loop's timers (unref'd). */
export const systemTimers: Timers = {
  set(delayMs, fn) {
    const timer = setTimeout(fn, delayMs);
    timer.unref();
    return timer;
  },
  clear(handle) {
    if (handle !== undefined) clearTimeout(handle as NodeJS.Timeout);
  },
};

class ClockTimer implements TimerHandle {
  private timer: { cancel(): void } | undefined;
  private done = false;

  constructor(
    private readonly clock: Pick<Clock, 'setTimer'>,
    private readonly delayMs: number,
    private readonly fn: () => void,
  ) {
    this.arm();
  }

  private arm(): void {
    this.timer = this.clock.setTimer(this.delayMs, () => {
      this.done = true;
      this.fn();
    });
  }

  refresh(): void {
    if (this.done) return;
    this.timer?.cancel();
    this.arm();
  }

  cancel(): void {
    this.done = true;
    this.timer?.cancel();
  }
}

/** Timers on a `Clock`'s own (e.g. a fake clock that tests move by hand). */
export function clockTimers(clock: Pick<Clock, 'setTimer'>): Timers {
  return {
    set: (delayMs, fn) => new ClockTimer(clock, delayMs, fn),
    clear: (handle) => (handle as ClockTimer | undefined)?.cancel(),
  };
}
