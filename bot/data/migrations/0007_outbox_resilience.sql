-- The outbox survives platform outages and restarts (issue #10 items 1, 6, 7).

-- when a row was last handed to a sender: a row still 'sending' after a kill -9 may have reached
-- the platform, so its time counts against the per-member limit at start-up
ALTER TABLE sends ADD COLUMN attempted_at REAL;
CREATE INDEX sends_channel_attempted ON sends(channel, attempted_at);

-- one circuit breaker per send channel; only 'open' matters across a restart (a channel that
-- was down stays paused and probed, and staff are not told twice)
CREATE TABLE channel_breakers (
    channel TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('closed','open')),
    opened_at REAL,
    probe_at REAL,
    cooldown_s REAL,
    notified_at REAL,
    updated_at REAL NOT NULL
);
