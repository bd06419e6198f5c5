import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { StorageHealth } from '../../src/app/storage-health.js';
import { FloatdError } from '../../src/domain/errors.js';
import { FakeClock } from '../support/fake-clock.js';

function setup() {
  const clock = new FakeClock();
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  const storage = { full: true, probes: 0 };
  const counted: Array<[string, number]> = [];
  const health = new StorageHealth(
    clock,
    logger,
    () => {
      storage.probes++;
      if (storage.full) throw full();
    },
    (reason, n) => counted.push([reason, n]),
  );
  return { clock, lines, storage, health, counted };
}

const full = () => new FloatdError('UNAVAILABLE', 'storage unavailable: the disk holding the database is full (x.db: database or disk is full, SQLITE_FULL)', { reason: 'disk-full', sqliteCode: 'SQLITE_FULL' });

describe('StorageHealth', () => {
  it('one error line per episode; refuses at once between attempts; a committed batch ends it only if the probe can write; one warning with the count', () => {
    const { clock, lines, storage, health, counted } = setup();
    expect(health.refuse(5)).toBeNull();
    const answer = health.failed(full(), 5);
    expect(answer).toMatchObject({ code: 'UNAVAILABLE', details: { reason: 'disk-full', retryAfterMs: 1000 } });
    expect(answer!.message).not.toContain('x.db');
    expect(health.fault()).toBe('disk-full');
    // Within the second: answered at once, counted, not logged.
    for (let i = 0; i < 100; i++) expect(health.refuse(3)).toMatchObject({ code: 'UNAVAILABLE' });
    clock.advance(500);
    expect(health.refuse(1)!.details.retryAfterMs).toBe(500);
    // A batch that wrote nothing commits on a full disk too: not proof, the probe says no.
    health.succeeded();
    expect(health.fault()).toBe('disk-full');
    expect(storage.probes).toBe(1);
    storage.full = false;
    // A second later one real attempt goes through.
    clock.advance(1000);
    expect(health.refuse(2)).toBeNull();
    health.succeeded();
    expect(health.fault()).toBeNull();
    expect(lines.filter((l) => l['level'] === 50)).toHaveLength(1);
    const end = lines.filter((l) => l['level'] === 40);
    expect(end).toHaveLength(1);
    expect(end[0]).toMatchObject({ reason: 'disk-full', failed: 5 + 300 + 1, seconds: 1.5 });
    expect(counted.reduce((n, [, k]) => n + k, 0)).toBe(306);
  });

  it('probes every second without traffic and ends the episode when a write works; other errors are none of its business', () => {
    const { clock, lines, storage, health } = setup();
    expect(health.failed(new Error('a bug'), 1)).toBeNull();
    expect(health.fault()).toBeNull();
    health.failed(full(), 1);
    clock.advance(1000);
    clock.advance(1000);
    expect(storage.probes).toBe(2);
    expect(health.fault()).toBe('disk-full');
    storage.full = false;
    clock.advance(1000);
    expect(health.fault()).toBeNull();
    expect(lines.map((l) => l['level'])).toEqual([50, 40]);
    clock.advance(5000);
    expect(storage.probes).toBe(3);
    health.stop();
  });
});
