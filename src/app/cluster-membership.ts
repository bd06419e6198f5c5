import type { SteadyClock } from '../domain/steady-clock.js';
import type { Logger } from '../adapters/log/logger.js';
import type { ClusterNode } from '../adapters/postgres/pg-cluster.js';
import type { PgLeaseStore, ReplicationState } from '../adapters/postgres/pg-lease-store.js';
import { span } from './clock-watch.js';
import { WarningThrottle } from './warning-throttle.js';

/** How far a node's own clock may be from the database's before it warns. */
export const NODE_CLOCK_WARN_MS = 5_000;
/** How far this node's lease time may drift from the database's before it is moved back into step. */
const REALIGN_MS = 100;
/** A node is shown as gone when its last heartbeat is older than this. */
export const NODE_GONE_MS = 30_000;

/**
 * This node's place in a cluster: its row in the nodes table, kept fresh by a
 * heartbeat; its lease time kept in step with the database's clock (which
 * decides every lease), so a node whose own clock is off changes nothing but
 * gets a warning; and the database's replication, which status and /readyz
 * report.
 */
export class ClusterMembership {
  private readonly throttle = new WarningThrottle(10 * 60_000);
  private replicationState: ReplicationState | null = null;
  /** Last seen skew of this node's wall clock against the database's (ms, positive: this node is ahead). */
  private skewMs = 0;

  constructor(
    private readonly store: PgLeaseStore,
    private readonly clock: SteadyClock,
    private readonly logger: Logger,
    private readonly node: () => { listeners: string[]; version: string; startedAt: number },
  ) {}

  get nodeId(): string {
    return this.store.cluster.nodeId;
  }

  /**
   * Writes the heartbeat and reads the database's clock with it: lease time on
   * this node follows the database's (within the round trip), and a node whose
   * own clock is far off says so.
   */
  async beat(): Promise<void> {
    const sent = this.clock.monotonic();
    const dbNow = await this.store.cluster.heartbeat(this.node());
    const rtt = this.clock.monotonic() - sent;
    const dbAtReply = dbNow + rtt / 2;
    const drift = dbAtReply - this.clock.now();
    if (Math.abs(drift) > REALIGN_MS + rtt) this.clock.rebase(drift);
    this.skewMs = Math.round(this.clock.wallNow() - dbAtReply);
    if (Math.abs(this.skewMs) > NODE_CLOCK_WARN_MS && this.throttle.admit('clock', this.clock.monotonic()) !== null) {
      this.logger.warn(
        { node: this.nodeId, skewMs: this.skewMs },
        `this node's clock is ${span(this.skewMs)} ${this.skewMs > 0 ? 'ahead of' : 'behind'} the database's: leases are timed on the database's clock, so they are not affected, but this node's own log times are off; set up NTP on it`,
      );
    }
  }

  /** Looks at the database's replication; warns while commits wait for no synchronous standby. */
  async watchReplication(): Promise<void> {
    const state = await this.store.replication();
    this.replicationState = state;
    if (state.role === 'primary' && !state.synchronous && this.throttle.admit('replication', this.clock.monotonic()) !== null) {
      this.logger.warn(
        { synchronousStandbyNames: state.synchronousStandbyNames, standbys: state.standbys.length },
        'the database has no synchronous standby streaming: if it fails over to an asynchronous standby, leases granted just before can be lost (see docs/high-availability.md)',
      );
    }
  }

  get replication(): ReplicationState | null {
    return this.replicationState;
  }

  get clockSkewMs(): number {
    return this.skewMs;
  }

  /** The cluster's nodes as their rows say, each marked up (heartbeat within NODE_GONE_MS) or not. */
  async nodes(): Promise<Array<ClusterNode & { readonly up: boolean }>> {
    const now = this.clock.now();
    return (await this.store.cluster.nodes()).map((n) => ({ ...n, up: n.stoppedAt === null && now - n.lastSeen < NODE_GONE_MS }));
  }

  /** A clean stop: the node's row says so. */
  async leave(): Promise<void> {
    await this.store.cluster.stopped();
  }
}
