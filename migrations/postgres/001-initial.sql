-- floatd on PostgreSQL: several nodes share these tables. Times are epoch milliseconds of the
-- database's clock (floatd_now_ms()), which is lease time in this mode: node clocks need not agree.

-- (A transaction may fix it with SET LOCAL floatd.now_ms: only tests do, to run lease time on a fake clock.)
CREATE FUNCTION floatd_now_ms() RETURNS bigint LANGUAGE sql STABLE AS
  $$ SELECT coalesce(nullif(current_setting('floatd.now_ms', true), '')::bigint, floor(extract(epoch FROM now()) * 1000)::bigint) $$;

-- Settings and one-off facts (evaluation start, cluster identity).
CREATE TABLE meta (
  key   text PRIMARY KEY,
  value text NOT NULL
);

-- Installed license keys, kept as the signed token and re-verified on load by every node.
CREATE TABLE licenses (
  id       text PRIMARY KEY,
  token    text NOT NULL,
  added_at bigint NOT NULL
);

-- The seats of every pool as the nodes last saw its license key: a unit that counts a pool's
-- seats locks its row first (FOR UPDATE), so grants to one pool are decided one at a time
-- across the cluster.
CREATE TABLE pools (
  id    text PRIMARY KEY,
  seats integer NOT NULL CHECK (seats >= 0)
);

CREATE TABLE leases (
  id          text PRIMARY KEY,
  pool_id     text NOT NULL,
  product     text NOT NULL,
  "user"      text NOT NULL,
  host        text NOT NULL,
  instance    text NOT NULL,
  remote      text NOT NULL,
  listener    text NOT NULL,
  granted_at  bigint NOT NULL,
  renewed_at  bigint NOT NULL,
  expires_at  bigint NOT NULL,
  lease_ms    bigint NOT NULL,
  secret_hash text,
  -- The node whose client holds the lease (status shows it; a revoke elsewhere is pushed there).
  node        text NOT NULL DEFAULT ''
);
-- One lease per (user, instance, product): acquire is idempotent by construction, on every node.
CREATE UNIQUE INDEX leases_holder ON leases ("user", instance, product);
CREATE INDEX leases_pool_expiry ON leases (pool_id, expires_at);
CREATE INDEX leases_expiry ON leases (expires_at);
CREATE INDEX leases_user_listener ON leases ("user", listener);

-- No over-grant, even from a node with a bug: a lease that starts to run (inserted, or an
-- expired one extended) re-counts its pool's running leases under the pool's row lock, with a
-- fresh snapshot, and the transaction fails if they are more than the pool's seats.
CREATE FUNCTION floatd_no_overgrant() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  cap integer;
  running bigint;
BEGIN
  IF TG_OP = 'UPDATE' AND (OLD.expires_at > floatd_now_ms() OR NEW.expires_at <= floatd_now_ms()) THEN
    RETURN NULL;
  END IF;
  SELECT seats INTO cap FROM pools WHERE id = NEW.pool_id FOR UPDATE;
  IF cap IS NULL THEN
    RAISE EXCEPTION 'floatd: lease % is in pool %, which no node has registered', NEW.id, NEW.pool_id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'leases_within_seats';
  END IF;
  SELECT count(*) INTO running FROM leases WHERE pool_id = NEW.pool_id AND expires_at > floatd_now_ms();
  IF running > cap THEN
    RAISE EXCEPTION 'floatd: pool % would have % running leases for % seats', NEW.pool_id, running, cap
      USING ERRCODE = 'check_violation', CONSTRAINT = 'leases_within_seats';
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER leases_within_seats AFTER INSERT OR UPDATE OF expires_at ON leases
  FOR EACH ROW EXECUTE FUNCTION floatd_no_overgrant();

-- The lease log. Each writer (one database connection of one node process, `node:epoch`)
-- extends its own hash chain: `seq` counts its entries from 1, `prev_hash` is the hash of its
-- entry before. `id` gives the merged order of the cluster.
CREATE SEQUENCE writer_epochs;
CREATE TABLE events (
  id           bigserial PRIMARY KEY,
  ts           bigint NOT NULL,
  event        text NOT NULL,
  pool_id      text,
  product      text,
  lease_id     text,
  "user"       text,
  host         text,
  instance     text,
  remote       text,
  listener     text,
  seats_in_use integer,
  seats_total  integer,
  code         text,
  reason       text,
  message      text,
  actor        text,
  count        integer NOT NULL DEFAULT 1,
  writer       text NOT NULL,
  seq          bigint NOT NULL,
  prev_hash    text NOT NULL,
  hash         text NOT NULL,
  UNIQUE (writer, seq)
);
CREATE INDEX events_ts ON events (ts);
CREATE INDEX events_grants ON events ("user", ts) WHERE event = 'granted';
CREATE INDEX events_denials ON events (remote, ts) WHERE event = 'denied';

CREATE TABLE admin_tokens (
  name       text PRIMARY KEY,
  hash       text NOT NULL UNIQUE,
  created_at bigint NOT NULL
);

CREATE TABLE activations (
  key_id        text PRIMARY KEY,
  activation_id text NOT NULL,
  token         text NOT NULL,
  source        text NOT NULL CHECK (source IN ('online', 'offline')),
  url           text,
  activated_at  bigint NOT NULL,
  validated_at  bigint NOT NULL
);

CREATE TABLE activation_requests (
  nonce       text PRIMARY KEY,
  key_id      text NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('activation', 'deactivation')),
  created_at  bigint NOT NULL,
  consumed_at bigint
);

CREATE TABLE blocks (
  id         text PRIMARY KEY,
  scope      text NOT NULL CHECK (scope IN ('user', 'instance')),
  "user"     text NOT NULL,
  instance   text,
  product    text NOT NULL,
  created_at bigint NOT NULL,
  until      bigint NOT NULL,
  reason     text NOT NULL,
  actor      text NOT NULL,
  lease_id   text
);
CREATE INDEX blocks_holder ON blocks ("user", product, until);

-- The nodes of the cluster: each writes its row at start and every few seconds after.
CREATE TABLE nodes (
  id         text PRIMARY KEY,
  listeners  jsonb NOT NULL DEFAULT '[]',
  version    text NOT NULL,
  pid        integer NOT NULL,
  started_at bigint NOT NULL,
  last_seen  bigint NOT NULL,
  stopped_at bigint
);
