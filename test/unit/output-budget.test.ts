import { describe, expect, it } from 'vitest';
import { OutputBudget } from '../../src/adapters/tcp/output-budget.js';

describe('OutputBudget', () => {
  it('blocks a connection holding more than its bound, and once paused until it drains to half of it', () => {
    const budget = new OutputBudget(1000, 1_000_000);
    const share = budget.share(() => {});
    share.account(1000);
    expect(share.blocked()).toBe(false);
    share.account(1001);
    expect(share.blocked()).toBe(true);
    expect(share.pause()).toBe(true);
    expect(share.pause()).toBe(false);
    expect(budget.pausedConnections).toBe(1);
    share.account(501);
    expect(share.blocked()).toBe(true);
    share.account(500);
    expect(share.blocked()).toBe(false);
    expect(share.resume()).toBe(true);
    expect(share.resume()).toBe(false);
    expect(budget.pausedConnections).toBe(0);
    // Not paused, the full bound applies again.
    share.account(900);
    expect(share.blocked()).toBe(false);
  });

  it('sums the shares, and counts the connections holding any', () => {
    const budget = new OutputBudget(1000, 1_000_000);
    const a = budget.share(() => {});
    const b = budget.share(() => {});
    a.account(300);
    b.account(200);
    expect(budget.unsentBytes).toBe(500);
    expect(budget.connectionsWithUnsent).toBe(2);
    a.account(100);
    expect(budget.unsentBytes).toBe(300);
    a.account(0);
    expect(budget.connectionsWithUnsent).toBe(1);
    expect(a.unsent).toBe(0);
    b.account(0);
    expect(budget.unsentBytes).toBe(0);
    expect(budget.connectionsWithUnsent).toBe(0);
  });

  it('past the total, blocks every connection holding any bytes (and only those), and wakes the paused ones when it falls back under', () => {
    const budget = new OutputBudget(1000, 1500);
    const woken: string[] = [];
    const a = budget.share(() => woken.push('a'));
    const b = budget.share(() => woken.push('b'));
    const c = budget.share(() => woken.push('c'));
    a.account(800);
    b.account(800);
    expect(budget.unsentBytes).toBe(1600);
    expect(a.blocked()).toBe(true);
    expect(b.blocked()).toBe(true);
    expect(c.blocked()).toBe(false);
    a.pause();
    b.pause();
    expect(woken).toEqual([]);
    a.account(700);
    expect(budget.unsentBytes).toBe(1500);
    expect(woken).toEqual(['a', 'b']);
    expect(a.blocked()).toBe(true); // 700 > 1000 / 2 while paused
    expect(b.blocked()).toBe(true);
    b.account(400);
    expect(b.blocked()).toBe(false);
    b.resume();
    // Over the total again: a resumed connection is not woken until it pauses again.
    woken.length = 0;
    b.account(900);
    b.account(100);
    expect(woken).toEqual(['a']);
  });
});
