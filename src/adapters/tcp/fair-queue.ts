/** A connection as the fair queue sees it. */
export interface Waiting {
  /** Handles up to `max` of its requests; true if it has more it could handle now. */
  serve(max: number): boolean;
}

export interface FairQueueOptions {
  /** Requests of one connection handled at a time before the next connection gets its turn. */
  readonly requestsPerTurn: number;
  /** How long one round of serving may run before the event loop gets a turn (ms). */
  readonly budgetMs: number;
  /** Runs a round later, after I/O (setImmediate). */
  readonly schedule?: (fn: () => void) => void;
  /** A monotonic clock (ms) for the budget. */
  readonly now?: () => number;
}

/**
 * Round-robin over the connections with requests waiting: each is served a
 * few requests per turn, for at most `budgetMs` per round, then the event
 * loop gets a turn before the next round. No sockets.
 */
export class FairQueue {
  private readonly waiting = new Set<Waiting>();
  private serving = false;
  private readonly schedule: (fn: () => void) => void;
  private readonly now: () => number;

  constructor(private readonly options: FairQueueOptions) {
    this.schedule = options.schedule ?? ((fn) => void setImmediate(fn));
    this.now = options.now ?? (() => performance.now());
  }

  /** Connections waiting for a turn. */
  get size(): number {
    return this.waiting.size;
  }

  /** Queues a connection for its next turn (once: it keeps its place if already queued). */
  wait(peer: Waiting): void {
    this.waiting.add(peer);
    if (this.serving) return;
    this.serving = true;
    this.schedule(() => this.round());
  }

  /** Takes a connection out of the queue (it closed). */
  remove(peer: Waiting): void {
    this.waiting.delete(peer);
  }

  /** A few requests of each waiting connection, until they are done or the time is up. */
  private round(): void {
    this.serving = false;
    const deadline = this.now() + this.options.budgetMs;
    // A connection served goes to the back; iteration reaches it again after the others.
    for (const peer of this.waiting) {
      this.waiting.delete(peer);
      if (peer.serve(this.options.requestsPerTurn)) this.waiting.add(peer);
      if (this.now() >= deadline) break;
    }
    if (this.waiting.size > 0 && !this.serving) {
      this.serving = true;
      this.schedule(() => this.round());
    }
  }
}
