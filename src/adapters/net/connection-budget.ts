/**
 * One budget of connections (file descriptors) shared by every listener:
 * NDJSON over TCP and TLS, HTTP and HTTPS (the admin API and dashboard
 * included). When it is spent, idle web connections (keep-alive connections
 * between requests) are closed to make room before anything is refused, so
 * idle HTTP clients can never keep lease clients out.
 */
export class ConnectionBudget {
  private used = 0;
  private readonly reclaimers: Array<() => number> = [];

  constructor(readonly max: number) {}

  /** A way to free a slot when the budget is spent: closes an idle connection, and returns how many it closed. */
  reclaimWith(reclaim: () => number): void {
    this.reclaimers.push(reclaim);
  }

  /**
   * Takes a slot for a new connection: true if there was one, or an idle web
   * connection was closed to make one (its slot comes back when it has closed,
   * a moment later); false when the budget is spent and nothing is idle.
   */
  tryAcquire(): boolean {
    if (this.used >= this.max && !this.reclaimers.some((reclaim) => reclaim() > 0)) return false;
    this.used++;
    return true;
  }

  /** Gives back the slot of a connection that has closed. */
  release(): void {
    if (this.used > 0) this.used--;
  }

  /** Connections holding a slot now. */
  get inUse(): number {
    return this.used;
  }
}
