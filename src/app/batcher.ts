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
  /** Whose request it is (a client instance); '' for the server's own operations, which are not budgeted. */
  readonly source: string;
}

export interface BatcherBudget {
  /** Operations of one source in one batch; the rest wait for the next (in order). */
  readonly perSource: number;
  /** Time one batch may run before it commits and yields to the event loop (ms, on the injected monotonic clock). */
  readonly timeMs: number;
}

export const DEFAULT_BATCH_BUDGET: BatcherBudget = { perSource: 8, timeMs: 5 };

/**
 * Group commit for every door: the lease operations submitted in one turn of
 * the event loop (from TCP, TLS and HTTP alike) run in one store batch, each
 * as a savepoint of its own, and their results are released only after the
 * batch commits. If the commit fails, every one of them fails and nothing of
 * them is kept, told or counted.
 *
 * A batch is fair and bounded, so one busy client cannot hold up the rest and
 * the event loop is never held for long: it takes the sources' operations in
 * rounds (the first operation of every source, then the second…; sources
 * with the fewest waiting first), at most `perSource` of one source, and stops
 * and commits once it has run `timeMs`; what is left runs in the next batch,
 * after the event loop has had a turn. Each source's operations run in the
 * order they were submitted.
 */
export class Batcher {
  /** Waiting operations by source, in the order sources are served (those served last go to the back). */
  private queues = new Map<string, Pending[]>();
  private scheduled = false;
  private inFlight = 0;
  private idle: Array<() => void> = [];

  constructor(
    private readonly store: LeaseStore,
    private readonly clock: Pick<Clock, 'monotonic'>,
    /** Told of every commit: how many operations it held and how long it took. */
    private readonly committed: (operations: number, seconds: number) => void = () => {},
    private readonly guard: CommitGuard = NO_GUARD,
    private readonly budget: BatcherBudget = DEFAULT_BATCH_BUDGET,
  ) {}

  submit<T>(work: () => T, source = ''): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const queue = this.queues.get(source);
      const p = { work, resolve: resolve as (value: unknown) => void, reject, source };
      if (queue === undefined) this.queues.set(source, [p]);
      else queue.push(p);
      this.inFlight++;
      this.schedule();
    });
  }

  /** Resolves when every submitted operation has been answered. */
  drained(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.idle.push(resolve));
  }

  private schedule(): void {
    if (this.scheduled || this.queues.size === 0) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /** This batch's operations: in rounds over the sources, the shortest queues first, each source in order. */
  private take(): Pending[] {
    // A stable sort: sources with as many waiting keep their round-robin order.
    const queues = [...this.queues.values()].sort((a, b) => a.length - b.length);
    const batch: Pending[] = [];
    for (let round = 0; round < this.budget.perSource; round++) {
      let any = false;
      for (const q of queues) {
        if (q.length <= round) continue;
        // Operations of no client (the server's own) are not budgeted: all of them, in the first round.
        if (q[0]!.source === '') {
          if (round === 0) batch.push(...q);
          continue;
        }
        batch.push(q[round]!);
        any = true;
      }
      if (!any && round > 0) break;
    }
    return batch;
  }

  /** Takes the operations that ran off their queues, and sends the sources served to the back of the line. */
  private remove(ran: readonly Pending[]): void {
    const served = new Set<string>();
    for (const p of ran) {
      this.queues.get(p.source)!.shift();
      served.add(p.source);
    }
    for (const source of served) {
      const queue = this.queues.get(source)!;
      this.queues.delete(source);
      if (queue.length > 0) this.queues.set(source, queue);
    }
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.take();
    // While the storage is faulted, a batch is answered at once instead of waiting on the disk or the lock.
    const refused = this.guard.refuse(batch.length);
    if (refused !== null) {
      this.remove(batch);
      this.schedule();
      for (const p of batch) p.reject(refused);
      this.settled(batch.length);
      return;
    }
    const results: Array<{ ok: true; value: unknown } | { ok: false; err: unknown }> = [];
    const started = this.clock.monotonic();
    let failure: { err: unknown } | null = null;
    try {
      this.store.batch(() => {
        for (const p of batch) {
          // Out of time: the rest waits for the next batch (each source's order holds: what ran is a prefix of its queue).
          if (results.length > 0 && this.clock.monotonic() - started >= this.budget.timeMs) break;
          try {
            results.push({ ok: true, value: p.work() });
          } catch (err) {
            results.push({ ok: false, err });
          }
        }
      });
    } catch (err) {
      failure = { err };
    }
    // A batch that could not even begin fails whole, as one whose commit failed.
    const ran = failure !== null && results.length === 0 ? batch : batch.slice(0, results.length);
    this.remove(ran);
    this.schedule();
    if (failure !== null) {
      const answer = this.guard.failed(failure.err, ran.length) ?? failure.err;
      for (const p of ran) p.reject(answer);
    } else {
      this.guard.succeeded();
      this.committed(ran.length, (this.clock.monotonic() - started) / 1000);
      ran.forEach((p, i) => {
        const r = results[i]!;
        if (r.ok) p.resolve(r.value);
        // An operation the storage refused while the batch around it committed (a statement that hit a full disk).
        else p.reject(this.guard.failed(r.err, 1) ?? r.err);
      });
    }
    this.settled(ran.length);
  }

  private settled(n: number): void {
    this.inFlight -= n;
    if (this.inFlight === 0) for (const fn of this.idle.splice(0)) fn();
  }
}
