import { describe, expect, it } from 'vitest';
import { Jobs, type Job } from '../../src/app/jobs.js';
import { SingleNode } from '../../src/adapters/store/single-node.js';
import { FakeClock } from '../support/fake-clock.js';
import { silentLogger } from '../../src/adapters/log/logger.js';

function scheduler(fault: () => string | null = () => null) {
  const clock = new FakeClock(1_000_000);
  const jobs = new Jobs(clock, new SingleNode('n1'), { fault, failed: (err) => (String(err).includes('storage') ? err : null) }, silentLogger());
  return { clock, jobs };
}

describe('the jobs table', () => {
  it('runs each job on its period, the first run after firstAfterMs', () => {
    const { clock, jobs } = scheduler();
    const runs: string[] = [];
    jobs.start([
      { name: 'tick', everyMs: 1000, run: () => void runs.push(`tick@${clock.now() - 1_000_000}`), failure: 'tick failed' },
      { name: 'hourly', everyMs: 3_600_000, firstAfterMs: 0, run: () => void runs.push(`hourly@${clock.now() - 1_000_000}`), failure: 'hourly failed' },
    ]);
    clock.advance(3000);
    expect(runs).toEqual(['hourly@0', 'tick@1000', 'tick@2000', 'tick@3000']);
  });

  it('never overlaps runs of one job: turns that come while it runs fold into one more run after it', async () => {
    const { clock, jobs } = scheduler();
    let running = 0;
    let most = 0;
    let runs = 0;
    let release: () => void = () => {};
    const job: Job = {
      name: 'slow',
      everyMs: 1000,
      run: async () => {
        runs++;
        running++;
        most = Math.max(most, running);
        await new Promise<void>((r) => (release = r));
        running--;
      },
      failure: 'slow failed',
    };
    jobs.start([job]);
    clock.advance(5000);
    expect(runs).toBe(1);
    release();
    await new Promise((r) => setImmediate(r));
    expect(runs).toBe(2);
    release();
    await new Promise((r) => setImmediate(r));
    expect(runs).toBe(2);
    expect(most).toBe(1);
    await jobs.stop();
  });

  it('skips a storage job during a storage fault, and keeps running the others', () => {
    let fault: string | null = 'disk-full';
    const { clock, jobs } = scheduler(() => fault);
    const runs: string[] = [];
    jobs.start([
      { name: 'checkpoint', everyMs: 1000, storage: true, run: () => void runs.push('checkpoint'), failure: 'checkpoint failed' },
      { name: 'tls', everyMs: 1000, run: () => void runs.push('tls'), failure: 'tls failed' },
    ]);
    clock.advance(1000);
    fault = null;
    clock.advance(1000);
    expect(runs).toEqual(['tls', 'checkpoint', 'tls']);
  });

  it('keeps running a job after it fails, and runs nothing after stop', async () => {
    const { clock, jobs } = scheduler();
    let runs = 0;
    jobs.start([{ name: 'flaky', everyMs: 1000, once: true, run: () => { runs++; throw new Error('boom'); }, failure: 'flaky failed' }]);
    clock.advance(2000);
    await new Promise((r) => setImmediate(r));
    expect(runs).toBe(2);
    await jobs.stop();
    clock.advance(5000);
    expect(runs).toBe(2);
  });
});
