import type { Clock } from '../domain/clock.js';
import type { LicenseKey } from '../domain/license.js';
import type { ActivationStore, LeaseStore, StoredActivation, StoredLicense } from '../domain/ports.js';
import type { Logger } from '../adapters/log/logger.js';
import type { ServerActivation } from './activation.js';
import { recordActivationChanges } from './key-state.js';
import type { PoolRegistry } from './pool-registry.js';

/** What a pool's leases carry so that clients can verify them up to the vendor. */
export interface LeaseChain {
  readonly key: string;
  readonly activation: string | null;
}

/**
 * The activations of the installed keys as the running server judges them:
 * checked against the host (and re-validated with the vendor when due), each
 * change logged once and recorded in the lease log, and the key and activation
 * each pool's leases chain to.
 */
export class ActivationWatch {
  /** The last activation state logged per key, so each change is logged once. */
  private readonly logged = new Map<string, string>();
  /** The activation state of each key last written to the lease log (activation-changed), this run. */
  private readonly recorded = new Map<string, string>();
  private chain = new Map<string, LeaseChain>();

  constructor(
    private readonly deps: {
      readonly activation: ServerActivation;
      readonly pools: PoolRegistry;
      readonly store: LeaseStore & ActivationStore;
      readonly clock: Clock;
      readonly logger: Logger;
      /** Activation states show in status. */
      readonly changed: () => void;
      /** The server is stopping: a check in progress gives up. */
      readonly stopping: () => boolean;
    },
  ) {}

  /** The license key and activation the leases of a pool carry. */
  chainOf(poolId: string): LeaseChain | undefined {
    return this.chain.get(poolId);
  }

  /** Judges the activations of the keys in force now, and applies the outcome. */
  async evaluate(keys: readonly LicenseKey[] = this.deps.pools.licenseKeys()): Promise<void> {
    const { activation, pools, store, clock } = this.deps;
    const states = await activation.evaluate(keys, clock.now());
    // Read before the states change, so the pools and what their leases chain to change together.
    const [licenses, activations] = await Promise.all([store.listLicenses(), store.listActivations()]);
    pools.setActivation(states);
    this.refresh(licenses, activations);
    await recordActivationChanges(store, this.recorded, pools.licenseKeys(), (id) => pools.activationState(id), clock.now());
    for (const key of pools.licenseKeys()) this.logChange(key.id, key.product);
  }

  /**
   * At start and every hour: re-validates online activations that are due
   * with the vendor, then checks every activation against the host as it is
   * now. A key that no longer matches stops granting; the others serve on.
   */
  async check(): Promise<void> {
    const { activation, pools, logger, clock, stopping } = this.deps;
    const keys = pools.licenseKeys();
    for (const stored of await activation.due(clock.now())) {
      const key = keys.find((k) => k.id === stored.keyId);
      if (key === undefined || stopping()) continue;
      const outcome = await activation.revalidate(key, stored);
      if (stopping()) return;
      if (outcome === 'confirmed') logger.info({ key: key.id }, `the vendor confirmed the activation of license key ${key.id}`);
      else if (outcome === 'released') logger.error({ key: key.id }, `the vendor says the activation of license key ${key.id} was released: no seats of ${key.product} are granted from it until it is activated again`);
      else logger.warn({ key: key.id, code: outcome.failed.code }, `re-validating the activation of license key ${key.id} failed: ${outcome.failed.message}`);
    }
    if (stopping()) return;
    await this.evaluate();
  }

  /** Refreshes what leases chain to, and what status shows. */
  private refresh(licenses: readonly StoredLicense[], activations: readonly StoredActivation[]): void {
    const { pools } = this.deps;
    this.deps.changed();
    const tokens = new Map(licenses.map((l) => [l.id, l.token]));
    this.chain = new Map(
      pools.licenseKeys().flatMap((k) => {
        const token = tokens.get(k.id);
        if (token === undefined) return [];
        const activation = k.activation ? (activations.find((a) => a.keyId === k.id)?.token ?? null) : null;
        return [[k.id, { key: token, activation }] as const];
      }),
    );
  }

  /** Logs a key's activation state when it changes (errors where someone must act). */
  private logChange(keyId: string, product: string): void {
    const { logger } = this.deps;
    const state = this.deps.pools.activationState(keyId);
    if (state === undefined) return;
    const sig = JSON.stringify(state);
    if (this.logged.get(keyId) === sig) return;
    const first = !this.logged.has(keyId);
    this.logged.set(keyId, sig);
    const info = { key: keyId, product, activation: state.state };
    if (state.state === 'active') {
      if (state.changed.length > 0) logger.warn({ ...info, changed: state.changed }, `license key ${keyId}: host component(s) changed since activation, tolerated (the others still match): ${state.changed.join(', ')}`);
      if (state.graceUntil !== null) logger.warn({ ...info, graceUntil: new Date(state.graceUntil).toISOString() }, `license key ${keyId}: the vendor could not confirm its activation; it keeps granting until ${new Date(state.graceUntil).toISOString()}`);
      else if (!first || state.changed.length === 0) logger.info(info, `license key ${keyId} is activated on this host`);
    } else if (state.state === 'not-activated' || state.state === 'deactivated') {
      logger.warn(info, `${state.message}; until then no seats of ${product} are granted from it`);
    } else {
      logger.error({ ...info, ...(state.changed ? { changed: state.changed } : {}) }, `${state.message}; no seats of ${product} are granted from it`);
    }
  }
}
