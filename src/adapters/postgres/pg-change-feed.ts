import pg from 'pg';
import type { ChangeFeed } from '../../domain/ports.js';
import type { EndedLease } from './pg-unit.js';

/** The channels floatd nodes tell each other on. */
export const CHANGES_CHANNEL = 'floatd_changes';
export const LEASES_CHANNEL = 'floatd_leases';

/** What a pg_notify on the changes channel carries. */
export interface ChangeNotice {
  /** The store (one node process) that committed the change: it does not need to be told. */
  readonly origin: string;
  /** What changed: licenses, activations, meta, admin-tokens, blocks, rules. */
  readonly what: string;
}

/**
 * Changes other nodes commit, heard through LISTEN/NOTIFY on a connection of
 * its own. A notice only marks the feed; subscribers are called at the next
 * `poll` (the server's maintenance tick), as with SQLite's data version. A
 * lease another node ended (revoked, expired) whose client is on this node is
 * told at once to `onLeaseEnded`'s listeners. When the connection is lost the
 * feed reconnects with back-off and, once back, treats everything as changed
 * (it may have missed notices).
 */
export class PgChangeFeed implements ChangeFeed {
  private readonly subscribers = new Set<() => void>();
  private readonly endedListeners = new Set<(ended: EndedLease) => void>();
  private pending = false;
  private client: pg.Client | null = null;
  private closed = false;
  private retryMs = 200;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly origin: string,
    private readonly nodeId: string,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  async start(): Promise<void> {
    const client = new pg.Client(this.config);
    // Until it listens, a failure is the caller's to handle (start rejects); after, the feed reconnects.
    client.on('error', (err) => (this.client === client ? this.lost(client, err) : undefined));
    client.on('end', () => this.lost(client, null));
    client.on('notification', (n) => this.heard(n.channel, n.payload));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
      await client.query(`LISTEN ${LEASES_CHANNEL}`);
    } catch (err) {
      client.removeAllListeners('end');
      client.end().catch(() => {});
      throw err;
    }
    this.client = client;
    this.retryMs = 200;
  }

  private heard(channel: string, payload: string | undefined): void {
    try {
      const body = JSON.parse(payload ?? '{}') as Record<string, unknown>;
      if (channel === CHANGES_CHANNEL) {
        if (body.origin !== this.origin) this.pending = true;
      } else if (channel === LEASES_CHANNEL && body.node === this.nodeId) {
        for (const fn of [...this.endedListeners]) fn(body as unknown as EndedLease);
      }
    } catch (err) {
      this.onError(err);
    }
  }

  private lost(client: pg.Client, err: unknown): void {
    if (this.client !== client) return;
    this.client = null;
    client.removeAllListeners('end');
    if (err !== null) this.onError(err);
    client.end().catch(() => {});
    this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.closed || this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.closed) return;
      this.start().then(
        () => {
          // Notices sent while the feed was away are lost: look at everything again.
          this.pending = true;
        },
        (e: unknown) => {
          this.onError(e);
          this.retryMs = Math.min(this.retryMs * 2, 5000);
          this.reconnectLater();
        },
      );
    }, this.retryMs);
    this.timer.unref();
  }

  subscribe(fn: () => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** Calls `fn` with every lease of this node's clients that another node ended. */
  onLeaseEnded(fn: (ended: EndedLease) => void): () => void {
    this.endedListeners.add(fn);
    return () => this.endedListeners.delete(fn);
  }

  poll(): void {
    if (!this.pending) return;
    this.pending = false;
    for (const fn of [...this.subscribers]) fn();
  }

  /** Whether the feed's connection is up (status and /readyz report a node that cannot hear the cluster). */
  get listening(): boolean {
    return this.client !== null;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    const c = this.client;
    this.client = null;
    if (c !== null) {
      c.removeAllListeners('end');
      await c.end().catch(() => {});
    }
  }
}
