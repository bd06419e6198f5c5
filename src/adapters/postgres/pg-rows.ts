import pg from 'pg';

/** int8 (bigint) as a JavaScript number: every one floatd stores is an epoch-ms time, an id or a count, far below 2^53. */
export const PG_TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if (oid === 20) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

export const LEASE_COLUMNS = 'id, pool_id, product, "user", host, instance, remote, listener, granted_at, renewed_at, expires_at, lease_ms, secret_hash, node';

export { toActivation, toBlock, toEvent, toLease, type ActivationRow, type BlockRow, type EventRow, type LeaseRow } from '../store/rows.js';
