/** How floatd words counts and times for people: pure, shared by the CLI, the logs and the status. */

const MINUTE_MS = 60_000;
const MINUTES_A_DAY = 1440;

/** "1 entry", "2 entries", "0 keys": a count with its noun in the right number. */
export function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** Whole minutes left, rounded up (so a fresh 30-day term is 30 days, not 29 days 23 h 59 min). */
function minutesLeft(ms: number): number {
  return Math.max(0, Math.ceil(ms / MINUTE_MS));
}

/** Whole days left (0 under a day), counted on minutes rounded up, as `formatTimeLeft` shows them. */
export function wholeDaysLeft(ms: number): number {
  return Math.floor(minutesLeft(ms) / MINUTES_A_DAY);
}

/**
 * Time left as people read it: "12 days", "1 day" from a day on; under a day
 * hours and minutes ("5h 12m", "3h", "12m"); under a minute seconds ("40s");
 * "none" once it is over. Never more days than are left: a key expiring in
 * minutes shows those minutes, not "1 day".
 */
export function formatTimeLeft(ms: number): string {
  if (ms <= 0) return 'none';
  if (ms < MINUTE_MS) return `${Math.ceil(ms / 1000)}s`;
  const minutes = minutesLeft(ms);
  if (minutes >= MINUTES_A_DAY) return plural(Math.floor(minutes / MINUTES_A_DAY), 'day');
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  if (hours === 0) return `${rest}m`;
  return rest === 0 ? `${hours}h` : `${hours}h ${rest}m`;
}
