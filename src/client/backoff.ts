/** How long a lease client waits between tries at reaching a server again. */
export interface BackoffOptions {
  /** The bound of the first wait, in ms. Default 100. */
  readonly initialMs?: number;
  /** The bound never grows past this, in ms. Default 5000. */
  readonly maxMs?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = Object.freeze({ initialMs: 100, maxMs: 5000 });

/**
 * Exponential back-off with full jitter: the n-th wait is drawn uniformly from
 * [0, min(maxMs, initialMs · 2ⁿ)), so the clients of a node that went down do
 * not all come at the next one in the same instant, and none waits longer than
 * `maxMs`. `reset()` after a success starts again from `initialMs`.
 */
export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private attempt = 0;

  constructor(
    options: BackoffOptions = {},
    private readonly random: () => number = Math.random,
  ) {
    this.initialMs = options.initialMs ?? DEFAULT_BACKOFF.initialMs;
    this.maxMs = options.maxMs ?? Math.max(DEFAULT_BACKOFF.maxMs, this.initialMs);
    if (!Number.isFinite(this.initialMs) || this.initialMs <= 0) throw new RangeError('backoff.initialMs must be a number of ms above 0');
    if (!Number.isFinite(this.maxMs) || this.maxMs < this.initialMs) throw new RangeError('backoff.maxMs must be a number of ms, at least backoff.initialMs');
  }

  /** The bound the next wait is drawn under. */
  get ceilingMs(): number {
    // 2^attempt stops growing once past the cap, so it never overflows.
    return Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 52));
  }

  /** The next wait, in whole ms: at least 0, below the ceiling (and never above maxMs). */
  next(): number {
    const ceiling = this.ceilingMs;
    this.attempt++;
    const r = this.random();
    // A random source outside [0, 1) is clamped rather than trusted.
    const unit = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0;
    return Math.min(Math.floor(unit * ceiling), Math.max(0, Math.ceil(ceiling) - 1));
  }

  reset(): void {
    this.attempt = 0;
  }
}
