import type { Clock, TimerHandle } from '../domain/clock.js';
import { FloatdError, isStorageFault } from '../domain/errors.js';
import type { Logger } from '../adapters/log/logger.js';

/** Between two real attempts at the storage while it is faulted; also what clients are told to wait. */
export const STORAGE_RETRY_MS = 1000;

interface Episode {
  /** Monotonic ms. */
  readonly since: number;
  reason: string;
  /** Operations answered UNAVAILABLE in this episode. */
  failed: number;
  /** Monotonic ms before which nothing but the probe touches the storage. */
  nextTry: number;
}

/**
 * Storage faults (a full disk, I/O errors, a lock held by another process) as
 * a state rather than a flood: the first failure starts an episode, logged
 * once (error: someone must free the disk or end the lock); while it lasts,
 * operations are answered UNAVAILABLE at once, without touching the storage,
 * except one real attempt a second; a probe tries a small write every second
 * so the episode ends on its own when the storage takes writes again, logged
 * once with how long it lasted and how many operations failed.
 */
export class StorageHealth {
  private episode: Episode | null = null;
  private timer: TimerHandle | null = null;
  private stopped = false;

  constructor(
    private readonly clock: Pick<Clock, 'monotonic' | 'setTimer'>,
    private readonly logger: Logger,
    /** A small write committed and taken back (or a networked database's check that it takes writes): throws, or rejects, while the storage refuses writes. */
    private readonly probe: () => void | Promise<void>,
    /** Told of operations answered UNAVAILABLE (for the metrics). */
    private readonly counted: (reason: string, operations: number) => void = () => {},
  ) {}

  /** Why the storage is unavailable now, or null when it is not. */
  fault(): string | null {
    return this.episode?.reason ?? null;
  }

  /**
   * Whether work may go to the storage now: always when healthy; in a fault,
   * once per retry interval (that attempt is the real test of the storage).
   */
  mayTry(): boolean {
    const e = this.episode;
    if (e === null) return true;
    const now = this.clock.monotonic();
    if (now < e.nextTry) return false;
    e.nextTry = now + STORAGE_RETRY_MS;
    return true;
  }

  /**
   * For `operations` about to be submitted: null to go ahead, or the
   * UNAVAILABLE error to answer them with at once (they are counted).
   */
  refuse(operations: number): FloatdError | null {
    if (this.mayTry()) return null;
    this.episode!.failed += operations;
    this.counted(this.episode!.reason, operations);
    return this.unavailable();
  }

  /**
   * Storage work failed. A storage fault starts (or continues) an episode and
   * comes back as the UNAVAILABLE error to answer with, `retryAfterMs` set;
   * any other error is no business of this and comes back as null.
   */
  failed(err: unknown, operations: number): FloatdError | null {
    if (!isStorageFault(err)) return null;
    const now = this.clock.monotonic();
    const reason = typeof err.details.reason === 'string' ? err.details.reason : 'unavailable';
    if (this.episode === null) {
      this.episode = { since: now, reason, failed: operations, nextTry: now + STORAGE_RETRY_MS };
      this.logger.error(
        { code: err.code, reason, sqliteCode: err.details['sqliteCode'] },
        `${err.message}; lease requests are answered UNAVAILABLE (retryable) until the storage takes writes again, tried every ${STORAGE_RETRY_MS / 1000} s`,
      );
      this.scheduleProbe();
    } else {
      this.episode.failed += operations;
      this.episode.reason = reason;
      this.episode.nextTry = now + STORAGE_RETRY_MS;
    }
    this.counted(reason, operations);
    // Clients learn the kind of fault, not the server's paths: those are in the log.
    return this.unavailable();
  }

  /**
   * Storage work committed. In a fault that is not proof it is over (a batch
   * that wrote nothing commits on a full disk too): the probe's write decides.
   */
  succeeded(): void {
    if (this.episode === null) return;
    this.tryProbe(() => this.ended(), () => {});
  }

  /** Runs the probe: `passed` once it took a write, `refused` (after the failure is counted) when it did not. */
  private tryProbe(passed: () => void, refused: () => void): void {
    const failed = (err: unknown) => {
      if (this.failed(err, 0) === null) this.logger.error({ err }, 'storage probe failed');
      refused();
    };
    let pending: void | Promise<void>;
    try {
      pending = this.probe();
    } catch (err) {
      failed(err);
      return;
    }
    if (pending instanceof Promise) pending.then(passed, failed);
    else passed();
  }

  private ended(): void {
    const e = this.episode;
    if (e === null) return;
    this.episode = null;
    this.timer?.cancel();
    this.timer = null;
    const seconds = Math.round((this.clock.monotonic() - e.since) / 100) / 10;
    this.logger.warn(
      { reason: e.reason, failed: e.failed, seconds },
      `storage available again after ${seconds} s (${e.reason}): ${e.failed} lease operation(s) were answered UNAVAILABLE meanwhile`,
    );
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }

  private unavailable(): FloatdError {
    const e = this.episode!;
    const retryAfterMs = Math.max(250, e.nextTry - this.clock.monotonic());
    return new FloatdError('UNAVAILABLE', `the server's storage is unavailable (${e.reason}); nothing was changed: try again`, { reason: e.reason, retryAfterMs });
  }

  private scheduleProbe(): void {
    if (this.stopped || this.timer !== null) return;
    this.timer = this.clock.setTimer(STORAGE_RETRY_MS, () => {
      this.timer = null;
      if (this.episode === null || this.stopped) return;
      if (this.mayTry()) {
        this.tryProbe(
          () => this.ended(),
          () => this.scheduleProbe(),
        );
        return;
      }
      this.scheduleProbe();
    });
  }
}
