-- Server activation: the vendor-signed activation of each key that needs one.
CREATE TABLE activations (
  key_id        TEXT PRIMARY KEY,
  activation_id TEXT NOT NULL,
  token         TEXT NOT NULL,
  source        TEXT NOT NULL CHECK (source IN ('online', 'offline')),
  url           TEXT,
  activated_at  INTEGER NOT NULL,
  validated_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Offline requests and deactivation proofs this server wrote, so a response answers only a request
-- it made, and only once.
CREATE TABLE activation_requests (
  nonce       TEXT PRIMARY KEY,
  key_id      TEXT NOT NULL,
  kind        TEXT NOT NULL CHECK (kind IN ('activation', 'deactivation')),
  created_at  INTEGER NOT NULL,
  consumed_at INTEGER
) WITHOUT ROWID;
