import type { LicenseKey } from '../domain/license.js';
import { licenseValidity } from '../domain/license.js';
import { poolIsValid } from '../domain/pool.js';
import { formatTimeLeft, wholeDaysLeft } from '../domain/wording.js';
import type { LeaseStore } from '../domain/ports.js';
import { evaluationStatus, type EvaluationSettingsView, type EvaluationStatus } from './evaluation.js';
import { EVALUATION_PRODUCT, type PoolRegistry } from './pool-registry.js';
import { VERSION } from './version.js';
import type { LogAnchor } from './log-anchor.js';
import { keyAction, keyState, type KeyState } from './key-state.js';
import type { ListenerView } from '../domain/admin-replies.js';

export interface ProductStatus {
  readonly product: string;
  /** Seats of the product's valid keys, grantable or not. */
  readonly seatsTotal: number;
  /** Seats that can be granted: those of keys not waiting for (or lacking) an activation. */
  readonly seatsGrantable: number;
  readonly seatsInUse: number;
  /** Grantable seats not in use. */
  readonly seatsFree: number;
}

export interface KeyStatus {
  readonly id: string;
  readonly licensee: string;
  readonly product: string;
  readonly seats: number;
  readonly seatsInUse: number;
  readonly notBefore: string | null;
  readonly expires: string | null;
  /** Whole days until the key expires (0 under a day and once expired), or null when it never expires. */
  readonly daysLeft: number | null;
  /** The time until the key expires as people read it ("12 days", "5h 12m"), or null when it never expires. */
  readonly timeLeft: string | null;
  readonly maxLeaseSeconds: number | null;
  readonly features: readonly string[];
  /** `valid` only when the key can grant; a key lacking its activation has the activation's state (see key-state.ts). */
  readonly state: KeyState;
  /** Seats the key can grant now: its seats while its state is `valid`, else 0. */
  readonly seatsGrantable: number;
  /** What to run when the key cannot grant for want of an activation, else null. */
  readonly action: string | null;
  /** For keys that need activation: how it stands on this host, and what to do when it does not. */
  readonly activation?: {
    readonly state: 'active' | 'not-activated' | 'deactivated' | 'hardware-changed' | 'invalid' | 'revalidation-overdue' | 'unchecked';
    readonly message: string | null;
    /** Host components that changed since activation (tolerated while the state is active). */
    readonly changed: readonly string[];
    /** While the vendor cannot be reached for re-validation: when granting stops. */
    readonly graceUntil: string | null;
  };
}

/** A listening socket: `tcp` and `tls` speak NDJSON, `http` and `https` are the web endpoint. */
export type ListenerStatus = ListenerView;

export interface ServerStatus {
  readonly version: string;
  readonly mode: 'licensed' | 'evaluation' | 'unlicensed';
  /** In evaluation (or once evaluation ended for good with no key in force): its terms, who set them, its dates. */
  readonly evaluation: null | EvaluationStatus;
  readonly keys: readonly KeyStatus[];
  readonly rejectedKeys: ReadonlyArray<{ id: string; code: string; message: string }>;
  readonly products: readonly ProductStatus[];
  readonly leasesHeld: number;
  /** How long the server may be down before the first running lease expires (null: no lease). */
  readonly downToleranceMs: number | null;
  readonly serverKeyFingerprint: string | null;
  readonly listeners: readonly ListenerStatus[];
  readonly running: boolean | null;
  /** The CLT rules in force on the running server, e.g. "12 CLT rule(s) from /etc/floatd/rules.clt"; null when no server runs. */
  readonly rules: string | null;
  /** The lease log's newest signed checkpoint, to keep outside the database (floatd log verify --anchor). */
  readonly logAnchor: LogAnchor | null;
  /** Several nodes on one PostgreSQL database: the nodes, the database's replication; absent on a single server. */
  readonly cluster?: ClusterStatus;
}

/** A cluster as one of its nodes sees it. */
export interface ClusterStatus {
  /** The node answering. */
  readonly node: string;
  readonly nodes: ReadonlyArray<{
    readonly id: string;
    readonly up: boolean;
    readonly listeners: readonly string[];
    readonly version: string;
    readonly startedAt: string;
    readonly lastSeen: string;
    /** Running leases whose client is on this node. */
    readonly leases: number;
  }>;
  /** The database's replication as this node last saw it (null before the first look). */
  readonly database: null | {
    readonly role: 'primary' | 'standby';
    /** Commits wait for a streaming synchronous standby: a failover to it loses no acknowledged lease. */
    readonly synchronous: boolean;
    readonly synchronousStandbyNames: string;
    readonly standbys: ReadonlyArray<{ readonly name: string; readonly state: string | null; readonly syncState: string | null }>;
  };
  /** This node's wall clock minus the database's (ms): leases are timed on the database's. */
  readonly clockSkewMs: number;
  /** What an operator should know: a node down, no synchronous standby, a clock far off. */
  readonly warnings: readonly string[];
}

