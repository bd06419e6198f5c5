import type { Clock } from '../domain/clock.js';
import type { LeaseStore } from '../domain/ports.js';

interface Pending {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
  /** Whose request it is (a client instance), for the per-source budget. */
  readonly source: string | undefined;
}

export interface BatcherBudget {
  /** Operations of one source in one batch; the rest wait for the next (in order). */
  readonly perSource: number;
  /** Time one batch may run before it commits and yields to the event loop (ms, on the injected monotonic clock). */
  readonly timeMs: number;
}

export const DEFAULT_BATCH_BUDGET: BatcherBudget = { perSource: 32, timeMs: 20 };

/**
 * Group commit for every door: the lease operations submitted in one turn of
 * the event loop (from TCP, TLS and HTTP alike) run in one store batch, each
 * as a savepoint of its own, and their results are released only after the
 * batch commits. If the commit fails, every one of them fails and nothing of
 * them is kept, told or counted.
 *
 * A batch is bounded, so one busy client cannot hold up the rest and the
 * event loop is never held for long: it takes at most `perSource` operations
 * of one source, and stops and commits once it has run `timeMs`; what is left
 * runs in the next batch, after the event loop has had a turn.
 */
export class Batcher {
  private queue: Pending[] = [];
  private scheduled = false;
  private inFlight = 0;
  private idle: Array<() => void> = [];

  constructor(
    private readonly store: LeaseStore,
    private readonly clock: Pick<Clock, 'monotonic'>,
    /** Told of every commit: how many operations it held and how long it took. */
    private readonly committed: (operations: number, seconds: number) => void = () => {},
    private readonly budget: BatcherBudget = DEFAULT_BATCH_BUDGET,
  ) {}

  submit<T>(work: () => T, source?: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject, source });
      this.inFlight++;
      this.schedule();
    });
  }

  /** Resolves when every submitted operation has been answered. */
  drained(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.idle.push(resolve));
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** Splits the queue into this batch (per-source budget) and what waits, keeping each source's order. */
  private take(): Pending[] {
    const batch: Pending[] = [];
    const later: Pending[] = [];
    const taken = new Map<string, number>();
    for (const p of this.queue) {
      if (p.source !== undefined) {
        const n = taken.get(p.source) ?? 0;
        if (n >= this.budget.perSource) {
          later.push(p);
          continue;
        }
        taken.set(p.source, n + 1);
      }
      batch.push(p);
    }
    this.queue = later;
    return batch;
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.take();
    const results: Array<{ ok: true; value: unknown } | { ok: false; err: unknown }> = [];
    const started = this.clock.monotonic();
    try {
      this.store.batch(() => {
        for (const p of batch) {
          if (results.length > 0 && this.clock.monotonic() - started >= this.budget.timeMs) break;
          try {
            results.push({ ok: true, value: p.work() });
          } catch (err) {
            results.push({ ok: false, err });
          }
        }
      });
    } catch (err) {
      const ran = batch.slice(0, results.length);
      this.requeue(batch.slice(results.length));
      for (const p of ran) p.reject(err);
      this.settled(ran.length);
      return;
    }
    const ran = batch.slice(0, results.length);
    // Out of time: the rest goes first in the next batch.
    this.requeue(batch.slice(results.length));
    this.committed(ran.length, (this.clock.monotonic() - started) / 1000);
    ran.forEach((p, i) => {
      const r = results[i]!;
      if (r.ok) p.resolve(r.value);
      else p.reject(r.err);
    });
    this.settled(ran.length);
  }

  private requeue(rest: Pending[]): void {
    if (rest.length > 0) this.queue = [...rest, ...this.queue];
    this.schedule();
  }

  private settled(n: number): void {
    this.inFlight -= n;
    if (this.inFlight === 0) for (const fn of this.idle.splice(0)) fn();
  }
}
