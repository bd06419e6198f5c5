import type { Clock } from '../../domain/clock.js';
import type { CommitGuard, CommitPolicy } from '../../domain/ports.js';

const NO_GUARD: CommitGuard = { refuse: () => null, failed: () => null, succeeded: () => {} };

/** How one unit of a batch ended. */
export type Settled = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly err: unknown };

/** What runs a batch: a store's one transaction with a savepoint per unit. */
export interface BatchRunner<U> {
  /**
   * Runs `works` in order in one transaction, each all-or-nothing on its own,
   * until `more()` says to stop (the first always runs), and commits. Resolves
   * to how each one that ran ended, and to the commit's failure (null when it
   * committed; then nothing of the batch was kept).
   */
  runBatch(works: ReadonlyArray<(u: U) => Promise<unknown>>, more: () => boolean): Promise<{ results: Settled[]; failure: unknown }>;
}

interface Pending<U> {
  readonly work: (u: U) => Promise<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
  /** Whose request it is (a client instance); '' for the server's own operations, which are not budgeted. */
  readonly source: string;
}

export interface GroupCommitBudget {
  /** Operations of one source in one batch; the rest wait for the next (in order). */
  readonly perSource: number;
  /** Time one batch may run before it commits and yields to the event loop (ms, on the injected monotonic clock). */
  readonly timeMs: number;
}

export const DEFAULT_BATCH_BUDGET: GroupCommitBudget = { perSource: 8, timeMs: 5 };

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
export class GroupCommit<U> {
  /** Waiting operations by source, in the order sources are served (those served last go to the back). */
  private queues = new Map<string, Pending<U>[]>();
  private scheduled = false;
  /** A batch is running (they never overlap: one writer). */
  private running = false;
  private inFlight = 0;
  private idle: Array<() => void> = [];

  private guard: CommitGuard = NO_GUARD;
  private committed: (operations: number, seconds: number) => void = () => {};

  constructor(
    private readonly runner: BatchRunner<U>,
    private readonly clock: Pick<Clock, 'monotonic'>,
    private readonly budget: GroupCommitBudget = DEFAULT_BATCH_BUDGET,
  ) {}

  /** Storage-fault handling and commit counting, from the composition root. */
  configure(policy: CommitPolicy): void {
    this.guard = policy.guard ?? NO_GUARD;
    this.committed = policy.committed ?? (() => {});
  }

  submit<T>(work: (u: U) => Promise<T>, source = ''): Promise<T> {
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
    if (this.scheduled || this.running || this.queues.size === 0) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  /** This batch's operations: in rounds over the sources, the shortest queues first, each source in order. */
  private take(): Pending<U>[] {
    // A stable sort: sources with as many waiting keep their round-robin order.
    const queues = [...this.queues.values()].sort((a, b) => a.length - b.length);
    const batch: Pending<U>[] = [];
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
  private remove(ran: readonly Pending<U>[]): void {
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

  private async flush(): Promise<void> {
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
    this.running = true;
    const started = this.clock.monotonic();
    // Out of time: the rest waits for the next batch (each source's order holds: what ran is a prefix of its queue).
    const more = (): boolean => this.clock.monotonic() - started < this.budget.timeMs;
    let outcome: { results: Settled[]; failure: unknown };
    try {
      outcome = await this.runner.runBatch(batch.map((p) => p.work), more);
    } catch (err) {
      outcome = { results: [], failure: err };
    }
    this.running = false;
    const { results, failure } = outcome;
    // A batch that could not even begin fails whole, as one whose commit failed.
    const ran = failure !== null && results.length === 0 ? batch : batch.slice(0, results.length);
    this.remove(ran);
    this.schedule();
    if (failure !== null) {
      const answer = this.guard.failed(failure, ran.length) ?? failure;
      for (const p of ran) p.reject(answer);
    } else {
      this.guard.succeeded();
      this.committed(ran.length, (this.clock.monotonic() - started) / 1000);
      ran.forEach((p, i) => {
        const r = results[i]!;
        if (r.ok) p.resolve(r.value);
        // A unit the storage refused while the batch around it committed (a statement that hit a full disk).
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