export interface StatusInputs {
  readonly store: LeaseStore;
  readonly pools: PoolRegistry;
  readonly now: number;
  readonly rejectedKeys?: ReadonlyArray<{ id: string; code: string; message: string }>;
  readonly serverKeyFingerprint: string | null;
  readonly listeners: readonly ListenerStatus[];
  readonly running: boolean | null;
  readonly rules?: string | null;
  readonly logAnchor?: LogAnchor | null;
  /** The licensing settings in force: who set the evaluation's terms, where its record is. */
  readonly settings?: EvaluationSettingsView;
}

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

export async function collectStatus(input: StatusInputs): Promise<ServerStatus> {
  const { store, pools, now } = input;
  const usage = new Map<string, number>();
  let held = 0;
  let first: number | null = null;
  for (const lease of await store.allLeases()) {
    if (lease.expiresAt <= now) continue;
    held++;
    usage.set(lease.poolId, (usage.get(lease.poolId) ?? 0) + 1);
    if (first === null || lease.expiresAt < first) first = lease.expiresAt;
  }
  const products = new Map<string, { total: number; grantable: number; inUse: number }>();
  for (const pool of pools.all()) {
    const name = pool.product === '*' ? EVALUATION_PRODUCT : pool.product;
    const p = products.get(name) ?? { total: 0, grantable: 0, inUse: 0 };
    p.inUse += usage.get(pool.id) ?? 0;
    if (poolIsValid(pool, pools.judgedAt(now))) p.total += pool.seats;
    p.grantable += pools.grantableSeats(pool, now);
    products.set(name, p);
  }
  const evalPool = pools.evaluationPool();
  const stateOf = (k: LicenseKey): KeyState => keyState(licenseValidity(k, pools.judgedAt(now)).state, Boolean(k.activation), pools.activationState(k.id));
  const keyStatus = (k: LicenseKey): KeyStatus => ({
    id: k.id,
    licensee: k.licensee,
    product: k.product,
    seats: k.seats,
    seatsInUse: usage.get(k.id) ?? 0,
    notBefore: iso(k.notBefore),
    expires: iso(k.expiresAt),
    daysLeft: k.expiresAt === null ? null : wholeDaysLeft(k.expiresAt - now),
    timeLeft: k.expiresAt === null ? null : formatTimeLeft(k.expiresAt - now),
    maxLeaseSeconds: k.maxLeaseSeconds,
    features: k.features,
    state: stateOf(k),
    seatsGrantable: stateOf(k) === 'valid' ? k.seats : 0,
    action: keyAction(stateOf(k), k.id),
    ...(k.activation ? { activation: activationStatus(pools, k.id) } : {}),
  });
  return {
    version: VERSION,
    mode: evalPool !== null ? 'evaluation' : pools.licenseKeys().length > 0 ? 'licensed' : 'unlicensed',
    evaluation:
      evalPool !== null || (pools.evaluationEnded() !== null && pools.licenseKeys().length === 0)
        ? await evaluationStatus(store, pools.evaluationTerms(), evalPool === null ? pools.evaluationEnded() : null, now, input.settings)
        : null,
    keys: pools.licenseKeys().map(keyStatus),
    rejectedKeys: input.rejectedKeys ?? [],
    products: [...products].map(([product, p]) => ({
      product,
      seatsTotal: p.total,
      seatsGrantable: p.grantable,
      seatsInUse: p.inUse,
      seatsFree: Math.max(0, p.grantable - p.inUse),
    })),
    leasesHeld: held,
    downToleranceMs: first === null ? null : first - now,
    serverKeyFingerprint: input.serverKeyFingerprint,
    listeners: input.listeners,
    running: input.running,
    rules: input.rules ?? null,
    logAnchor: input.logAnchor ?? null,
  };
}

function activationStatus(pools: PoolRegistry, keyId: string): NonNullable<KeyStatus['activation']> {
  const a = pools.activationState(keyId);
  if (a === undefined) return { state: 'unchecked', message: 'the activation is not checked yet', changed: [], graceUntil: null };
  if (a.state === 'active') return { state: 'active', message: null, changed: a.changed, graceUntil: a.graceUntil === null ? null : new Date(a.graceUntil).toISOString() };
  return { state: a.state, message: a.message, changed: a.changed ?? [], graceUntil: null };
}
