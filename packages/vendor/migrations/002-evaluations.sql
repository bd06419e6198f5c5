-- Evaluations registered with the vendor (floatd activate --evaluation), one per host and product
-- file: a host that registers again gets the same start and end back.
CREATE TABLE evaluations (
  id           TEXT PRIMARY KEY,
  products     TEXT NOT NULL,
  server_kid   TEXT NOT NULL,
  fingerprint  TEXT NOT NULL,
  via          TEXT NOT NULL,
  remote       TEXT,
  started_at   INTEGER NOT NULL,
  ends_at      INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX evaluations_by_products ON evaluations (products);
