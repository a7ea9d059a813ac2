-- 6: the worker's pending query reads only unhandled rows, and callback nonces are remembered.
--
-- The worker polls for rows in state 'new'. Without an index it walked every row ever received
-- (CPU grew with history: 59% of a core at 100k rows); this partial index holds the pending rows
-- only, so an idle poll is one lookup in an empty index whatever the history.
CREATE INDEX inbound_pending ON inbound(id) WHERE state = 'new';
-- pruning handled history by age (bot/data/inbox.py prune)
CREATE INDEX inbound_received ON inbound(received_at);

-- (timestamp, nonce) of every recorded callback within the freshness window: a second request
-- with the same pair and a different body is a replay of a captured signature (plain mode's
-- signature does not cover the body). Shared by all front processes through the file.
CREATE TABLE callback_nonces (
    channel TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    nonce TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (channel, timestamp, nonce)
) WITHOUT ROWID;
CREATE INDEX callback_nonces_expiry ON callback_nonces(expires_at);
