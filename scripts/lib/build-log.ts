/**
 * Builds a large, realistic lease log in a fresh data directory, for benchmarks
 * of the commands that read it (`floatd log verify`, `floatd report`).
 *
 * A seeded simulation of users taking, renewing, releasing and losing seats of
 * a few products over months (busier on weekday working hours, so pools fill
 * up and requests are denied), written through the store's own appendEvent in
 * group commits: the entries are hash-chained and checkpointed exactly as a
 * running server records them. The same seed gives the same log.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Floatd } from '../../src/app/floatd.js';
import { openLogWriter } from '../../src/app/lease-log.js';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import type { LeaseEventInput } from '../../src/domain/events.js';

export interface BuildLogOptions {
  /** Entries to write (default 1,000,000). */
  readonly entries?: number;
  /** The data directory to create (default: a new temp directory). */
  readonly dataDir?: string;
  /** Products and their seats (default cad: 20, sim: 5, viewer: 50). */
  readonly products?: ReadonlyArray<{ readonly product: string; readonly seats: number }>;
  /** Distinct users, each on one host and instance (default 120). */
  readonly users?: number;
  /** Time of the first entry (default 2026-01-01T00:00Z). */
  readonly startMs?: number;
  /** Mean time between simulated moments, in ms (default 20 s). */
  readonly stepMs?: number;
  /** Lease length in ms (default 30 minutes). */
  readonly leaseMs?: number;
  /** Seed of the simulation (default 1). */
  readonly seed?: number;
  /** Called every 100,000 entries. */
  readonly progress?: (written: number) => void;
}

export interface BuiltLog {
  readonly dataDir: string;
  readonly config: Config;
  readonly entries: number;
  /** Time of the first and the last entry. */
  readonly fromMs: number;
  readonly toMs: number;
  readonly products: ReadonlyArray<{ readonly product: string; readonly poolId: string; readonly seats: number }>;
}

/** A small, fast, seeded generator (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Held {
  readonly id: string;
  readonly product: number;
  expiresAt: number;
}

const WORK_START_H = 8;
const WORK_END_H = 18;

export async function buildLog(opts: BuildLogOptions = {}): Promise<BuiltLog> {
  const entries = opts.entries ?? 1_000_000;
  const dataDir = opts.dataDir ?? join(mkdtempSync(join(tmpdir(), 'floatd-log-')), 'data');
  const products = (opts.products ?? [
    { product: 'cad', seats: 20 },
    { product: 'sim', seats: 5 },
    { product: 'viewer', seats: 50 },
  ]).map((p) => ({ ...p, poolId: `key-${p.product}` }));
  const users = opts.users ?? 120;
  const stepMs = opts.stepMs ?? 20_000;
  const leaseMs = opts.leaseMs ?? 30 * 60_000;
  const rnd = random(opts.seed ?? 1);
  const config = loadConfig({ env: {}, cwd: tmpdir(), flags: { dataDir, listeners: ['127.0.0.1:0'], 'http.listen': [], 'log.level': 'silent', 'leaseLog.retentionDays': 0 } });
  // The data directory as a first `floatd serve` leaves it: database and server key.
  await (await Floatd.create(config, { logger: silentLogger() })).stop();

  const writer = await openLogWriter(config);
  const held = new Map<number, Held>();
  const inUse = products.map(() => 0);
  let t = opts.startMs ?? Date.UTC(2026, 0, 1);
  const fromMs = t;
  let written = 0;
  let batch: LeaseEventInput[] = [];
  const hex = () => Math.floor(rnd() * 0x100000000).toString(16).padStart(8, '0');
  const who = (u: number) => ({ user: `user${u}`, host: `host${u % 40}`, instance: `user${u}-1`, remote: `10.0.${u % 250}.${(u * 7) % 250}`, listener: 'tcp' });
  const emit = (e: LeaseEventInput) => {
    batch.push(e);
    written++;
    if (batch.length >= 10_000) {
      writer.append(batch);
      batch = [];
    }
    if (written % 100_000 === 0) opts.progress?.(written);
  };
  const end = (u: number, h: Held, event: 'released' | 'expired', at: number) => {
    held.delete(u);
    inUse[h.product]!--;
    const p = products[h.product]!;
    emit({ ts: at, event, ...who(u), product: p.product, poolId: p.poolId, leaseId: h.id, seatsInUse: inUse[h.product]!, seatsTotal: p.seats, message: event === 'expired' ? `lease not renewed by ${new Date(h.expiresAt).toISOString()}` : null });
  };

  emit({ ts: t, event: 'server-started' });
  while (written < entries) {
    t += Math.max(1, Math.round(-Math.log(1 - rnd()) * stepMs));
    const date = new Date(t);
    const hour = date.getUTCHours();
    const working = date.getUTCDay() >= 1 && date.getUTCDay() <= 5 && hour >= WORK_START_H && hour < WORK_END_H;
    const u = Math.floor(rnd() * users);
    const h = held.get(u);
    if (h !== undefined) {
      const p = products[h.product]!;
      if (h.expiresAt <= t) end(u, h, 'expired', t);
      else if (rnd() < (working ? 0.75 : 0.3)) {
        h.expiresAt = t + leaseMs;
        emit({ ts: t, event: 'renewed', ...who(u), product: p.product, poolId: p.poolId, leaseId: h.id, seatsInUse: inUse[h.product]!, seatsTotal: p.seats });
      } else end(u, h, 'released', t);
      continue;
    }
    if (!working && rnd() < 0.9) continue;
    // Most users want the first product; a few ask for the rest.
    const r = rnd();
    const pi = r < 0.6 ? 0 : r < 0.8 ? 1 : Math.min(2, products.length - 1) % products.length;
    const p = products[pi]!;
    if (rnd() < 0.002) {
      emit({ ts: t, event: 'denied', ...who(u), product: p.product, code: 'RULE_DENIED', reason: 'EXCLUDE', message: `user user${u} may not use ${p.product}` });
    } else if (inUse[pi]! < p.seats) {
      inUse[pi]!++;
      const lease: Held = { id: `${hex()}-${hex().slice(0, 4)}-4${hex().slice(0, 3)}-8${hex().slice(0, 3)}-${hex()}${hex().slice(0, 4)}`, product: pi, expiresAt: t + leaseMs };
      held.set(u, lease);
      emit({ ts: t, event: 'granted', ...who(u), product: p.product, poolId: p.poolId, leaseId: lease.id, seatsInUse: inUse[pi]!, seatsTotal: p.seats });
    } else {
      emit({ ts: t, event: 'denied', ...who(u), product: p.product, poolId: p.poolId, code: 'NO_FREE_SEATS', message: `all ${p.seats} seat(s) of "${p.product}" are in use`, seatsInUse: inUse[pi]!, seatsTotal: p.seats });
    }
  }
  if (batch.length > 0) writer.append(batch);
  writer.close();
  return { dataDir, config, entries: written, fromMs, toMs: t, products };
}
