import { describe, expect, it } from 'vitest';
import { FairQueue, type Waiting } from '../../src/adapters/tcp/fair-queue.js';

/** A queue whose rounds run when the test says, on a clock the connections move. */
function harness(budgetMs = 3) {
  const scheduled: Array<() => void> = [];
  let now = 0;
  const queue = new FairQueue({ requestsPerTurn: 4, budgetMs, schedule: (fn) => scheduled.push(fn), now: () => now });
  const served: string[] = [];
  /** A connection with `requests` waiting, whose every request takes `costMs`. */
  const peer = (name: string, requests: number, costMs = 0): Waiting & { left: number } => {
    const p = {
      left: requests,
      serve(max: number): boolean {
        const n = Math.min(max, p.left);
        p.left -= n;
        now += n * costMs;
        served.push(`${name}${n}`);
        return p.left > 0;
      },
    };
    return p;
  };
  const runRound = () => scheduled.shift()!();
  return { queue, scheduled, served, peer, runRound };
}

describe('FairQueue', () => {
  it('serves the waiting connections a few requests each, in turn, until none has more', () => {
    const h = harness(1000);
    const a = h.peer('a', 10);
    const b = h.peer('b', 3);
    h.queue.wait(a);
    h.queue.wait(b);
    expect(h.scheduled).toHaveLength(1);
    h.runRound();
    expect(h.served).toEqual(['a4', 'b3', 'a4', 'a2']);
    expect(h.queue.size).toBe(0);
    expect(h.scheduled).toHaveLength(0);
  });

  it('schedules one round however often connections ask, and keeps a connection in its place', () => {
    const h = harness(1000);
    const a = h.peer('a', 1);
    const b = h.peer('b', 1);
    h.queue.wait(a);
    h.queue.wait(b);
    h.queue.wait(a);
    expect(h.scheduled).toHaveLength(1);
    expect(h.queue.size).toBe(2);
    h.runRound();
    expect(h.served).toEqual(['a1', 'b1']);
  });

  it('stops a round when its time is spent and goes on in the next, where it left off', () => {
    const h = harness(3);
    const a = h.peer('a', 8, 1);
    const b = h.peer('b', 8, 1);
    h.queue.wait(a);
    h.queue.wait(b);
    h.runRound();
    expect(h.served).toEqual(['a4']);
    expect(h.scheduled).toHaveLength(1);
    h.runRound();
    expect(h.served).toEqual(['a4', 'b4']);
    h.runRound();
    h.runRound();
    expect(h.served).toEqual(['a4', 'b4', 'a4', 'b4']);
    expect(h.scheduled).toHaveLength(0);
  });

  it('forgets a connection removed (closed) before its turn', () => {
    const h = harness(1000);
    const a = h.peer('a', 4);
    const b = h.peer('b', 4);
    h.queue.wait(a);
    h.queue.wait(b);
    h.queue.remove(a);
    h.runRound();
    expect(h.served).toEqual(['b4']);
  });

  it('a connection that asks again while it is being served is served again in the same round', () => {
    const h = harness(1000);
    let again = true;
    const a: Waiting = {
      serve: () => {
        h.served.push('a');
        if (again) {
          again = false;
          h.queue.wait(a);
        }
        return false;
      },
    };
    h.queue.wait(a);
    h.runRound();
    expect(h.served).toEqual(['a', 'a']);
  });
});
