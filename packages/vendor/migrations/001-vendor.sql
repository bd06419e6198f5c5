-- The vendor's activation database (floatd vendor serve / issue --data-dir / activation respond|release).

-- License keys the vendor issued, as `floatd vendor issue --data-dir` records them.
CREATE TABLE keys (
  id                TEXT PRIMARY KEY,
  licensee          TEXT NOT NULL,
  product           TEXT NOT NULL,
  seats             INTEGER NOT NULL,
  activation_limit  INTEGER,
  container_binding INTEGER NOT NULL DEFAULT 0,
  activation_url    TEXT,
  expires_at        INTEGER,
  issued_at         INTEGER NOT NULL,
  token             TEXT NOT NULL
) WITHOUT ROWID;

-- Servers holding (or having held) an activation of a key; released_at set once freed.
CREATE TABLE activations (
  id           TEXT PRIMARY KEY,
  key_id       TEXT NOT NULL REFERENCES keys (id),
  server_kid   TEXT NOT NULL,
  server_key   TEXT NOT NULL,
  fingerprint  TEXT NOT NULL,
  container    INTEGER NOT NULL,
  via          TEXT NOT NULL,
  remote       TEXT,
  activated_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  released_at  INTEGER,
  released_via TEXT
) WITHOUT ROWID;
CREATE INDEX activations_by_key ON activations (key_id, released_at);

-- Every request and deactivation proof answered, so none is answered twice.
CREATE TABLE nonces (
  nonce         TEXT PRIMARY KEY,
  kind          TEXT NOT NULL,
  activation_id TEXT,
  seen_at       INTEGER NOT NULL
) WITHOUT ROWID;

-- Settings of the vendor data directory (the private key file it signs with).
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
