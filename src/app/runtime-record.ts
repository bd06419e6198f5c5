import type { LeaseStore } from '../domain/ports.js';
import type { ListenerStatus } from './status.js';

export const RUNTIME_META = 'runtime';

/** The running server as it records itself in its data directory. */
export interface ServerRuntime {
  readonly pid: number;
  readonly startedAt: number;
  readonly listeners: readonly ListenerStatus[];
  /** The CLT rules in force, as `status` shows them. */
  readonly rules: string | null;
}

/** What commands on this data directory learn of the running server: written at start and on every change, cleared at a clean stop. */
export class RuntimeRecord {
  /** When the server started serving (0 before). */
  startedAt = 0;
  /** The last write asked for: writes go one after another, so the store ends with the latest. */
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Pick<LeaseStore, 'setMeta'>,
    private readonly listeners: () => ListenerStatus[],
    private readonly rules: () => string,
  ) {}

  record(): Promise<void> {
    if (this.startedAt === 0) return Promise.resolve();
    const runtime: ServerRuntime = { pid: process.pid, startedAt: this.startedAt, listeners: this.listeners(), rules: this.rules() };
    return this.write(JSON.stringify(runtime));
  }

  clear(): Promise<void> {
    return this.write('');
  }

  private write(value: string): Promise<void> {
    const written = this.writing.then(() => this.store.setMeta(RUNTIME_META, value));
    this.writing = written.catch(() => {});
    return written;
  }
}
