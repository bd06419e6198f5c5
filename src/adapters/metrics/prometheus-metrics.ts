import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const GAUGES_NAMED_LIKE_COUNTERS = ['floatd_nodejs_active_handles_total', 'floatd_nodejs_active_requests_total', 'floatd_nodejs_active_resources_total'];

const LIMITS = ['max_connections', 'max_connections_per_address', 'acquire_rate', 'file_descriptors'] as const;
export type Limit = (typeof LIMITS)[number];
/** The states floatd_key_activation_state shows, one series each (1 for the key's current state). */
export const ACTIVATION_STATES = ['active', 'not-activated', 'deactivated', 'hardware-changed', 'invalid', 'revalidation-overdue', 'unchecked'] as const;

/** What the metrics read from the running server when scraped (gauges of state, not counts). */
export interface MetricsState {
  /** `inUse` is null when the database cannot be read (a storage fault). */
  readonly pools: ReadonlyArray<{ readonly pool: string; readonly product: string; readonly seats: number; readonly grantable: number; readonly inUse: number | null }>;
  /** `activation`: the activation state of a key that needs one (see ACTIVATION_STATES), else null. */
  readonly keys: ReadonlyArray<{ readonly key: string; readonly product: string; readonly expiresAt: number | null; readonly activation: string | null }>;
  readonly connections: number;
  /** Bytes of replies not yet taken by the kernel, over all NDJSON connections. */
  readonly unsentReplyBytes: number;
  /** NDJSON connections not read now because of their unsent replies. */
  readonly pausedConnections: number;
  /** Epoch ms of the earliest lease expiry, or null when no lease is held. */
  readonly earliestExpiry: number | null;
  readonly now: number;
  /** The kind of storage fault in progress (disk-full, io-error, locked, read-only), or null. */
  readonly storageFault: string | null;
}

/**
 * floatd's Prometheus metrics: names prefixed `floatd_`, base units, `_total`
 * on counters, no user, host or lease in any label. Counters are told only
 * of committed work (the lease service's after-commit hooks); gauges are read
 * from the server when scraped.
 */
export class PrometheusMetrics {
  readonly registry = new Registry();
  private readonly grants: Counter<'product'>;
  private readonly renewals: Counter<'product'>;
  private readonly releases: Counter<'cause'>;
  private readonly denials: Counter<'code' | 'reason'>;
  private readonly requestDuration: Histogram<'op' | 'transport'>;
  private readonly commitDuration: Histogram;
  private readonly commitBatchSize: Histogram;
  private readonly sweepLag: Gauge;
  private readonly unavailable: Counter<'reason'>;
  private readonly pauses: Counter;
  private readonly slowReaders: Counter;
  private readonly limitHits: Counter<'limit'>;
  private readonly clockJumps: Counter;

