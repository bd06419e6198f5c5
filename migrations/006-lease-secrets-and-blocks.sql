-- A lease's secret is handed to its holder at grant and never stored: only its SHA-256 (base64url).
-- Null for leases granted before this migration: those stay renewable by identity alone.
ALTER TABLE leases ADD COLUMN secret_hash TEXT;

-- Holders kept out of a product for a while after an operator revoked their lease
-- (floatd admin revoke --block). Times are epoch milliseconds.
CREATE TABLE blocks (
  id         TEXT PRIMARY KEY,
  scope      TEXT NOT NULL CHECK (scope IN ('user', 'instance')),
  user       TEXT NOT NULL,
  instance   TEXT,
  product    TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  until      INTEGER NOT NULL,
  reason     TEXT NOT NULL,
  actor      TEXT NOT NULL,
  lease_id   TEXT
) WITHOUT ROWID;
CREATE INDEX blocks_holder ON blocks (user, product, until);
