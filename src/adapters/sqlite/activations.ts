import type { LeaseEventInput } from '../../domain/events.js';
import type { StoredActivation, StoredActivationRequest } from '../../domain/ports.js';
import type { SqliteConnection } from './connection.js';
import { toActivation, type ActivationRow } from '../store/rows.js';

/** The activations table and the offline activation requests (migrations add both); every change of an activation is a lease-log entry. Synchronous: SqliteLeaseStore answers the ActivationStore port with it. */
export class SqliteActivations {
  constructor(private readonly c: SqliteConnection) {}

  listActivations(): StoredActivation[] {
    return this.c.guard(() => this.c.db.prepare<[], ActivationRow>('SELECT * FROM activations ORDER BY key_id').all().map(toActivation));
  }

  getActivation(keyId: string): StoredActivation | undefined {
    const row = this.c.guard(() => this.c.db.prepare<[string], ActivationRow>('SELECT * FROM activations WHERE key_id = ?').get(keyId));
    return row === undefined ? undefined : toActivation(row);
  }

  putActivation(a: StoredActivation, consumeNonce: string | null, event: LeaseEventInput): boolean {
    const { db } = this.c;
    return this.c.write(() => {
      if (consumeNonce !== null) {
        const consumed = db.prepare<[number, string]>('UPDATE activation_requests SET consumed_at = ? WHERE nonce = ? AND consumed_at IS NULL').run(event.ts, consumeNonce);
        if (consumed.changes === 0) return false;
      }
      db.prepare(
        `INSERT INTO activations (key_id, activation_id, token, source, url, activated_at, validated_at) VALUES (@keyId, @activationId, @token, @source, @url, @activatedAt, @validatedAt)
         ON CONFLICT (key_id) DO UPDATE SET activation_id = excluded.activation_id, token = excluded.token, source = excluded.source, url = excluded.url, activated_at = excluded.activated_at, validated_at = excluded.validated_at`,
      ).run(a);
      this.c.appendEvent(event);
      return true;
    });
  }

  revalidated(keyId: string, token: string, at: number): void {
    this.c.guard(() => this.c.db.prepare<[string, number, string]>('UPDATE activations SET token = ?, validated_at = ? WHERE key_id = ?').run(token, at, keyId));
  }

  removeActivation(keyId: string, event: LeaseEventInput): boolean {
    return this.c.write(() => {
      const removed = this.c.db.prepare<[string]>('DELETE FROM activations WHERE key_id = ?').run(keyId).changes > 0;
      if (removed) this.c.appendEvent(event);
      return removed;
    });
  }

  addActivationRequest(nonce: string, keyId: string, kind: 'activation' | 'deactivation', createdAt: number): void {
    this.c.guard(() => this.c.db.prepare<[string, string, string, number]>('INSERT INTO activation_requests (nonce, key_id, kind, created_at) VALUES (?, ?, ?, ?)').run(nonce, keyId, kind, createdAt));
  }

  findActivationRequest(nonce: string): StoredActivationRequest | undefined {
    const row = this.c.guard(() => this.c.db
      .prepare<[string], { key_id: string; kind: 'activation' | 'deactivation'; created_at: number; consumed_at: number | null }>('SELECT key_id, kind, created_at, consumed_at FROM activation_requests WHERE nonce = ?')
      .get(nonce));
    return row === undefined ? undefined : { keyId: row.key_id, kind: row.kind, createdAt: row.created_at, consumedAt: row.consumed_at };
  }
}
