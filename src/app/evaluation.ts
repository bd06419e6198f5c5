import type { Logger } from '../adapters/log/logger.js';
import type { EvaluationRecordData, EvaluationRecordFile } from '../adapters/fs/evaluation-record.js';
import { join } from 'node:path';
import { EVALUATION_RECORD_FILE } from '../adapters/fs/evaluation-record.js';
import { BUILT_IN_EVALUATION } from '../domain/evaluation.js';
import { formatTimeLeft, wholeDaysLeft } from '../domain/wording.js';
import type { LeaseStore } from '../domain/ports.js';

export const EVALUATION_STARTED_META = 'evaluation.startedAt';
/** Set (with why) when evaluation ended for good: a license key was installed. */
export const EVALUATION_CLOSED_META = 'evaluation.closed';
/** The latest wall-clock time the server has seen (ms), kept so a clock set back cannot revive an expired key. */
export const CLOCK_HIGH_WATER_META = 'clock.highWater';
/** The product names evaluation leases were granted for, in the order first seen (JSON). */
export const EVALUATION_PRODUCTS_META = 'evaluation.productsSeen';

type Meta = Pick<LeaseStore, 'getMeta' | 'setMeta'>;

export async function clockHighWater(store: Pick<LeaseStore, 'getMeta'>): Promise<number> {
  const v = Number((await store.getMeta(CLOCK_HIGH_WATER_META)) ?? 0);
  return Number.isFinite(v) ? v : 0;
}

/** The product names evaluation has granted leases for. */
export async function evaluationProductsSeen(store: Pick<LeaseStore, 'getMeta'>): Promise<string[]> {
  const text = await store.getMeta(EVALUATION_PRODUCTS_META);
  try {
    const list = JSON.parse(text ?? '[]') as unknown;
    return Array.isArray(list) ? list.filter((p): p is string => typeof p === 'string') : [];
  } catch {
    return [];
  }
}

/**
 * Notes a product name an evaluation lease was granted for; true the first
 * time it is seen (the server then warns: evaluation serves any name, so a
 * misspelt one goes unnoticed until a key is installed).
 */
export async function noteEvaluationProduct(store: Meta, product: string): Promise<boolean> {
  const seen = await evaluationProductsSeen(store);
  if (seen.includes(product)) return false;
  await store.setMeta(EVALUATION_PRODUCTS_META, JSON.stringify([...seen, product]));
  return true;
}

/**
 * The evaluation record kept outside the data directory (see
 * EvaluationRecordFile), read and written beside the data directory's own
 * meta: a new data directory on the same host takes the record's start, its
 * "a key was installed" and its clock high-water mark, so it continues the same
 * evaluation rather than starting a new one.
 */
export class EvaluationKeeper {
  /** Why the record cannot be trusted (edited, unreadable, not writable): evaluation is then over. */
  private brokenReason: string | null = null;

  constructor(
    readonly file: EvaluationRecordFile,
    private readonly store: Meta,
    private readonly logger: Logger | null = null,
  ) {}

  /** Why evaluation cannot be given on this record, or null. */
  broken(): string | null {
    return this.brokenReason;
  }

  /**
   * At server start, before the pools are decided: merges a valid record into
   * the data directory (the earlier start, a key installed, the later
   * high-water mark). A record made on another host is replaced; one edited or
   * unreadable ends evaluation until it is restored.
   */
  async adopt(): Promise<void> {
    const read = this.file.read();
    const where = this.file.file;
    if (read.state === 'absent') return;
    if (read.state === 'foreign') {
      this.logger?.warn({ file: where }, `the evaluation record ${where} is not this host's (${read.why}): a new one is made for this host`);
      return;
    }
    if (read.state === 'altered' || read.state === 'unreadable') {
      this.brokenReason = `the evaluation record ${where} ${read.state === 'altered' ? `was altered (${read.why})` : `cannot be read (${read.why})`}`;
      this.logger?.error({ file: where }, `${this.brokenReason}: evaluation is over on this server; restore the file from a backup, or install a license key`);
      return;
    }
    const { data } = read;
    const stored = await this.store.getMeta(EVALUATION_STARTED_META);
    if (stored === undefined || data.startedAt < Number(stored)) {
      await this.store.setMeta(EVALUATION_STARTED_META, String(data.startedAt));
      if (stored === undefined) {
        this.logger?.info({ file: where, startedAt: new Date(data.startedAt).toISOString() }, `the evaluation on this host started at ${new Date(data.startedAt).toISOString()} (recorded in ${where}): it continues, it does not start again`);
      }
    }
    if (data.keyInstalled !== null && (await this.store.getMeta(EVALUATION_CLOSED_META)) === undefined) await this.store.setMeta(EVALUATION_CLOSED_META, data.keyInstalled);
    if (data.highWater > (await clockHighWater(this.store))) await this.store.setMeta(CLOCK_HIGH_WATER_META, String(data.highWater));
    if (read.changed.length > 0) this.logger?.warn({ file: where, changed: read.changed }, `the evaluation record ${where}: host component(s) changed since it was made, tolerated: ${read.changed.join(', ')}`);
  }

