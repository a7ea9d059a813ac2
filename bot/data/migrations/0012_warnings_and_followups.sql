-- 12: what a warning is and where it came from; follow-ups that escalate and record outcomes.
-- kind: 'warning' (a signal with a colour) or 'notice' (通知: no colour shown, no poll, no chasing).
-- status: 'actual' or 'exercise' (a drill: counted apart, never in real coverage).
ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'warning';
ALTER TABLE alerts ADD COLUMN status TEXT NOT NULL DEFAULT 'actual';
ALTER TABLE alerts ADD COLUMN vulnerable_first INTEGER NOT NULL DEFAULT 0;
CREATE INDEX alerts_state ON alerts(state, action);

-- every CAP message a weather service sent, whatever became of it: what staff see on the
-- "warnings that did not go out" page, and what references in later messages are resolved against
CREATE TABLE cap_messages (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL DEFAULT '',
    identifier TEXT NOT NULL,
    sent TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT '',
    msg_type TEXT NOT NULL DEFAULT '',
    refs TEXT NOT NULL DEFAULT '',          -- the <references> as given
    outcome TEXT NOT NULL,                  -- relayed, updated, lifted, recorded, refused, held, scheduled, duplicate
    reason TEXT NOT NULL DEFAULT '',        -- for staff: why it was not relayed
    alert_id INTEGER REFERENCES alerts(id),
    due_at REAL,                            -- a future onset: when the relay starts
    fields TEXT,                            -- what was read (JSON), to act on later (held, scheduled)
    received_at REAL NOT NULL,
    raw TEXT NOT NULL DEFAULT '',
    UNIQUE (sender, identifier, sent)
);
CREATE INDEX cap_messages_outcome ON cap_messages(outcome, received_at);

-- follow-ups: a deadline per colour, a level that climbs (0 social worker, 1 grid lead, 2 staff),
-- the visit's outcome (safe / help / not_home / moved), why it was created (silence or policy)
ALTER TABLE followups ADD COLUMN deadline_at REAL;
ALTER TABLE followups ADD COLUMN level INTEGER NOT NULL DEFAULT 0;
ALTER TABLE followups ADD COLUMN outcome TEXT;
ALTER TABLE followups ADD COLUMN reason TEXT NOT NULL DEFAULT 'silent';
ALTER TABLE followups ADD COLUMN asked_at REAL;
CREATE INDEX followups_due ON followups(state, deadline_at);
CREATE INDEX followups_worker ON followups(worker_id, state);

-- a warning for vulnerable households only: audience '' = everyone in scope; '*' = every vulnerable
-- household; otherwise the categories (JSON list). The households it targets are kept, so every
-- count (coverage, reminders, acks) means the same set.
ALTER TABLE alerts ADD COLUMN audience TEXT NOT NULL DEFAULT '';
CREATE TABLE alert_targets (
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    household_id INTEGER NOT NULL REFERENCES households(id),
    PRIMARY KEY (alert_id, household_id)
) WITHOUT ROWID;
