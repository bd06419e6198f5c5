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

  constructor(
    private readonly store: Pick<LeaseStore, 'setMeta'>,
    private readonly listeners: () => ListenerStatus[],
    private readonly rules: () => string,
  ) {}

  record(): void {
    if (this.startedAt === 0) return;
    const runtime: ServerRuntime = { pid: process.pid, startedAt: this.startedAt, listeners: this.listeners(), rules: this.rules() };
    this.store.setMeta(RUNTIME_META, JSON.stringify(runtime));
  }

  clear(): void {
    this.store.setMeta(RUNTIME_META, '');
  }
}
