"""Dashboard accounts: users, sessions and login attempts (tables web_users, web_sessions,
login_attempts). Hashing, tokens and the rate-limit rule live in bot/web/auth.py; this module
only reads and writes the rows.
"""
from __future__ import annotations

from bot.data.store import Store


# -- users -----------------------------------------------------------------------------------------
def user_by_name(store: Store, username: str, *, active_only: bool = True) -> dict | None:
    sql = "SELECT * FROM web_users WHERE username=?" + (" AND active=1" if active_only else "")
    return store.q1(sql, (username,))


def save_user(store: Store, username: str, resident_id: int | None, password_hash: str) -> int:
    """Insert the account or reset its password and link (and re-activate it); a changed password
    ends the account's open sessions. Returns the user id."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO web_users (username, resident_id, password_hash) VALUES (?,?,?) "
            "ON CONFLICT(username) DO UPDATE SET password_hash=excluded.password_hash, "
            "resident_id=excluded.resident_id, active=1",
            (username, resident_id, password_hash))
        uid = conn.execute("SELECT id FROM web_users WHERE username=?", (username,)).fetchone()[0]
        conn.execute("DELETE FROM web_sessions WHERE user_id=?", (uid,))
    return uid


# -- sessions --------------------------------------------------------------------------------------
def session_user(store: Store, token_digest: str, now: float) -> dict | None:
    """The active account behind an unexpired session (its columns plus the session's `csrf`)."""
    return store.q1(
        "SELECT s.csrf, u.* FROM web_sessions s JOIN web_users u ON u.id=s.user_id "
        "WHERE s.token=? AND s.expires_at>? AND u.active=1", (token_digest, now))


def open_session(store: Store, token_digest: str, user_id: int, csrf: str, expires_at: float,
                 now: float) -> None:
    """Store a new session; sessions already expired are swept on the way (nothing else does)."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM web_sessions WHERE expires_at<=?", (now,))
        conn.execute("INSERT INTO web_sessions (token, user_id, csrf, expires_at) VALUES (?,?,?,?)",
                     (token_digest, user_id, csrf, expires_at))


def close_session(store: Store, token_digest: str) -> None:
    store.conn.execute("DELETE FROM web_sessions WHERE token=?", (token_digest,))


def session_count(store: Store) -> int:
    return store.scalar("SELECT COUNT(*) FROM web_sessions")


# -- login attempts --------------------------------------------------------------------------------
def claim_attempt(store: Store, who: str, now: float, *, window_s: float, max_failures: int) -> int | None:
    """Count this login attempt as a failure *before* the password is checked, unless `who`
    already has `max_failures` failures (or attempts still being checked) in the window.

    The count and the insert are one IMMEDIATE transaction, so parallel attempts (in this process
    or in another front process on the same file) cannot all pass the check before any of them is
    recorded. Returns the attempt's id, or None when the limit is reached."""
    with store.transaction() as conn:
        failures = conn.execute("SELECT COUNT(*) FROM login_attempts WHERE who=? AND ok=0 AND at>?",
                                (who, now - window_s)).fetchone()[0]
        if failures >= max_failures:
            return None
        return conn.execute("INSERT INTO login_attempts (who, at, ok) VALUES (?,?,0)",
                            (who, now)).lastrowid


def attempt_succeeded(store: Store, attempt_id: int) -> None:
    store.conn.execute("UPDATE login_attempts SET ok=1 WHERE id=?", (attempt_id,))


def recent_failures(store: Store, who: str, since: float) -> int:
    return store.scalar("SELECT COUNT(*) FROM login_attempts WHERE who=? AND ok=0 AND at>?",
                        (who, since))
