-- The login rate limit counts a name+address's recent failures on every attempt (and inside an
-- IMMEDIATE transaction, so it must be quick): index it instead of scanning every attempt ever made.
CREATE INDEX login_attempts_who_at ON login_attempts(who, at);
-- Changing a password ends that account's sessions: find them without a scan.
CREATE INDEX web_sessions_user ON web_sessions(user_id);
