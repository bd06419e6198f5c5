-- Settings and one-off facts (evaluation start, server identity).
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- Installed license keys, kept as the signed token and re-verified on load.
CREATE TABLE licenses (
  id       TEXT PRIMARY KEY,
  token    TEXT NOT NULL,
  added_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Running leases. Times are epoch milliseconds.
CREATE TABLE leases (
  id         TEXT PRIMARY KEY,
  pool_id    TEXT NOT NULL,
  product    TEXT NOT NULL,
  user       TEXT NOT NULL,
  host       TEXT NOT NULL,
  instance   TEXT NOT NULL,
  remote     TEXT NOT NULL,
  listener   TEXT NOT NULL,
  granted_at INTEGER NOT NULL,
  renewed_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  lease_ms   INTEGER NOT NULL
);
-- One lease per (user, instance, product): acquire is idempotent by construction.
CREATE UNIQUE INDEX leases_holder ON leases (user, instance, product);
CREATE INDEX leases_pool_expiry ON leases (pool_id, expires_at);
CREATE INDEX leases_expiry ON leases (expires_at);
CREATE INDEX leases_user_listener ON leases (user, listener);

-- Seats taken per pool, kept exact by triggers so counting is O(1).
CREATE TABLE pool_usage (
  pool_id TEXT PRIMARY KEY,
  in_use  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER leases_count_insert AFTER INSERT ON leases BEGIN
  INSERT INTO pool_usage (pool_id, in_use) VALUES (NEW.pool_id, 1)
    ON CONFLICT (pool_id) DO UPDATE SET in_use = in_use + 1;
END;
CREATE TRIGGER leases_count_delete AFTER DELETE ON leases BEGIN
  UPDATE pool_usage SET in_use = in_use - 1 WHERE pool_id = OLD.pool_id;
END;

-- The lease log: append-only.
CREATE TABLE events (
  id           INTEGER PRIMARY KEY,
  ts           INTEGER NOT NULL,
  event        TEXT NOT NULL,
  pool_id      TEXT,
  product      TEXT,
  lease_id     TEXT,
  user         TEXT,
  host         TEXT,
  instance     TEXT,
  remote       TEXT,
  listener     TEXT,
  seats_in_use INTEGER,
  seats_total  INTEGER,
  code         TEXT,
  reason       TEXT,
  message      TEXT
);
CREATE INDEX events_ts ON events (ts);
-- Only grants: frequency rules count a user's recent acquisitions; renewals stay cheap.
CREATE INDEX events_grants ON events (user, ts) WHERE event = 'granted';
