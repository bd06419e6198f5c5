/**
 * A holder kept out of a product for a while after an operator revoked its
 * lease (`floatd admin revoke --block 30m`): `lmremove` plus an exclusion.
 * Scope `user` keeps the user out on every instance and host; `instance` only
 * that instance (the user's other instances may still take seats).
 */
export type BlockScope = 'user' | 'instance';

export interface Block {
  readonly id: string;
  readonly scope: BlockScope;
  readonly user: string;
  /** The blocked instance (scope `instance`); null for a user block. */
  readonly instance: string | null;
  readonly product: string;
  readonly createdAt: number;
  /** Epoch ms the block ends (exclusive). */
  readonly until: number;
  readonly reason: string;
  readonly actor: string;
  /** The revoked lease the block came with. */
  readonly leaseId: string | null;
}

/** The longest block: a year. Longer is what license rules (EXCLUDE) are for. */
export const BLOCK_MAX_SECONDS = 366 * 86_400;

export function blockCovers(block: Block, user: string, instance: string, product: string, now: number): boolean {
  return block.until > now && block.product === product && block.user === user && (block.scope === 'user' || block.instance === instance);
}

/** Who a block keeps out, for messages: `user alice` or `instance i-7 of alice`. */
export function blockedWho(block: Pick<Block, 'scope' | 'user' | 'instance'>): string {
  return block.scope === 'user' ? `user ${block.user}` : `instance ${block.instance ?? '?'} of ${block.user}`;
}
