-- Quiet chats (issue #13 item 4): low-urgency notices to one person are held and sent as one
-- digest per interval; replies to a person's own commands go before bulk traffic, in order.

-- one held notice. `key` is the send key the notice would have had: holding it twice, or
-- holding it after it was sent on its own, is a no-op. `send_key` is the digest's own sends
-- key once the notice was folded into one (NULL: still waiting); it is set in the same
-- transaction that writes the digest's sends row, so a restart neither loses nor repeats one.
CREATE TABLE digest_items (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    person_id INTEGER,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref_id INTEGER,
    line TEXT NOT NULL,
    created_at REAL NOT NULL,
    send_key TEXT
);
-- the waiting notices, oldest first (what the timer and the digest read)
CREATE INDEX digest_items_waiting ON digest_items(created_at) WHERE send_key IS NULL;
CREATE INDEX digest_items_target ON digest_items(channel, target) WHERE send_key IS NULL;

-- the open replies of each target, in command order: the outbox sends a reply only when no
-- earlier reply to the same target is still pending or in flight
CREATE INDEX sends_open_replies ON sends(channel, target, id)
    WHERE purpose = 'reply' AND state IN ('pending','sending');
-- what one target received in the last hour (the per-person cap)
CREATE INDEX sends_target_created ON sends(target, created_at);
