import type { Clock } from '../domain/clock.js';
import type { LeaseStore } from '../domain/ports.js';

/** How the batcher learns of storage faults, and answers while one lasts (StorageHealth). */
export interface CommitGuard {
  /** Null to go ahead with a batch of `operations`, or the error to answer them with at once. */
  refuse(operations: number): Error | null;
  /** A batch failed: the error to answer its operations with instead, or null to keep `err`. */
  failed(err: unknown, operations: number): Error | null;
  /** A batch committed. */
  succeeded(): void;
}

const NO_GUARD: CommitGuard = { refuse: () => null, failed: () => null, succeeded: () => {} };

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
    private readonly guard: CommitGuard = NO_GUARD,
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
    // While the storage is faulted, a batch is answered at once instead of waiting on the disk or the lock.
    const refused = this.guard.refuse(batch.length);
    if (refused !== null) {
      for (const p of batch) p.reject(refused);
      this.settled(batch.length);
      return;
    }
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
      const answer = this.guard.failed(err, batch.length) ?? err;
      for (const p of batch) p.reject(answer);
      this.settled(batch.length);
      return;
    }
    this.guard.succeeded();
    this.committed(batch.length, (this.clock.monotonic() - started) / 1000);
    batch.forEach((p, i) => {
      const r = results[i]!;
      if (r.ok) p.resolve(r.value);
      // An operation the storage refused while the batch around it committed (a statement that hit a full disk).
      else p.reject(this.guard.failed(r.err, 1) ?? r.err);
    });
    this.settled(batch.length);
  }

  private settled(n: number): void {
    this.inFlight -= n;
    if (this.inFlight === 0) for (const fn of this.idle.splice(0)) fn();
  }
}
