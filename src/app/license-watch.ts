import type { Config } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import { licenseValidity, type LicenseKey } from '../domain/license.js';
import { EVALUATION_POOL_ID } from '../domain/pool.js';
import type { ActivationStore, LeaseStore } from '../domain/ports.js';
import { formatTimeLeft, wholeDaysLeft } from '../domain/wording.js';
import type { Logger } from '../adapters/log/logger.js';
import type { ActivationWatch } from './activation-watch.js';
import type { LicensingSettings } from './data-dir.js';
import { evaluationTermsRegistered } from './evaluation-registration.js';
import type { ServerEvaluation } from './evaluation.js';
import type { LeaseService } from './lease-service.js';
import { CLOCK_HIGH_WATER_META, clockHighWater, type Licensing, type LoadedLicenses } from './licensing.js';
import type { PoolRegistry } from './pool-registry.js';

const DAY_MS = 86_400_000;
const EXPIRY_WARNINGS = [30, 14, 7, 1];

export interface LicenseWatchDeps {
  readonly config: Config;
  readonly settings: LicensingSettings;
  readonly store: LeaseStore & ActivationStore;
  readonly licensing: Licensing;
  readonly pools: PoolRegistry;
  readonly leases: LeaseService;
  readonly activations: ActivationWatch;
  readonly evaluation: ServerEvaluation;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Pools or key states changed: status shows them. */
  readonly changed: () => void;
}

/**
 * The license keys in force and what follows from them: pools decided again
 * when keys are added or removed (by `floatd license`, in another process),
 * start or expire; leases of keys no longer in force revoked; expiry warnings;
 * the evaluation record; and the clock's high-water mark that keys are judged at.
 */
export class LicenseWatch {
  private rejectedKeys: LoadedLicenses['rejected'] = [];
  private readonly keyStates = new Map<string, string>();
  /** The tightest expiry warning (30, 14, 7, 1 days) given per key. */
  private readonly expiryWarned = new Map<string, number>();
  /** Another process committed a change (a key added or removed, an activation) since the last reload. */
  private changedElsewhere = false;
  private reloading: Promise<void> | null = null;
  /** The clock's high-water mark as last stored, and whether a clock set back before it has been reported. */
  private highWater = 0;
  private clockBackReported = false;
  /** Why evaluation grants nothing yet (not registered with the vendor), as last logged. */
  private evaluationUnregistered: string | null = null;

  constructor(private readonly deps: LicenseWatchDeps) {
    deps.store.changes.subscribe(() => (this.changedElsewhere = true));
  }

  /** Installed keys that were refused, with why. */
  rejected(): LoadedLicenses['rejected'] {
    return this.rejectedKeys;
  }

  /** Decides the pools quietly before the server listens, so its first requests are served. */
  async loadAtStart(): Promise<void> {
    const { evaluation, store, licensing, pools } = this.deps;
    await evaluation.keeper.adopt();
    this.highWater = await clockHighWater(store);
    await this.trackClock(this.deps.clock.now());
    await licensing.loadPools(pools, await this.evaluationTerms());
    await this.deps.activations.evaluate();
  }

  /** Re-reads the installed keys (after `floatd license add/remove`) and revokes leases of removed ones. */
  reload(initial = false): Promise<void> {
    this.reloading ??= this.doReload(initial).finally(() => (this.reloading = null));
    return this.reloading;
  }

  /** Resolves once a reload in progress has ended. */
  async settled(): Promise<void> {
    await this.reloading?.catch(() => {});
  }

  /** Every second: keys changed by another process are read again; keys starting or expiring change the pools. */
  tick(now: number): Promise<void> | void {
    this.deps.store.changes.poll();
    if (this.changedElsewhere) return this.reload();
    const { pools } = this.deps;
    const before = pools.all().map((p) => p.id);
    if (pools.refresh(now)) return this.poolsChanged(before, false);
    return this.checkKeyStates(now, false);
  }

  private async doReload(initial: boolean): Promise<void> {
    const { store, pools, licensing, logger } = this.deps;
    store.changes.poll();
    this.changedElsewhere = false;
    const before = new Map(pools.licenseKeys().map((k) => [k.id, k]));
    const beforePools = pools.all().map((p) => p.id);
    const wasRejected = new Set(this.rejectedKeys.map((r) => r.id));
    const loaded = await licensing.loadPools(pools, await this.evaluationTerms());
    await this.deps.activations.evaluate(loaded.keys);
    this.rejectedKeys = loaded.rejected;
    for (const r of loaded.rejected) {
      if (initial || !wasRejected.has(r.id)) logger.error({ key: r.id, code: r.error.code }, `installed license key ignored: ${r.error.message}`);
    }
    if (!initial) logKeyChanges(logger, before, loaded);
    await this.poolsChanged(beforePools, initial);
  }

