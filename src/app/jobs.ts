import type { Clock, TimerHandle } from '../domain/clock.js';
import type { Cluster } from '../domain/ports.js';
import type { Logger } from '../adapters/log/logger.js';

/** One piece of the server's periodic work. */
export interface Job {
  readonly name: string;
  readonly everyMs: number;
  /** The wait before its first run (everyMs when absent). */
  readonly firstAfterMs?: number;
  /**
   * Once per cluster, not on every node (the lease log's checkpoints, retention,
   * activation checks): it runs through `Cluster.runOnce`. One node alone always runs it.
   */
  readonly once?: boolean;
  /** It touches the storage: skipped while the storage is in a fault (the health probe alone touches it then). */
  readonly storage?: boolean;
  readonly run: () => void | Promise<void>;
  /** What the error line says when a run fails for a reason other than the storage. */
  readonly failure: string;
}

/** What the scheduler asks of the storage's health. */
export interface JobStorageGuard {
  fault(): string | null;
  /** Takes a failure as a storage fault (returns it) or not (null). */
  failed(err: unknown, operations: number): unknown;
}

/**
 * Runs the jobs table on the clock. Each job's next turn is armed when its turn
 * comes, so a fake clock moved by an hour runs an every-second job 3,600 times.
 * Runs of one job never overlap: turns that come while an asynchronous run is
 * in progress are folded into one more run right after it.
 */
export class Jobs {
  private readonly timers = new Map<string, TimerHandle>();
  private readonly running = new Map<string, Promise<void>>();
  /** Jobs whose turn came while they ran: they run once more when done. */
  private readonly again = new Set<string>();
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly cluster: Cluster,
    private readonly storage: JobStorageGuard,
    private readonly logger: Logger,
  ) {}

  start(jobs: readonly Job[]): void {
    for (const job of jobs) this.arm(job, job.firstAfterMs ?? job.everyMs);
  }

  /** Cancels every timer: no job starts again (runs in progress go on; `settled` waits for them). */
  halt(): void {
    this.stopped = true;
    for (const timer of this.timers.values()) timer.cancel();
    this.timers.clear();
  }

  /** Resolves once the runs in progress have ended. */
  async settled(): Promise<void> {
    await Promise.all([...this.running.values()]);
  }

  /** Halts, then waits for the runs in progress. */
  async stop(): Promise<void> {
    this.halt();
    await this.settled();
  }

  private arm(job: Job, delayMs: number): void {
    if (this.stopped) return;
    this.timers.set(job.name, this.clock.setTimer(delayMs, () => this.fire(job)));
  }

  private fire(job: Job): void {
    if (this.stopped) return;
    this.arm(job, job.everyMs);
    if (this.running.has(job.name)) {
      this.again.add(job.name);
      return;
    }
    this.run(job);
  }

  private run(job: Job): void {
    // In a storage fault the probe alone touches the storage; the job resumes when it is over.
    if (job.storage === true && this.storage.fault() !== null) return;
    let outcome: void | Promise<unknown>;
    try {
      outcome = job.once === true ? this.cluster.runOnce(job.name, job.run) : job.run();
    } catch (err) {
      this.failed(job, err);
      return;
    }
    // A run that returned no promise is over; TypeScript lets a `() => void` return anything, so look.
    if (!(outcome instanceof Promise)) return;
    const run = outcome.then(
      () => {},
      (err: unknown) => this.failed(job, err),
    ).finally(() => {
      this.running.delete(job.name);
      if (this.again.delete(job.name) && !this.stopped) this.run(job);
    });
    this.running.set(job.name, run);
  }

  private failed(job: Job, err: unknown): void {
    if (this.storage.failed(err, 0) === null) this.logger.error({ err, job: job.name }, job.failure);
  }
}
