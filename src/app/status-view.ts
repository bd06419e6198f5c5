import type { Clock } from '../domain/clock.js';
import type { ServerStatus } from './status.js';

/** How old a status snapshot may be when nothing changed (durations and key states move with time). */
const STATUS_MAX_AGE_MS = 1000;

/**
 * What `status` shows, from a snapshot: computed again after a change event (a
 * lease granted, renewed or ended, pools, listeners, rules or activations
 * changed) or once it is a second old, not for every request, so a flood of
 * status requests costs one computation.
 */
export class StatusView {
  private generation = 0;
  private snapshot: { readonly generation: number; readonly at: number; readonly status: ServerStatus } | null = null;
  /** The computation under way: reads that come meanwhile wait for it rather than start their own. */
  private computing: { readonly generation: number; readonly status: Promise<ServerStatus> } | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly compute: () => Promise<ServerStatus>,
  ) {}

  /** Something status shows has changed: the next read computes it afresh. */
  readonly changed = (): void => {
    this.generation++;
  };

  async current(): Promise<ServerStatus> {
    const at = this.clock.monotonic();
    const snapshot = this.snapshot;
    if (snapshot !== null && snapshot.generation === this.generation && at - snapshot.at < STATUS_MAX_AGE_MS) return snapshot.status;
    const generation = this.generation;
    if (this.computing !== null && this.computing.generation === generation) return this.computing.status;
    const computing = { generation, status: this.compute() };
    this.computing = computing;
    try {
      const status = await computing.status;
      // A later computation may have finished first: the newer snapshot stays.
      if (this.snapshot === null || this.snapshot.generation <= generation) this.snapshot = { generation, at, status };
      return status;
    } finally {
      if (this.computing === computing) this.computing = null;
    }
  }
}