  /** After the pools were decided again: state changes, the evaluation banner, revocations. */
  private async poolsChanged(beforePools: readonly string[], initial: boolean): Promise<void> {
    this.deps.changed();
    const now = this.deps.clock.now();
    await this.checkKeyStates(now, initial);
    this.logEvaluation(now, beforePools, initial);
    await this.revokeOutOfForce();
  }

  private logEvaluation(now: number, beforePools: readonly string[], initial: boolean): void {
    const { pools, logger } = this.deps;
    const evalPool = pools.evaluationPool();
    if (evalPool !== null && (initial || !beforePools.includes(evalPool.id))) {
      const left = evalPool.expiresAt! - now;
      if (left <= 0) {
        logger.error({ endedAt: new Date(evalPool.expiresAt!).toISOString() }, 'evaluation period is over and no license key is installed: no seats can be granted');
      } else {
        logger.warn(
          { seats: evalPool.seats, daysLeft: wholeDaysLeft(left), timeLeft: formatTimeLeft(left), endsAt: new Date(evalPool.expiresAt!).toISOString() },
          `evaluation mode: no license key in force; ${evalPool.seats} seat(s) for ${formatTimeLeft(left)} more`,
        );
      }
    } else if (pools.all().length === 0) {
      const ended = pools.evaluationEnded();
      logger.error(ended === null ? 'no usable license key is installed and evaluation is off: no seats can be granted' : `no usable license key is installed and evaluation has ended for good (${ended}): no seats can be granted`);
    }
    const unregistered = evalPool === null ? null : pools.blocked(evalPool.id);
    if (unregistered !== null && unregistered !== this.evaluationUnregistered) logger.error(`evaluation grants no seats: ${unregistered}`);
    if (unregistered === null && this.evaluationUnregistered !== null && evalPool !== null) {
      const id = pools.evaluationTerms()?.registration?.id ?? null;
      logger.info({ evaluation: id, endsAt: evalPool.expiresAt === null ? null : new Date(evalPool.expiresAt).toISOString() }, `the evaluation is registered with the vendor (evaluation ${id ?? '?'}): evaluation grants seats`);
    }
    this.evaluationUnregistered = unregistered;
  }

  /** Revokes the leases of pools no longer in force: the evaluation's once a key is, and those of removed keys. */
  private async revokeOutOfForce(): Promise<void> {
    const { pools, leases, logger } = this.deps;
    const current = new Set(pools.all().map((p) => p.id));
    const installed = pools.licenseKeys().find((k) => current.has(k.id));
    const evaluationEnded = `evaluation ended: license key ${installed?.id ?? ''} is in force`;
    const revokedEvaluation = await leases.revokeInvalid((poolId) => (poolId === EVALUATION_POOL_ID && !current.has(poolId) ? evaluationEnded : null));
    if (revokedEvaluation > 0) logger.warn({ revoked: revokedEvaluation, key: installed?.id }, `${revokedEvaluation} evaluation lease(s) revoked: ${evaluationEnded}`);
    const revoked = await leases.revokeInvalid((poolId) => (current.has(poolId) || poolId === EVALUATION_POOL_ID ? null : 'its license key was removed'));
    if (revoked > 0) logger.warn({ revoked }, `${revoked} lease(s) revoked: their license key was removed`);
  }

  /**
   * Logs the keys whose state changed; returns a promise only when there is
   * something to record in the store (a key that expired), so a turn with
   * nothing to record is over at once.
   */
  private checkKeyStates(now: number, initial: boolean): Promise<void> | void {
    const { pools, logger } = this.deps;
    const expired: Array<{ key: LicenseKey; message: string }> = [];
    for (const key of pools.licenseKeys()) {
      const validity = licenseValidity(key, pools.judgedAt(now));
      const previous = this.keyStates.get(key.id);
      if (validity.state === 'valid') this.warnOfExpiry(key, now);
      // A valid key that lacks its activation is not in force: the activation's log line said why and what to run.
      const state = validity.state === 'valid' && pools.blocked(key.id) !== null ? 'awaiting-activation' : validity.state;
      if (previous === state) continue;
      this.keyStates.set(key.id, state);
      const info = { key: key.id, product: key.product, licensee: key.licensee, seats: key.seats };
      if (state === 'awaiting-activation') continue;
      if (validity.state === 'valid') {
        if (initial || previous !== undefined) logger.info({ ...info, expires: key.expiresAt ? new Date(key.expiresAt).toISOString() : null }, 'license key in force');
      } else if (validity.state === 'not-yet-valid') {
        logger.info(info, `${validity.message}: it is pending and grants from then on`);
      } else {
        logger.error(info, `${validity.message}: no seats of ${key.product} are granted from it`);
        expired.push({ key, message: validity.message });
      }
    }
    if (expired.length > 0) return this.recordExpired(expired, now);
  }

