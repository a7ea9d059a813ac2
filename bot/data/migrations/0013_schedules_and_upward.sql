-- 13: scheduled and recurring notices/warnings, and coverage reported upward.

-- a job staff set up: fire once (kind 'once', an APScheduler DateTrigger) or on a calendar rule
-- (kind 'cron', an APScheduler CronTrigger). spec is the trigger's fields as JSON; next_at is the
-- next fire time in epoch seconds, advanced in the same transaction that issues the alert.
CREATE TABLE schedules (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('once','cron')),
    spec TEXT NOT NULL,
    words TEXT NOT NULL DEFAULT '',          -- the time as staff wrote it ("每月5号9点")
    type TEXT NOT NULL,                      -- 通知 (a notice) or a warning signal
    colour TEXT NOT NULL DEFAULT 'blue',
    text TEXT NOT NULL DEFAULT '',           -- staff's words (the body, or added to a template)
    template TEXT NOT NULL DEFAULT '',       -- templates/notices/<template>.j2, rendered at fire time
    scope TEXT NOT NULL DEFAULT '[]',        -- node ids (JSON); [] = the whole community
    scope_names TEXT NOT NULL DEFAULT '[]',  -- as staff wrote them, for listings
    audience TEXT,                           -- JSON list or NULL (everyone in scope)
    missed TEXT NOT NULL DEFAULT 'late' CHECK (missed IN ('late','skip')),
    state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active','paused','cancelled','done')),
    next_at REAL,
    created_by INTEGER REFERENCES residents(id),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_at REAL                             -- the last fire time acted on (sent, late, skipped or failed)
);
CREATE INDEX schedules_due ON schedules(state, next_at);

-- one row per (schedule, fire time): the key that makes each occurrence happen at most once
CREATE TABLE schedule_runs (
    schedule_id INTEGER NOT NULL REFERENCES schedules(id),
    due_at REAL NOT NULL,
    ran_at REAL NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent','late','skipped','failed')),
    alert_id INTEGER REFERENCES alerts(id),
    note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (schedule_id, due_at)
) WITHOUT ROWID;

-- coverage reported to the office above: one row per (alert, point) once it was sent or passed over
CREATE TABLE upward_reports (
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    point TEXT NOT NULL,                     -- 'm10', 'm30' … (minutes after issue) or 'end'
    due_at REAL NOT NULL,
    done_at REAL NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent','skipped')),
    sends INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (alert_id, point)
) WITHOUT ROWID;
