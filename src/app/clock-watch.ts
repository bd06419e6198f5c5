import type { SteadyClock } from '../domain/steady-clock.js';
import type { LeaseStore } from '../domain/ports.js';
import type { LeaseService } from './lease-service.js';

/** How far the wall clock may move against the monotonic one before it counts as a jump. */
export const CLOCK_JUMP_MS = 5_000;

export interface ClockJump {
  /** Wall clock minus lease time when noticed: positive when the clock jumped forward. */
  readonly shiftMs: number;
  /** Leases whose times moved with it (or, at start, were cut to their full length). */
  readonly leases: number;
  /** What happened, for the server log and the lease log. */
  readonly message: string;
}

/** "1 h 0 min 12 s", "7.5 s": the size of a jump for people. */
export function span(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < 60_000) return `${(abs / 1000).toFixed(1)} s`;
  const h = Math.floor(abs / 3_600_000);
  const min = Math.floor((abs % 3_600_000) / 60_000);
  const s = Math.round((abs % 60_000) / 1000);
  return `${h > 0 ? `${h} h ` : ''}${min} min ${s} s`;
}

/**
 * Keeps lease time and the wall clock together. While the server runs, expiry
 * is decided on lease time, which only the monotonic clock moves; when the
 * wall clock is found more than `thresholdMs` away from it (someone set the
 * clock, NTP stepped it, the machine was suspended), every stored expiry and
 * lease time move by the difference together, so no lease gains or loses time
 * and stored times stay wall-clock times.
 */
export class ClockWatch {
  constructor(
    private readonly clock: SteadyClock,
    private readonly store: LeaseStore,
    private readonly leases: LeaseService,
    private readonly thresholdMs = CLOCK_JUMP_MS,
  ) {}

  /** A jump is being recorded: the next check waits for it rather than counting the same jump twice. */
  private checking = false;

  /** The periodic check: null while the clocks agree; otherwise re-bases and tells what it did. */
  async check(): Promise<ClockJump | null> {
    if (this.checking) return null;
    const shiftMs = this.clock.drift();
    if (Math.abs(shiftMs) <= this.thresholdMs) return null;
    const way = shiftMs > 0 ? 'forward' : 'back';
    const base = `the wall clock jumped ${way} by ${span(shiftMs)} against the monotonic clock`;
    this.checking = true;
    try {
      // Lease time moves in the same unit of work; a unit that rolls back takes it back, leaving lease time where the stored expiries are.
      const { moved, message } = await this.leases.clockJumped(
        shiftMs,
        (n) => `${base}: the expiry of ${n} lease(s) moved with it, so each keeps the time it had left`,
        (ms) => this.clock.rebase(ms),
      );
      return { shiftMs, leases: moved, message };
    } finally {
      this.checking = false;
    }
  }

  /**
   * At start, stored wall-clock times rule (the monotonic clock of the last run
   * is gone). A wall clock behind the latest time the database recorded was
   * turned back while the server was stopped: told, and no lease is left with
   * more than its full length to run.
   */
  async atStart(): Promise<ClockJump | null> {
    const latest = await this.store.latestRecordedTime();
    const behind = latest === undefined ? 0 : latest - this.clock.now();
    const cut = await this.leases.capRemaining();
    if (behind <= this.thresholdMs && cut === 0) return null;
    const message =
      `the wall clock is ${span(behind)} behind the latest time recorded in the database (${new Date(latest!).toISOString()}): ` +
      `it was turned back while the server was stopped, or ran ahead before; stored lease expiries rule, ` +
      `and ${cut} lease(s) with more than their full length left were cut to it`;
    await this.store.unit((u) => u.appendEvent({ ts: this.clock.now(), event: 'clock-jump', message }));
    return { shiftMs: -behind, leases: cut, message };
  }
}