  /** Records each key's expiry in the lease log, once per key for good (a restart does not record it again). */
  private async recordExpired(expired: ReadonlyArray<{ key: LicenseKey; message: string }>, now: number): Promise<void> {
    const { store } = this.deps;
    for (const { key, message } of expired) {
      if ((await store.getMeta(`key-expired:${key.id}`)) !== undefined) continue;
      await store.setMeta(`key-expired:${key.id}`, String(now));
      await store.appendEvent({ ts: now, event: 'key-expired', poolId: key.id, product: key.product, message });
    }
  }

  /** Warns once when a key comes within 30, 14, 7 and 1 day(s) of its expiry (and once at start if already within). */
  private warnOfExpiry(key: LicenseKey, now: number): void {
    if (key.expiresAt === null) return;
    const daysLeft = (key.expiresAt - now) / DAY_MS;
    const threshold = EXPIRY_WARNINGS.filter((d) => daysLeft <= d).at(-1);
    if (threshold === undefined || this.expiryWarned.get(key.id) === threshold) return;
    this.expiryWarned.set(key.id, threshold);
    this.deps.logger.warn(
      { key: key.id, product: key.product, licensee: key.licensee, expires: new Date(key.expiresAt).toISOString(), daysLeft: wholeDaysLeft(key.expiresAt - now), timeLeft: formatTimeLeft(key.expiresAt - now) },
      `license key ${key.id} (${key.product}) expires in ${formatTimeLeft(key.expiresAt - now)}, at ${new Date(key.expiresAt).toISOString()}: install its renewal`,
    );
  }

  /**
   * Keeps the clock's high-water mark (stored at most once a minute). A clock
   * more than 5 minutes behind it was set back: that is reported at error once,
   * and key expiry stays judged at the mark.
   */
  async trackClock(now: number): Promise<void> {
    const { pools, store } = this.deps;
    if (now > this.highWater + 60_000 || this.highWater === 0) {
      this.highWater = Math.max(this.highWater, now);
      await store.setMeta(CLOCK_HIGH_WATER_META, String(this.highWater));
      pools.setTimeFloor(this.highWater);
      this.clockBackReported = false;
      if (pools.evaluationPool() !== null) await this.saveEvaluation();
      return;
    }
    if (now < this.highWater - 5 * 60_000 && !this.clockBackReported) {
      this.clockBackReported = true;
      pools.setTimeFloor(this.highWater);
      const at = new Date(now).toISOString();
      const mark = new Date(this.highWater).toISOString();
      this.deps.logger.error(
        { now: at, highWater: mark, behindMs: this.highWater - now },
        `the clock reads ${at}, ${formatTimeLeft(this.highWater - now)} before the latest time this server has seen (${mark}): it was set back. License keys are judged at the latest time seen, so none revives; set the clock right (NTP)`,
      );
    }
  }

  /** The evaluation's terms, with the vendor's registration where the product file asks for one. */
  private async evaluationTerms() {
    const { evaluation, store, settings, config } = this.deps;
    return { ...evaluation.terms(settings.evaluation), ...(await evaluationTermsRegistered(store, settings, config.hostRoot, config.dataDir)) };
  }

  /** Writes the evaluation record: its start, its end under the terms now in force (the vendor's, once registered), a key installed, the high-water mark. */
  async saveEvaluation(): Promise<void> {
    const { pools, settings, evaluation, clock } = this.deps;
    const terms = pools.evaluationTerms();
    const periodMs = terms?.periodMs ?? settings.evaluation.days * DAY_MS;
    await evaluation.save((start) => (terms?.registration?.id ? terms.startedAt : start) + periodMs, clock.now(), pools.evaluationPool() !== null);
  }
}

function logKeyChanges(logger: Logger, before: ReadonlyMap<string, LicenseKey>, loaded: LoadedLicenses): void {
  for (const key of loaded.keys) {
    if (!before.has(key.id)) {
      logger.info({ key: key.id, product: key.product, licensee: key.licensee, seats: key.seats }, `license key ${key.id} added: ${key.seats} seat(s) of ${key.product}`);
    }
  }
  const now = new Set([...loaded.keys.map((k) => k.id), ...loaded.rejected.map((r) => r.id)]);
  for (const [id, key] of before) {
    if (!now.has(id)) logger.info({ key: id, product: key.product }, `license key ${id} removed`);
  }
}
