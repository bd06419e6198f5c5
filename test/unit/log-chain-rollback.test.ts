import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { newEd25519KeyPair } from '../../src/adapters/crypto/keys.js';
import { logSigner, logVerifier, type LogSigner, type LogVerifier } from '../../src/adapters/crypto/log-signer.js';
import { SqliteLeaseStore } from '../../src/adapters/sqlite/sqlite-lease-store.js';
import type { LeaseEventInput } from '../../src/domain/events.js';
import { tempDir } from '../support/helpers.js';

let signer: LogSigner;
let verifier: LogVerifier;
beforeAll(async () => {
  const pair = await newEd25519KeyPair();
  signer = logSigner(pair.privateJwk as typeof pair.privateJwk & { kid: string });
  verifier = logVerifier(pair.publicJwk as typeof pair.publicJwk & { kid: string });
});

const T = 1_800_000_000_000;
const entry = (message: string): LeaseEventInput => ({ ts: T, event: 'key-added', message });

/**
 * Every store method that appends a lease-log entry, made to fail after the
 * entry was written inside its transaction (the checkpoint it is due fails to
 * sign, as a full disk would fail the commit): the transaction rolls back, and
 * the next entry must link to what is really in the log.
 */
const APPENDERS: Array<[string, (s: SqliteLeaseStore) => unknown]> = [
  ['transact', (s) => s.transact((tx) => tx.appendEvent(entry('tx')))],
  ['appendEvent', (s) => s.appendEvent(entry('plain'))],
  ['appendAnchored', (s) => s.appendAnchored({ ts: T, event: 'server-started' })],
  ['addLicense', (s) => s.addLicense({ id: 'k-new', token: 'token', addedAt: T }, entry('added'))],
  ['removeLicense', (s) => s.removeLicense('k-old', { ts: T, event: 'key-removed' })],
  ['putActivation', (s) => s.putActivation({ keyId: 'k-old', activationId: 'a-2', token: 't', source: 'online', url: null, activatedAt: T, validatedAt: T }, null, { ts: T, event: 'activated' })],
  ['removeActivation', (s) => s.removeActivation('k-act', { ts: T, event: 'deactivated' })],
  ['putAdminToken', (s) => s.putAdminToken('ops-2', 'hash-2', false, { ts: T, event: 'admin-token-created' })],
  ['removeAdminToken', (s) => s.removeAdminToken('ops', { ts: T, event: 'admin-token-revoked' })],
  ['recordDenial', (s) => s.transact((tx) => tx.recordDenial({ ts: T, event: 'denied', user: 'eve', remote: '10.0.0.9', code: 'NO_FREE_SEATS' }, { sinceMs: T, perAddress: 10, overflowMessage: 'too many' }))],
];

describe('the lease-log chain when a transaction that appended fails', () => {
  it.each(APPENDERS)('%s: the rolled-back entry leaves no gap and no wrong link', async (_name, append) => {
    const store = new SqliteLeaseStore(join(tempDir(), 'floatd.db'));
    try {
      // Something for each method to change, written while signing works.
      let failNext = false;
      store.enableLogCheckpoints({
        signer: { kid: signer.kid, sign: (p) => { if (failNext) throw new Error('disk full'); return signer.sign(p); } },
        everyEntries: 1,
        everyMs: 60_000,
      });
      await store.addLicense({ id: 'k-old', token: 'token', addedAt: T }, entry('k-old'));
      await store.putActivation({ keyId: 'k-act', activationId: 'a-1', token: 't', source: 'online', url: null, activatedAt: T, validatedAt: T }, null, { ts: T, event: 'activated' });
      await store.putAdminToken('ops', 'hash', false, { ts: T, event: 'admin-token-created' });
      const before = (await store.queryEvents({})).length;

      failNext = true;
      // The port's methods reject; the synchronous ones throw: either way the write fails.
      await expect(Promise.resolve().then(() => append(store))).rejects.toThrow('disk full');
      failNext = false;
      expect(await store.queryEvents({})).toHaveLength(before);

      await store.appendEvent(entry('after'));
      expect(store.verifyLog(verifier)).toMatchObject({ ok: true, entries: before + 1 });
    } finally {
      store.close();
    }
  });
});
