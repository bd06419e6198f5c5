-- Who did it, for entries made by an operator through the admin API (token name or certificate subject).
ALTER TABLE events ADD COLUMN actor TEXT;

-- Admin API bearer tokens, kept only as SHA-256 hashes.
CREATE TABLE admin_tokens (
  name       TEXT PRIMARY KEY,
  hash       TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
