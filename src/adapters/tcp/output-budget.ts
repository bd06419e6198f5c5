/**
 * Accounting of reply bytes written but not yet taken by the kernel: each
 * connection's share and the total over all connections, and which
 * connections are paused (not read) for them. No sockets: the connection tells
 * its share how many bytes its socket holds.
 *
 * A connection is blocked while its share holds more than `connectionBytes`
 * (once paused: until it drains to half that), and, while the total is over
 * `totalBytes`, while it holds any at all.
 */
export class OutputBudget {
  private unsent = 0;
  private withUnsent = 0;
  private pausedNow = 0;
  private overTotal = false;
  /** Wakers of the connections paused for their output: run when the total falls back under its cap. */
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly connectionBytes: number,
    readonly totalBytes: number,
  ) {}

  /** Unsent bytes over all connections. */
  get unsentBytes(): number {
    return this.unsent;
  }

  /** Connections with any unsent bytes. */
  get connectionsWithUnsent(): number {
    return this.withUnsent;
  }

  /** Connections paused now for their unsent bytes. */
  get pausedConnections(): number {
    return this.pausedNow;
  }

  /** A new connection's share; `wake` runs while it is paused and the total falls back under its cap. */
  share(wake: () => void): OutputShare {
    return new OutputShare(this, wake);
  }

  /** @internal Moves the total by `delta` bytes for a share that held `before` and now holds `after`. */
  move(before: number, after: number): void {
    this.unsent += after - before;
    if (before === 0) this.withUnsent++;
    else if (after === 0) this.withUnsent--;
    if (this.overTotal && this.unsent <= this.totalBytes) {
      this.overTotal = false;
      for (const wake of [...this.waiters]) wake();
    } else if (this.unsent > this.totalBytes) {
      this.overTotal = true;
    }
  }

  /** @internal */
  pausedChanged(wake: () => void, paused: boolean): void {
    if (paused) {
      this.pausedNow++;
      this.waiters.add(wake);
    } else {
      this.pausedNow--;
      this.waiters.delete(wake);
    }
  }
}

/** One connection's part of an `OutputBudget`. */
export class OutputShare {
  private held = 0;
  private pausedFlag = false;

  constructor(
    private readonly budget: OutputBudget,
    private readonly wake: () => void,
  ) {}

  /** Unsent bytes of this connection, as last accounted. */
  get unsent(): number {
    return this.held;
  }

  /** Whether the connection is paused for its output. */
  get paused(): boolean {
    return this.pausedFlag;
  }

  /** Brings the share up to date with what the socket holds unsent now (0 once it closed). */
  account(now: number): void {
    if (now === this.held) return;
    this.budget.move(this.held, now);
    this.held = now;
  }

  /** Whether the connection should not be read now. */
  blocked(): boolean {
    if (this.held > (this.pausedFlag ? this.budget.connectionBytes / 2 : this.budget.connectionBytes)) return true;
    // Over the total, every connection whose replies back up (the kernel took no more of them) waits.
    return this.budget.unsentBytes > this.budget.totalBytes && this.held > 0;
  }

  /** Marks the connection paused; false if it already was. */
  pause(): boolean {
    if (this.pausedFlag) return false;
    this.pausedFlag = true;
    this.budget.pausedChanged(this.wake, true);
    return true;
  }

  /** Marks the connection read again; false if it was not paused. */
  resume(): boolean {
    if (!this.pausedFlag) return false;
    this.pausedFlag = false;
    this.budget.pausedChanged(this.wake, false);
    return true;
  }
}
