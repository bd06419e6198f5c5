import type { Clock, TimerHandle } from '../domain/clock.js';

/**
 * Wakes exactly when the next lease expires (not on a coarse interval), and
 * at least every `maxWaitMs`. Its clock is lease time (a SteadyClock), so a
 * wall-clock jump moves neither its plans nor what it finds expired.
 */
export class Sweeper {
  private timer: TimerHandle | null = null;
  private wakeAt = Infinity;
  /** The lease expiry the timer is set for (not a maxWait wake-up), to measure how late a sweep runs. */
  private dueAt: number | null = null;
  private running = false;

  constructor(
    private readonly clock: Clock,
    /** Sweeps; true when expired leases are left for another turn (they are swept again at once, after what waits). */
    private readonly sweep: () => Promise<boolean | void>,
    /** The earliest lease expiry (after `after`, when given). */
    private readonly nextExpiry: (after?: number) => Promise<number | undefined>,
    private readonly onError: (err: unknown) => void,
    private readonly maxWaitMs = 60_000,
    /** How late (seconds) a sweep ran after the expiry it was for. */
    private readonly lag: (seconds: number) => void = () => {},
  ) {}

  start(): void {
    this.running = true;
    this.fire();
  }

  stop(): void {
    this.running = false;
    this.timer?.cancel();
    this.timer = null;
  }

  /** A lease now expires at `at`: wake earlier if that is sooner than planned. */
  expiryAt(at: number): void {
    if (this.running && at < this.wakeAt) this.arm(at);
  }

  /** Lease times moved together (the clock was re-based): plans the next wake-up afresh. */
  reschedule(): void {
    if (!this.running) return;
    this.plan(this.nextExpiry());
  }

  /**
   * Wakes at most `maxWaitMs` from now at once, and at the expiry the store
   * answers once it does, if that is sooner than what is planned by then (a
   * lease granted meanwhile may have brought the wake-up forward already).
   */
  private plan(next: Promise<number | undefined>): void {
    this.arm(Infinity);
    next.then(
      (at) => {
        if (this.running && (at ?? Infinity) < this.wakeAt) this.arm(at ?? Infinity);
      },
      (err: unknown) => {
        this.onError(err);
      },
    );
  }

  private arm(at: number): void {
    this.timer?.cancel();
    const now = this.clock.now();
    const target = Math.min(at, now + this.maxWaitMs);
    this.wakeAt = target;
    this.dueAt = target === at ? at : null;
    this.timer = this.clock.setTimer(Math.max(0, target - now), () => this.fire());
  }

  private fire(): void {
    if (!this.running) return;
    this.timer = null;
    if (this.dueAt !== null) this.lag(Math.max(0, this.clock.now() - this.dueAt) / 1000);
    // The sweep now under way ends every lease expired by now: the next wake-up is for the first one after.
    const now = this.clock.now();
    this.plan(this.nextExpiry(now));
    this.sweep().then(
      (more) => this.swept(more === true),
      (err: unknown) => {
        this.onError(err);
      },
    );
  }

  private swept(more: boolean): void {
    if (!this.running || !more) return;
    // The rest on the next turn: not a wake-up for an expiry, so no lag is measured for it.
    this.timer?.cancel();
    this.wakeAt = this.clock.now();
    this.dueAt = null;
    this.timer = this.clock.setTimer(0, () => this.fire());
  }
}
