import { closeCommandStore, openCommandStore } from '../app/stores.js';
import { FloatdError } from '../domain/errors.js';
import { CONFIG_FLAGS, configFrom, parse, type Io } from './common.js';

export const HA_USAGE = `floatd ha verify [--duration 60s] [--interval 100ms] [--json]
    samples every pool's running leases in the cluster's database (the store
    settings: store.url…) for the duration of a drill (a node killed, the
    database failed over) and fails if any pool ever ran more than its seats`;

/** "60s", "2m", "500ms", "1h": a span in milliseconds. */
function spanFlag(value: string | undefined, name: string, fallbackMs: number, minMs: number): number {
  if (value === undefined) return fallbackMs;
  const m = /^(\d+)(ms|s|m|h)$/.exec(value.trim());
  if (m === null) throw new FloatdError('USAGE', `--${name} takes a span such as 500ms, 60s, 5m or 1h; got "${value}"`);
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  if (ms < minMs) throw new FloatdError('USAGE', `--${name} must be at least ${minMs} ms; got "${value}"`);
  return ms;
}

interface PoolWatch {
  seats: number;
  most: number;
  over: number;
}

/** floatd ha verify: the no-over-grant checker an operator runs beside a failover drill. */
export async function ha(args: string[], io: Io): Promise<number> {
  if (args[0] !== 'verify') throw new FloatdError('USAGE', `floatd ha: unknown subcommand${args[0] === undefined ? '' : ` "${args[0]}"`}\n${HA_USAGE}`);
  const { values } = parse(args.slice(1), { ...CONFIG_FLAGS, duration: { type: 'string' }, interval: { type: 'string' }, json: { type: 'boolean' } });
  const durationMs = spanFlag(values.duration, 'duration', 60_000, 1);
  const intervalMs = spanFlag(values.interval, 'interval', 100, 10);
  const config = configFrom(io, values);
  if (config.store.kind !== 'postgres') throw new FloatdError('USAGE', 'floatd ha verify checks a cluster: set store.kind postgres and store.url (one SQLite server has nothing to fail over)');
  const store = await openCommandStore(config, 'read');
  const pools = new Map<string, PoolWatch>();
  let samples = 0;
  let unreachable = 0;
  try {
    if (store.kind !== 'postgres') throw new FloatdError('INTERNAL', 'not a cluster store');
    const end = performance.now() + durationMs;
    while (performance.now() < end) {
      try {
        for (const s of await store.seatSample()) {
          const w = pools.get(s.pool) ?? { seats: s.seats, most: 0, over: 0 };
          w.seats = s.seats;
          w.most = Math.max(w.most, s.running);
          if (s.running > s.seats) w.over++;
          pools.set(s.pool, w);
        }
        samples++;
      } catch {
        // The database is failing over: the drill goes on; these samples are counted as missed.
        unreachable++;
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  } finally {
    await closeCommandStore(store);
  }
  const overGranted = [...pools].filter(([, w]) => w.over > 0);
  if (values.json) {
    io.out(JSON.stringify({ ok: overGranted.length === 0, samples, unreachable, pools: [...pools].map(([pool, w]) => ({ pool, seats: w.seats, mostRunning: w.most, samplesOver: w.over })) }));
    return overGranted.length === 0 ? 0 : 1;
  }
  for (const [pool, w] of pools) io.out(`${pool}: at most ${w.most} of ${w.seats} seat(s) running${w.over > 0 ? ` — OVER-GRANTED in ${w.over} sample(s)` : ''}`);
  io.out(`${samples} sample(s) over ${durationMs / 1000} s${unreachable > 0 ? `, ${unreachable} missed while the database did not answer` : ''}`);
  if (overGranted.length > 0) {
    io.err(`floatd ha verify: OVER-GRANT: ${overGranted.map(([p, w]) => `pool ${p} ran ${w.most} leases for ${w.seats} seats`).join('; ')}`);
    return 1;
  }
  io.out('OK: no pool ever ran more leases than its seats');
  return 0;
}
