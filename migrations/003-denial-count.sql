-- Repeated identical denials are one lease-log entry per minute with a count, so a client that
-- keeps asking (or a peer that floods) cannot grow the log faster than a bounded rate.
ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
-- Finding this minute's entry of a denial, and counting an address's entries this minute.
CREATE INDEX events_denials ON events (remote, ts) WHERE event = 'denied';
