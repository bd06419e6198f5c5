-- Tamper evidence for the lease log: each entry carries the SHA-256 of the entry
-- before it (prev_hash) and its own (hash), as lowercase hex, over the canonical
-- encoding in src/adapters/sqlite/log-chain.ts. Entries recorded before this migration are
-- chained by floatd right after it, at the same start (SQL has no SHA-256).
ALTER TABLE events ADD COLUMN prev_hash TEXT;
ALTER TABLE events ADD COLUMN hash TEXT;

-- Signed checkpoints: every leaseLog.checkpointEntries entries or
-- leaseLog.checkpointMinutes minutes, the head of the chain (the entry, its
-- hash, how many entries the chain has had up to it) signed with the server key.
CREATE TABLE log_checkpoints (
  event_id  INTEGER PRIMARY KEY,
  head_hash TEXT NOT NULL,
  count     INTEGER NOT NULL,
  ts        INTEGER NOT NULL,
  kid       TEXT NOT NULL,
  signature TEXT NOT NULL
);
