import type { Clock } from '../domain/clock.js';
import type { LeaseStore } from '../domain/ports.js';

interface Pending {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Group commit for every door: the lease operations submitted in one turn of
 * the event loop (from TCP, TLS and HTTP alike) run in one store batch, each
 * as a savepoint of its own, and their results are released only after the
 * batch commits. If the commit fails, every one of them fails and nothing of
 * them is kept, told or counted.
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
  ) {}

  submit<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.inFlight++;
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Resolves when every submitted operation has been answered. */
  drained(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.idle.push(resolve));
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    const results: Array<{ ok: true; value: unknown } | { ok: false; err: unknown }> = [];
    const started = this.clock.monotonic();
    try {
      this.store.batch(() => {
        for (const p of batch) {
          try {
            results.push({ ok: true, value: p.work() });
          } catch (err) {
            results.push({ ok: false, err });
          }
        }
      });
    } catch (err) {
      for (const p of batch) p.reject(err);
      this.settled(batch.length);
      return;
    }
    this.committed(batch.length, (this.clock.monotonic() - started) / 1000);
    batch.forEach((p, i) => {
      const r = results[i]!;
      if (r.ok) p.resolve(r.value);
      else p.reject(r.err);
    });
    this.settled(batch.length);
  }

  private settled(n: number): void {
    this.inFlight -= n;
    if (this.inFlight === 0) for (const fn of this.idle.splice(0)) fn();
  }
}
