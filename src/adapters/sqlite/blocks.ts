import type Database from 'better-sqlite3';
import type { Block } from '../../domain/blocks.js';
import { toBlock, type BlockRow } from '../store/rows.js';

/** The blocks table (migration 006): holders kept out after a revoke. Runs inside the store's transactions. */
export function blockStatements(db: Database.Database) {
  const active = db.prepare<[string, string, number, string], BlockRow>(
    "SELECT * FROM blocks WHERE user = ? AND product = ? AND until > ? AND (scope = 'user' OR instance = ?) ORDER BY until DESC LIMIT 1",
  );
  const insert = db.prepare(
    `INSERT INTO blocks (id, scope, user, instance, product, created_at, until, reason, actor, lease_id)
     VALUES (@id, @scope, @user, @instance, @product, @createdAt, @until, @reason, @actor, @leaseId)`,
  );
  const remove = db.prepare<[string], BlockRow>('DELETE FROM blocks WHERE id = ? RETURNING *');
  const prune = db.prepare<[number]>('DELETE FROM blocks WHERE until <= ?');
  const list = db.prepare<[number], BlockRow>('SELECT * FROM blocks WHERE until > ? ORDER BY until, id');
  return {
    tx: {
      activeBlock: (user: string, instance: string, product: string, now: number): Block | undefined => {
        const r = active.get(user, product, now, instance);
        return r && toBlock(r);
      },
      insertBlock: (block: Block): void => {
        // Ended blocks are of no more use: the lease log keeps their story.
        prune.run(block.createdAt);
        insert.run(block);
      },
      deleteBlock: (id: string): Block | undefined => {
        const r = remove.get(id);
        return r && toBlock(r);
      },
    },
    blocks: (now: number): Block[] => list.all(now).map(toBlock),
  };
}
