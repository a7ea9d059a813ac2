-- 8: an answer says what it is: 'ok' (a plain acknowledgement: 已确认), 'safe' (the poll's 平安),
-- 'help' (需要帮助). The CHECK constraint can only change by rebuilding the table; the trigger that
-- keeps ack_firsts goes with the old table and is created again.
-- Also: the indexes that make an ack cost the same at 100 acks and at 100k (the resident's last
-- answer; households that asked for help).
CREATE TABLE acks_v8 (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    household_id INTEGER NOT NULL REFERENCES households(id),
    resident_id INTEGER REFERENCES residents(id),
    channel TEXT NOT NULL,
    by_proxy_id INTEGER REFERENCES residents(id),
    answer TEXT NOT NULL DEFAULT 'ok' CHECK (answer IN ('ok','safe','help')),
    at REAL NOT NULL,
    raw TEXT NOT NULL DEFAULT '',
    request_id INTEGER
);
INSERT INTO acks_v8 (id, alert_id, household_id, resident_id, channel, by_proxy_id, answer, at, raw, request_id)
    SELECT a.id, a.alert_id, a.household_id, a.resident_id, a.channel, a.by_proxy_id,
           CASE WHEN a.answer = 'ok' AND al.poll = 1 AND a.by_proxy_id IS NULL THEN 'safe' ELSE a.answer END,
           a.at, a.raw, a.request_id
    FROM acks a JOIN alerts al ON al.id = a.alert_id;
DROP TABLE acks;
ALTER TABLE acks_v8 RENAME TO acks;
CREATE INDEX acks_alert_household ON acks(alert_id, household_id, at);
CREATE INDEX acks_alert_resident ON acks(alert_id, resident_id, id);
CREATE INDEX acks_alert_answer ON acks(alert_id, answer, household_id);
CREATE TRIGGER acks_first AFTER INSERT ON acks BEGIN
    INSERT OR IGNORE INTO ack_firsts (alert_id, household_id, building_id, at)
        SELECT NEW.alert_id, NEW.household_id, building_id, NEW.at FROM households WHERE id = NEW.household_id;
END;
