import { write } from 'node:fs';

/** What a log destination went through while its writes failed. */
export interface LogOutage {
  /** The error of the first failed write (ENOSPC, EIO, EFBIG…). */
  readonly code: string;
  /** Lines dropped meanwhile. */
  readonly dropped: number;
  readonly ms: number;
}

export interface LogDestinationOptions {
  /** Unwritten log held at most; past it, lines are dropped (and counted) rather than held. */
  readonly maxBufferBytes?: number;
  /** While writes fail, lines arriving within this long of the last failed attempt are dropped without one. */
  readonly retryMs?: number;
  readonly monotonic?: () => number;
  /** Writes started failing (once per outage). */
  readonly onFailing?: (code: string, message: string) => void;
  /** Writes work again after an outage (once per outage). */
  readonly onRecovered?: (outage: LogOutage) => void;
}

const MAX_BUFFER_BYTES = 4 * 1024 * 1024;
const RETRY_MS = 1000;
/** A pipe or terminal that is full for now: try again shortly, keeping the lines. */
const EAGAIN_WAIT_MS = 10;

/**
 * Where pino writes the server log: asynchronous writes to a file descriptor
 * that never block the event loop and never hang the process. A write that
 * fails (a full volume, an I/O error) drops its lines and counts them; while
 * writes fail, new lines wait for one attempt a second (and are dropped and
 * counted if it fails too); the first write that works again ends the outage
 * (one warning, with the count). Unwritten lines are bounded by
 * `maxBufferBytes`: past it they are dropped and counted, so a volume that
 * stays full or a reader that never reads (a stopped pipe) costs memory only
 * up to that.
 */
export class LogDestination {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private queuedLines = 0;
  private writing = false;
  private outage: { since: number; code: string; dropped: number; lastTry: number } | null = null;
  /** Lines dropped because the buffer was full while writes still worked (a slow reader). */
  private overflowed = 0;
  private drainWaiters: Array<() => void> = [];
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly maxBytes: number;
  private readonly retryMs: number;
  private readonly monotonic: () => number;

  constructor(
    private readonly fd: number,
    private readonly options: LogDestinationOptions = {},
  ) {
    this.maxBytes = options.maxBufferBytes ?? MAX_BUFFER_BYTES;
    this.retryMs = options.retryMs ?? RETRY_MS;
    this.monotonic = options.monotonic ?? (() => performance.now());
  }

  /** Lines dropped so far, in outages and for a full buffer. */
  get dropped(): number {
    return this.overflowed + (this.outage?.dropped ?? 0);
  }

  write(line: string): boolean {
    const bytes = Buffer.from(line);
    if (this.queuedBytes + bytes.length > this.maxBytes) {
      if (this.outage !== null) this.outage.dropped++;
      else this.overflowed++;
      return true;
    }
    this.queue.push(bytes);
    this.queuedBytes += bytes.length;
    this.queuedLines++;
    if (this.writing) return true;
    const o = this.outage;
    const wait = o === null ? 0 : o.lastTry + this.retryMs - this.monotonic();
    if (wait > 0) this.retryIn(wait);
    else this.pump();
    return true;
  }

  /** Calls back once everything queued is written (or dropped), or at once in an outage (it waits for the next attempt). */
  flush(cb?: (err?: Error) => void): void {
    if (!this.writing && (this.queue.length === 0 || this.outage !== null)) cb?.();
    else if (cb) this.drainWaiters.push(() => cb());
  }

  private retryIn(ms: number): void {
    if (this.retryTimer !== null) return;
    // Unref'd: a log that cannot be written never keeps the process from exiting.
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.writing && this.queue.length > 0) this.pump();
    }, ms);
    this.retryTimer.unref();
  }

  /** Nothing to do at exit: writes in flight keep the process alive until they end, and a failing one ends at once. */
  flushSync(): void {}

  private pump(): void {
    const chunk = this.queue.length === 1 ? this.queue[0]! : Buffer.concat(this.queue);
    const lines = this.queuedLines;
    this.queue = [];
    this.queuedBytes = 0;
    this.queuedLines = 0;
    this.writing = true;
    this.writeOut(chunk, lines);
  }

  private writeOut(chunk: Buffer, lines: number): void {
    if (this.outage !== null) this.outage.lastTry = this.monotonic();
    write(this.fd, chunk, 0, chunk.length, null, (err, written) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          setTimeout(() => this.writeOut(chunk, lines), EAGAIN_WAIT_MS).unref();
          return;
        }
        this.failed(code, err.message, lines);
        this.next();
        return;
      }
      if (written < chunk.length) {
        this.writeOut(chunk.subarray(written), lines);
        return;
      }
      this.recovered();
      this.next();
    });
  }

  private failed(code: string, message: string, lines: number): void {
    if (this.outage === null) {
      this.outage = { since: this.monotonic(), code, dropped: lines + this.overflowed, lastTry: this.monotonic() };
      this.overflowed = 0;
      this.options.onFailing?.(code, message);
    } else {
      this.outage.dropped += lines;
    }
  }

  private recovered(): void {
    const o = this.outage;
    if (o === null && this.overflowed === 0) return;
    this.outage = null;
    const dropped = (o?.dropped ?? 0) + this.overflowed;
    this.overflowed = 0;
    this.options.onRecovered?.({ code: o?.code ?? 'BUFFER_FULL', dropped, ms: o === null ? 0 : this.monotonic() - o.since });
  }

  private next(): void {
    this.writing = false;
    if (this.queue.length > 0) {
      // In an outage, what came meanwhile waits (bounded) for the next attempt, a retry interval later.
      if (this.outage === null) {
        this.pump();
        return;
      }
      this.retryIn(this.retryMs);
    }
    for (const fn of this.drainWaiters.splice(0)) fn();
  }
}
