import { hostname } from 'node:os';
import type { ChangeFeed, Cluster } from '../../domain/ports.js';

/** One node alone: every job runs here. */
export class SingleNode implements Cluster {
  constructor(readonly nodeId: string = hostname()) {}

  async runOnce(_job: string, fn: () => Promise<void> | void): Promise<boolean> {
    await fn();
    return true;
  }
}

/**
 * A change feed over a number that moves whenever another writer commits
 * (SQLite's data version): each poll that sees it moved tells the subscribers.
 */
export class CounterChangeFeed implements ChangeFeed {
  private readonly subscribers = new Set<() => void>();
  private last: number | null = null;

  constructor(private readonly counter: () => number) {}

  subscribe(fn: () => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  poll(): void {
    const now = this.counter();
    const moved = this.last !== null && now !== this.last;
    this.last = now;
    if (moved) for (const fn of [...this.subscribers]) fn();
  }
}
