import type { LeaseEventInput } from '../../domain/events.js';
import type { AdminToken } from '../../domain/ports.js';
import type { SqliteConnection } from './connection.js';

/** The admin API's bearer tokens, kept only as hashes; every change is a lease-log entry. Synchronous: SqliteLeaseStore answers the AdminTokenStore port with it. */
export class SqliteAdminTokens {
  constructor(private readonly c: SqliteConnection) {}

  listAdminTokens(): AdminToken[] {
    return this.c.guard(() => this.c.db.prepare<[], { name: string; created_at: number }>('SELECT name, created_at FROM admin_tokens ORDER BY name').all().map((r) => ({ name: r.name, createdAt: r.created_at })));
  }

  adminTokenByHash(hash: string): string | undefined {
    return this.c.guard(() => this.c.db.prepare<[string], { name: string }>('SELECT name FROM admin_tokens WHERE hash = ?').get(hash)?.name);
  }

  /** Adds a token (or, with `replace`, gives a name a new one) and records it in the lease log, in one transaction. */
  putAdminToken(name: string, hash: string, replace: boolean, event: LeaseEventInput): boolean {
    return this.c.write(() => {
      const sql = replace
        ? 'INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at'
        : 'INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING';
      const added = this.c.db.prepare<[string, string, number]>(sql).run(name, hash, event.ts).changes > 0;
      if (added) this.c.appendEvent(event);
      return added;
    });
  }

  removeAdminToken(name: string, event: LeaseEventInput): boolean {
    return this.c.write(() => {
      const removed = this.c.db.prepare<[string]>('DELETE FROM admin_tokens WHERE name = ?').run(name).changes > 0;
      if (removed) this.c.appendEvent(event);
      return removed;
    });
  }
}