  constructor(version: string, state: () => Promise<MetricsState>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'floatd_' });
    // prom-client's *_active_{handles,requests,resources}_total are gauges named like counters, which
    // promtool check metrics refuses; the same numbers are the sums of the per-type gauges beside them.
    for (const name of GAUGES_NAMED_LIKE_COUNTERS) this.registry.removeSingleMetric(name);
    new Gauge({ name: 'floatd_build_info', help: 'floatd build; always 1', labelNames: ['version'], registers }).set({ version }, 1);
    this.grants = new Counter({ name: 'floatd_lease_grants_total', help: 'Seats granted (new leases)', labelNames: ['product'], registers });
    this.renewals = new Counter({ name: 'floatd_lease_renewals_total', help: 'Leases renewed (including an acquire by the holder)', labelNames: ['product'], registers });
    this.releases = new Counter({ name: 'floatd_lease_releases_total', help: 'Leases ended, by cause: released, expired, revoked', labelNames: ['cause'], registers });
    this.denials = new Counter({ name: 'floatd_lease_denials_total', help: 'Acquisitions refused, by error code and reason', labelNames: ['code', 'reason'], registers });
    this.requestDuration = new Histogram({
      name: 'floatd_request_duration_seconds',
      help: 'Time from a request read to its reply sent, by op and transport',
      labelNames: ['op', 'transport'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.commitDuration = new Histogram({
      name: 'floatd_db_commit_duration_seconds',
      help: 'Time to run and commit one batch of lease operations',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.commitBatchSize = new Histogram({ name: 'floatd_db_commit_batch_size', help: 'Lease operations sharing one commit', buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], registers });
    this.sweepLag = new Gauge({ name: 'floatd_sweep_lag_seconds', help: 'How late the last sweep ran after the expiry it was for', registers });
    this.unavailable = new Counter({ name: 'floatd_storage_unavailable_total', help: 'Lease operations answered UNAVAILABLE because the database could not be written, by reason', labelNames: ['reason'], registers });
    this.pauses = new Counter({ name: 'floatd_connections_paused_total', help: 'Times an NDJSON connection stopped being read because too many of its replies were unsent (backpressure)', registers });
    this.slowReaders = new Counter({ name: 'floatd_slow_readers_dropped_total', help: 'NDJSON connections dropped because their unsent replies did not drain in time', registers });
    this.limitHits = new Counter({
      name: 'floatd_limit_hits_total',
      help: 'Requests and connections refused by a limit: max_connections, max_connections_per_address, acquire_rate, file_descriptors (seconds found out of descriptors)',
      labelNames: ['limit'],
      registers,
    });
    for (const limit of LIMITS) this.limitHits.inc({ limit }, 0);
    this.clockJumps = new Counter({ name: 'floatd_clock_jumps_total', help: 'Wall-clock jumps the server noticed and re-based lease times for', registers });
    registerStateGauges(registers, state);
  }

  granted(product: string): void {
    this.grants.inc({ product });
  }

  renewed(product: string): void {
    this.renewals.inc({ product });
  }

  ended(cause: 'released' | 'expired' | 'revoked'): void {
    this.releases.inc({ cause });
  }

  denied(code: string, reason: string | null): void {
    this.denials.inc({ code, reason: reason ?? '' });
  }

  request(op: string, transport: string, seconds: number): void {
    this.requestDuration.observe({ op, transport }, seconds);
  }

  committed(operations: number, seconds: number): void {
    this.commitBatchSize.observe(operations);
    this.commitDuration.observe(seconds);
  }

  storageUnavailable(reason: string, operations: number): void {
    if (operations > 0) this.unavailable.inc({ reason }, operations);
  }

  /** A connection paused for backpressure. */
  paused(): void {
    this.pauses.inc();
  }

  slowReaderDropped(): void {
    this.slowReaders.inc();
  }

  limitHit(limit: Limit): void {
    this.limitHits.inc({ limit });
  }

  swept(lagSeconds: number): void {
    this.sweepLag.set(lagSeconds);
  }

  clockJumped(): void {
    this.clockJumps.inc();
  }

  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** The scrape's reading of the server's state, shared by the gauges of one scrape. */
interface Snapshot {
  reading: Promise<MetricsState>;
}

/**
 * The gauges read from the server at a scrape. The server's state is read once per scrape, by the
 * first of them (a registry starts collecting each metric in the order they were registered, before
 * it waits for any), and the others wait for that same reading.
 */
function registerStateGauges(registers: Registry[], read: () => Promise<MetricsState>): void {
  const snapshot: Snapshot = { reading: Promise.resolve({ pools: [], keys: [], connections: 0, unsentReplyBytes: 0, pausedConnections: 0, earliestExpiry: null, now: 0, storageFault: null }) };
  registerPoolGauges(registers, read, snapshot);
  registerServerGauges(registers, snapshot);
  registerKeyExpiryGauge(registers, snapshot);
}

/** Seats per pool and activation per key; the first of these reads the snapshot. */
function registerPoolGauges(registers: Registry[], read: () => Promise<MetricsState>, snapshot: Snapshot): void {
  new Gauge({
    name: 'floatd_pool_seats',
    help: 'Seats of a pool (license key or evaluation)',
    labelNames: ['pool', 'product'],
    registers,
    async collect() {
      snapshot.reading = read();
      const current = await snapshot.reading;
      this.reset();
      for (const p of current.pools) this.set({ pool: p.pool, product: p.product }, p.seats);
    },
  });
  new Gauge({
    name: 'floatd_pool_grantable_seats',
    help: 'Seats of a pool that can be granted now: its size while its key is valid and, if it needs one, activated here; else 0',
    labelNames: ['pool', 'product'],
    registers,
    async collect() {
      const current = await snapshot.reading;
      this.reset();
      for (const p of current.pools) this.set({ pool: p.pool, product: p.product }, p.grantable);
    },
  });
  new Gauge({
    name: 'floatd_key_activation_state',
    help: 'Activation state of each license key that needs activation: 1 for its current state, 0 for the others',
    labelNames: ['key', 'product', 'state'],
    registers,
    async collect() {
      const current = await snapshot.reading;
      this.reset();
      for (const k of current.keys) {
        if (k.activation === null) continue;
        for (const state of ACTIVATION_STATES) this.set({ key: k.key, product: k.product, state }, k.activation === state ? 1 : 0);
      }
    },
  });
  new Gauge({
    name: 'floatd_pool_seats_in_use',
    help: 'Seats of a pool held by running leases',
    labelNames: ['pool', 'product'],
    registers,
    async collect() {
      const current = await snapshot.reading;
      this.reset();
      for (const p of current.pools) if (p.inUse !== null) this.set({ pool: p.pool, product: p.product }, p.inUse);
    },
  });
}

/** Storage, connections and the earliest expiry. */
function registerServerGauges(registers: Registry[], snapshot: Snapshot): void {
  new Gauge({
    name: 'floatd_storage_fault',
    help: '1 while the database cannot be written (full disk, I/O errors, a lock another process holds; see /readyz), else 0',
    registers,
    async collect() {
      const current = await snapshot.reading;
      this.set(current.storageFault === null ? 0 : 1);
    },
  });
  new Gauge({
    name: 'floatd_tcp_connections',
    help: 'Open NDJSON connections (TCP and TLS)',
    registers,
    async collect() {
      const current = await snapshot.reading;
      this.set(current.connections);
    },
  });
  new Gauge({
    name: 'floatd_unsent_reply_bytes',
    help: 'Bytes of NDJSON replies written but not yet taken by the kernel (clients reading slowly or not at all)',
    registers,
    async collect() {
      const current = await snapshot.reading;
      this.set(current.unsentReplyBytes);
    },
  });
  new Gauge({
    name: 'floatd_connections_paused',
    help: 'NDJSON connections not read now because too many of their replies are unsent',
    registers,
    async collect() {
      const current = await snapshot.reading;
      this.set(current.pausedConnections);
    },
  });
  new Gauge({
    name: 'floatd_earliest_lease_expiry_seconds',
    help: 'Seconds until the first running lease expires (how long the server may be down); absent without leases',
    registers,
    async collect() {
      const current = await snapshot.reading;
      this.reset();
      if (current.earliestExpiry !== null) this.set(Math.max(0, (current.earliestExpiry - current.now) / 1000));
    },
  });
}

function registerKeyExpiryGauge(registers: Registry[], snapshot: Snapshot): void {
  new Gauge({
    name: 'floatd_license_expiry_timestamp_seconds',
    help: 'When each license key expires (Unix time); keys that never expire are left out',
    labelNames: ['key', 'product'],
    registers,
    async collect() {
      const current = await snapshot.reading;
      this.reset();
      for (const k of current.keys) if (k.expiresAt !== null) this.set({ key: k.key, product: k.product }, k.expiresAt / 1000);
    },
  });
}