  /**
   * Writes what the data directory now knows (after a start that succeeded,
   * when a key is installed, and with the clock's high-water mark). A record
   * that could not be trusted is left as it is. False when it cannot be written.
   */
  async save(endsAt: ((startedAt: number) => number) | null, now: number): Promise<boolean> {
    if (this.brokenReason !== null) return false;
    const started = await this.store.getMeta(EVALUATION_STARTED_META);
    const highWater = await clockHighWater(this.store);
    const keyInstalled = await this.store.getMeta(EVALUATION_CLOSED_META);
    const startedAt = started === undefined ? now : Number(started);
    const current = this.file.read();
    const previous = current.state === 'valid' ? current.data : null;
    if (current.state === 'altered' || current.state === 'unreadable') return false;
    const data: EvaluationRecordData = {
      startedAt: Math.min(startedAt, previous?.startedAt ?? Infinity),
      // Unknown to commands (license add): the end last recorded stays.
      endsAt: endsAt !== null ? endsAt(startedAt) : (previous?.endsAt ?? startedAt + BUILT_IN_EVALUATION.days * 86_400_000),
      highWater: Math.max(highWater, previous?.highWater ?? 0, now),
      keyInstalled: keyInstalled ?? previous?.keyInstalled ?? null,
    };
    try {
      this.file.write(data);
      return true;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.brokenReason = `the evaluation record ${this.file.file} cannot be written (${e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied' : e.message})`;
      return false;
    }
  }
}

/** Warns of each evaluation setting that asked for more than the terms allow (it was held to them). */
export function warnClampedTerms(logger: Logger, clamped: ReadonlyArray<{ setting: string; asked: number; limit: number; by: string }>): void {
  for (const c of clamped) {
    logger.warn({ setting: c.setting, asked: c.asked, limit: c.limit, by: c.by }, `setting ${c.setting} asks for ${c.asked}, above the limit of ${c.limit} set by the ${c.by}: held to ${c.limit}; settings may only lower the evaluation`);
  }
}

/**
 * The server's side of the record: saves it after a start, with the clock's
 * high-water mark while evaluating, and logs (once) when it cannot.
 */
export class ServerEvaluation {
  private reported = false;
  /** The note of an evaluation product in progress (see `granted`). */
  private noting: Promise<void> = Promise.resolve();

  constructor(
    readonly keeper: EvaluationKeeper,
    private readonly store: Meta,
    private readonly logger: Logger,
  ) {}

  /** The terms for deciding the pools: the settings' evaluation, ended when the record cannot be trusted. */
  terms(evaluation: { readonly seats: number; readonly days: number }): { seats: number; days: number; ended: string | null } {
    return { ...evaluation, ended: this.keeper.broken() };
  }

  /** Saves the record; `evaluating` says whether evaluation is what grants now (a failure is then an error). */
  async save(endsAt: (startedAt: number) => number, now: number, evaluating: boolean): Promise<void> {
    if ((await this.keeper.save(endsAt, now)) || this.reported) return;
    const why = this.keeper.broken();
    if (why === null) return;
    this.reported = true;
    const fields = { file: this.keeper.file.file };
    if (evaluating) this.logger.error(fields, `${why}: evaluation grants no seats without it; make the folder writable by the user floatd runs as, or set evaluation.stateDir (FLOATD_EVALUATION_STATE)`);
    else this.logger.warn(fields, `${why}; evaluation would need it`);
  }

