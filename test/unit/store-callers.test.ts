import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { evaluationKeeper } from '../../src/app/data-dir.js';
import { evaluationProductsSeen, ServerEvaluation } from '../../src/app/evaluation.js';
import { RUNTIME_META, RuntimeRecord } from '../../src/app/runtime-record.js';
import { StatusView } from '../../src/app/status-view.js';
import { Sweeper } from '../../src/app/sweeper.js';
import type { ServerStatus } from '../../src/app/status.js';
import { FakeLeaseStore } from '../support/fake-lease-store.js';
import { FakeClock, tempDir } from '../support/helpers.js';

const macrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Callers of the store's asynchronous port that read and then write, or read for many at once. */
describe('callers of the asynchronous store', () => {
  it('notes two products an evaluation served at once both, and warns of each once, over a store that answers late', async () => {
    const store = new FakeLeaseStore({ networked: true });
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const evaluation = new ServerEvaluation(evaluationKeeper(store, tempDir(), '/'), store, logger);
    // Each note reads the list and writes it back: without taking turns, the second would write over the first.
    await Promise.all([evaluation.granted('cad'), evaluation.granted('viewer'), evaluation.granted('cad')]);
    expect(await evaluationProductsSeen(store)).toEqual(['cad', 'viewer']);
    expect(lines.map((l) => l['product'])).toEqual(['cad', 'viewer']);
  });

  it('leaves the runtime record as last asked, whichever write the store answers first', async () => {
    const written: string[] = [];
    let first = true;
    const store = {
      async setMeta(key: string, value: string): Promise<void> {
        // The first write is slow (a busy network), the later ones quick.
        if (first) {
          first = false;
          for (let i = 0; i < 5; i++) await macrotask();
        }
        written.push(`${key}=${value}`);
      },
    };
    const record = new RuntimeRecord(store, () => [], () => 'no rules');
    record.startedAt = 1;
    await Promise.all([record.record(), record.clear()]);
    expect(written).toHaveLength(2);
    expect(written.at(-1)).toBe(`${RUNTIME_META}=`);
  });

  it('computes status once for the reads that come while it is computed, and again after a change during it', async () => {
    const clock = new FakeClock();
    let computed = 0;
    const releases: Array<() => void> = [];
    const view = new StatusView(clock, () => {
      computed++;
      const n = computed;
      return new Promise<ServerStatus>((resolve) => releases.push(() => resolve({ leasesHeld: n } as unknown as ServerStatus)));
    });
    const a = view.current();
    const b = view.current();
    expect(computed).toBe(1);
    view.changed();
    const c = view.current();
    expect(computed).toBe(2);
    for (const release of releases) release();
    expect((await a).leasesHeld).toBe(1);
    expect((await b).leasesHeld).toBe(1);
    expect((await c).leasesHeld).toBe(2);
    // The newer snapshot stays: a read now needs no computation.
    expect((await view.current()).leasesHeld).toBe(2);
    expect(computed).toBe(2);
  });

  it('wakes the sweeper at the expiry the store answers late, unless a lease granted meanwhile expires sooner', async () => {
    const clock = new FakeClock();
    const sweeps: number[] = [];
    const reads: Array<(at: number | undefined) => void> = [];
    const sweeper = new Sweeper(
      clock,
      async () => void sweeps.push(clock.monotonic()),
      () => new Promise<number | undefined>((resolve) => reads.push(resolve)),
      (err) => {
        throw err;
      },
      60_000,
    );
    sweeper.start();
    expect(sweeps).toEqual([0]);
    // A lease granted while the store is still asked: it expires at 100.
    sweeper.expiryAt(clock.now() + 100);
    reads.shift()!(clock.now() + 5000);
    await macrotask();
    clock.advance(100);
    expect(sweeps).toEqual([0, 100]);
    // The store answers 300 from now; no lease is granted meanwhile: the sweeper wakes then, not at its 60 s limit.
    reads.shift()!(clock.now() + 300);
    await macrotask();
    clock.advance(299);
    expect(sweeps).toEqual([0, 100]);
    clock.advance(1);
    expect(sweeps).toEqual([0, 100, 400]);
    // No lease at all: the 60 s limit.
    reads.shift()!(undefined);
    await macrotask();
    clock.advance(59_999);
    expect(sweeps).toEqual([0, 100, 400]);
    clock.advance(1);
    expect(sweeps).toEqual([0, 100, 400, 60_400]);
    sweeper.stop();
  });
});
