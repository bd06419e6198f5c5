import { describe, expect, it } from 'vitest';
import { DashboardSessions, SESSION_ABSOLUTE_MS, SESSION_IDLE_MS } from '../../src/adapters/http/dashboard-sessions.js';

describe('dashboard sessions', () => {
  it('gives a random 32-byte id, ends a session when idle, twelve hours after sign-in, at sign-out, and when its token is revoked', async () => {
    let now = 1_000;
    const sessions = new DashboardSessions(() => now);
    let valid = true;
    const a = sessions.open('token:local', async () => valid);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(sessions.open('token:local', async () => true)).not.toBe(a);
    expect(await sessions.actorOf(a)).toBe('token:local');
    expect(await sessions.actorOf('made-up')).toBeNull();

    // Used every hour: alive until the absolute limit.
    for (let t = 0; t + 3600_000 < SESSION_ABSOLUTE_MS; t += 3600_000) {
      now += 3600_000;
      expect(await sessions.actorOf(a)).toBe('token:local');
    }
    now = 1_000 + SESSION_ABSOLUTE_MS;
    expect(await sessions.actorOf(a)).toBeNull();

    const b = sessions.open('token:ops', async () => true);
    now += SESSION_IDLE_MS - 1;
    expect(await sessions.actorOf(b)).toBe('token:ops');
    now += SESSION_IDLE_MS;
    expect(await sessions.actorOf(b)).toBeNull();

    const c = sessions.open('token:ops', async () => valid);
    sessions.close(c);
    expect(await sessions.actorOf(c)).toBeNull();

    const d = sessions.open('token:ops', async () => valid);
    valid = false;
    expect(await sessions.actorOf(d)).toBeNull();
    valid = true;
    expect(await sessions.actorOf(d)).toBeNull();
  });
});