  /** License keys found installed without a record of it (installed by an older version) end evaluation too. */
  async keysFound(ids: readonly string[], now: number): Promise<void> {
    if (ids.length === 0 || (await this.store.getMeta(EVALUATION_CLOSED_META)) !== undefined) return;
    await this.store.setMeta(EVALUATION_CLOSED_META, `license key ${ids[0]} was found installed at ${new Date(now).toISOString()}`);
  }

  /**
   * Notes the product of an evaluation lease; the first lease of each name is
   * warned of, as a misspelt name would be served too. Notes are taken one at
   * a time (each reads the list the one before wrote), so grants of two new
   * names at once both stay on it.
   */
  granted(product: string): Promise<void> {
    const note = this.noting.then(() => this.note(product));
    this.noting = note.catch(() => {});
    return note;
  }

  private async note(product: string): Promise<void> {
    if (!(await noteEvaluationProduct(this.store, product))) return;
    const seen = await evaluationProductsSeen(this.store);
    this.logger.warn(
      { product, productsSeen: seen },
      `evaluation granted its first lease for product "${product}": evaluation serves any product name, so check that it is spelt as your license keys will name it (products seen: ${seen.join(', ')})`,
    );
  }
}

/** The evaluation section of `status`: its terms, who set them, its dates and time left, the products it served. */
export interface EvaluationStatus {
  readonly seats: number;
  /** The period's length (with evaluation extension keys). */
  readonly days: number;
  readonly startedAt: string;
  readonly endsAt: string;
  readonly daysLeft: number;
  /** As people read it ("12 days", "5h 20m"), or "none" once evaluation ended for good. */
  readonly timeLeft: string;
  readonly expired: boolean;
  /** Why evaluation ended for good (a license key was installed), or null. */
  readonly endedForGood: string | null;
  /** Who set the seats and the days: built-in terms, the vendor's product file, a setting that lowered them, an extension key. */
  readonly setBy: { readonly seats: string; readonly days: string } | null;
  /** Product names evaluation leases were granted for, in the order first seen. */
  readonly productsSeen: readonly string[];
  /** The evaluation record outside the data directory. */
  readonly record: string | null;
  /** Where the vendor's product file asks for the evaluation to be registered: whether it is, and what to run if not. */
  readonly registration: { readonly registered: boolean; readonly id: string | null; readonly message: string | null } | null;
}

/** What the settings made of the evaluation, for status (recorded with the server's settings). */
export interface EvaluationSettingsView {
  readonly evaluation: { readonly seats: number; readonly days: number };
  readonly evaluationSetBy?: { readonly seats: string; readonly days: string };
  readonly evaluationStateDir?: string;
}

const DAY = 86_400_000;

export async function evaluationStatus(
  store: Pick<LeaseStore, 'getMeta'>,
  terms: { readonly seats: number; readonly periodMs: number; readonly startedAt: number; readonly unregistered?: string | null; readonly registration?: { readonly id: string | null } | null } | null,
  endedForGood: string | null,
  now: number,
  settings: EvaluationSettingsView | undefined,
): Promise<EvaluationStatus | null> {
  if (terms === null) return null;
  const productsSeen = await evaluationProductsSeen(store);
  const endsAt = terms.startedAt + terms.periodMs;
  const days = Math.round(terms.periodMs / DAY);
  const base = settings?.evaluationSetBy;
  const setBy =
    base === undefined || settings === undefined
      ? null
      : {
          seats: terms.seats > settings.evaluation.seats ? 'an evaluation extension key' : base.seats,
          days: days > settings.evaluation.days ? `${base.days}, extended by evaluation extension key(s) to ${days} day(s)` : base.days,
        };
  return {
    seats: terms.seats,
    days,
    startedAt: new Date(terms.startedAt).toISOString(),
    endsAt: new Date(endsAt).toISOString(),
    daysLeft: wholeDaysLeft(endsAt - now),
    timeLeft: endedForGood !== null ? 'none' : formatTimeLeft(endsAt - now),
    expired: endedForGood !== null || now >= endsAt,
    endedForGood,
    setBy,
    productsSeen,
    record: settings?.evaluationStateDir === undefined ? null : join(settings.evaluationStateDir, EVALUATION_RECORD_FILE),
    registration: terms.registration ? { registered: terms.registration.id !== null, id: terms.registration.id, message: terms.unregistered ?? null } : null,
  };
}
