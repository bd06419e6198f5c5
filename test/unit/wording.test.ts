import { describe, expect, it } from 'vitest';
import { formatTimeLeft, plural, wholeDaysLeft } from '../../src/domain/wording.js';

const MIN = 60_000;
const DAY = 86_400_000;

describe('time left and counts as people read them', () => {
  it('shows hours and minutes under a day, whole days from a day on, never more days than are left', () => {
    expect(formatTimeLeft(12 * MIN)).toBe('12m');
    expect(formatTimeLeft((5 * 60 + 12) * MIN)).toBe('5h 12m');
    expect(formatTimeLeft(3 * 60 * MIN)).toBe('3h');
    expect(formatTimeLeft(40_000)).toBe('40s');
    expect(formatTimeLeft(11 * MIN + 1)).toBe('12m');
    expect(formatTimeLeft(DAY - 1)).toBe('1 day');
    expect(formatTimeLeft(DAY + 5 * 60 * MIN)).toBe('1 day');
    expect(formatTimeLeft(2 * DAY - MIN)).toBe('1 day');
    expect(formatTimeLeft(30 * DAY - 5)).toBe('30 days');
    expect(formatTimeLeft(0)).toBe('none');
    expect(formatTimeLeft(-DAY)).toBe('none');
  });

  it('counts whole days left: 0 under a day, a fresh 30-day term 30', () => {
    expect(wholeDaysLeft(12 * MIN)).toBe(0);
    expect(wholeDaysLeft(DAY + 2000)).toBe(1);
    expect(wholeDaysLeft(30 * DAY - 5)).toBe(30);
    expect(wholeDaysLeft(-5)).toBe(0);
  });

  it('puts a noun in the number its count needs', () => {
    expect(plural(1, 'entry', 'entries')).toBe('1 entry');
    expect(plural(0, 'entry', 'entries')).toBe('0 entries');
    expect(plural(2, 'day')).toBe('2 days');
  });
});
