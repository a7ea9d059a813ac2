"""The SQLite store: the only module that owns the schema (DDL) and its migrations.

One file, WAL mode, foreign keys on. The schema version lives in PRAGMA user_version and
migrations only go forward. Other modules read and write rows through `Store.db`
(a sqlite_utils.Database) or the helpers here, but never create or alter tables.

Times are stored as float epoch seconds (UTC); rendering converts to the configured timezone.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

# Each entry is one forward-only migration; index + 1 is the schema version it produces.
MIGRATIONS: list[str] = [
    # 1: the register, the event log, inbound/outbound bookkeeping, alerts, acks, requests
    """
    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('community','grid','compound','building')),
        name TEXT NOT NULL,
        parent_id INTEGER REFERENCES nodes(id),
        path TEXT NOT NULL UNIQUE
    );
    CREATE INDEX nodes_parent ON nodes(parent_id);

    CREATE TABLE households (
        id INTEGER PRIMARY KEY,
        building_id INTEGER NOT NULL REFERENCES nodes(id),
        unit TEXT NOT NULL DEFAULT '',
        room TEXT NOT NULL,
        label TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        UNIQUE (building_id, unit, room)
    );

    CREATE TABLE residents (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        phone TEXT NOT NULL DEFAULT '',
        household_id INTEGER REFERENCES households(id),
        node_id INTEGER REFERENCES nodes(id),
        roles TEXT NOT NULL DEFAULT 'resident',
        vulnerable TEXT NOT NULL DEFAULT '',
        social_worker_id INTEGER REFERENCES residents(id),
        wecom_userid TEXT,
        oa_openid TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        updated_at REAL
    );
    CREATE INDEX residents_household ON residents(household_id);
    CREATE UNIQUE INDEX residents_wecom ON residents(wecom_userid) WHERE wecom_userid IS NOT NULL;
    CREATE UNIQUE INDEX residents_oa ON residents(oa_openid) WHERE oa_openid IS NOT NULL;

    -- who leads a node (rank 0 = lead, 1 = backup)
    CREATE TABLE node_leads (
        node_id INTEGER NOT NULL REFERENCES nodes(id),
        resident_id INTEGER NOT NULL REFERENCES residents(id),
        rank INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (node_id, resident_id)
    );

    -- chat groups bound to tree nodes, and how the bot can reach them:
    -- app_chat (WeCom app chat: bot posts), robot (webhook: bot posts),
    -- personal (personal WeChat group: a human must forward),
    -- customer (WeCom customer group: owner confirms each send, 4 a month)
    CREATE TABLE chat_groups (
        id INTEGER PRIMARY KEY,
        node_id INTEGER NOT NULL REFERENCES nodes(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('app_chat','robot','personal','customer')),
        chat_id TEXT NOT NULL DEFAULT '',
        owner_id INTEGER REFERENCES residents(id),
        active INTEGER NOT NULL DEFAULT 1,
        UNIQUE (node_id, name)
    );

    -- append-only audit log
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        ref_type TEXT,
        ref_id INTEGER,
        actor_id INTEGER,
        data TEXT
    );
    CREATE INDEX events_ref ON events(ref_type, ref_id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

    -- every inbound callback message, keyed for exactly-once processing across restarts
    CREATE TABLE inbound (
        id INTEGER PRIMARY KEY,
        dedupe_key TEXT NOT NULL UNIQUE,
        channel TEXT NOT NULL,
        user_id TEXT NOT NULL,
        resident_id INTEGER,
        chat_id TEXT,
        msg_type TEXT NOT NULL,
        content TEXT,
        event TEXT,
        at REAL NOT NULL,
        received_at REAL NOT NULL,
        raw TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new','done','failed')),
        error TEXT
    );

    -- the outbox: every intended send is a row before it is attempted
    CREATE TABLE sends (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        channel TEXT NOT NULL,
        target TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending','sending','sent','failed','dead','waiting')),
        attempts INTEGER NOT NULL DEFAULT 0,
        error_code INTEGER,
        error TEXT,
        alert_id INTEGER,
        purpose TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        next_at REAL,
        sent_at REAL
    );
    CREATE INDEX sends_state ON sends(state, next_at);
    CREATE INDEX sends_alert ON sends(alert_id);

    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        colour TEXT NOT NULL CHECK (colour IN ('blue','yellow','orange','red')),
        action TEXT NOT NULL DEFAULT 'issue' CHECK (action IN ('issue','update','lift')),
        text TEXT NOT NULL,
        scope TEXT NOT NULL,
        poll INTEGER NOT NULL DEFAULT 0,
        issuer_id INTEGER REFERENCES residents(id),
        state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active','superseded','lifted','expired')),
        supersedes_id INTEGER REFERENCES alerts(id),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        reminded_at REAL,       -- the un-acked households were reminded
        followups_at REAL,      -- vulnerable follow-up tasks were created
        summary_at REAL         -- the summary went to the issuer
    );

    -- the buildings an alert covers (its scope, resolved once at issue time)
    CREATE TABLE alert_scope (
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        building_id INTEGER NOT NULL REFERENCES nodes(id),
        PRIMARY KEY (alert_id, building_id)
    );

    -- one row per hop of the relay: a node's group posted, or its lead asked to forward
    CREATE TABLE hops (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        node_id INTEGER NOT NULL REFERENCES nodes(id),
        group_id INTEGER REFERENCES chat_groups(id),
        method TEXT NOT NULL CHECK (method IN ('post','ask_lead','customer','direct')),
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending','posted','asked','forwarded','escalated','failed')),
        lead_id INTEGER REFERENCES residents(id),
        escalation_level INTEGER NOT NULL DEFAULT 0,
        deadline_at REAL,
        done_at REAL,
        done_by INTEGER REFERENCES residents(id),
        created_at REAL NOT NULL,
        UNIQUE (alert_id, node_id, group_id)
    );

    -- households reached (by a group post/forward or a direct message)
    CREATE TABLE deliveries (
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        household_id INTEGER NOT NULL REFERENCES households(id),
        via TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (alert_id, household_id)
    );

    CREATE TABLE acks (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        household_id INTEGER NOT NULL REFERENCES households(id),
        resident_id INTEGER REFERENCES residents(id),
        channel TEXT NOT NULL,
        by_proxy_id INTEGER REFERENCES residents(id),
        answer TEXT NOT NULL DEFAULT 'ok' CHECK (answer IN ('ok','help')),
        at REAL NOT NULL,
        raw TEXT NOT NULL DEFAULT '',
        request_id INTEGER
    );
    CREATE INDEX acks_alert_household ON acks(alert_id, household_id, at);

    -- one-to-one follow-up of a vulnerable resident by a social worker
    CREATE TABLE followups (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        resident_id INTEGER NOT NULL REFERENCES residents(id),
        household_id INTEGER NOT NULL REFERENCES households(id),
        worker_id INTEGER REFERENCES residents(id),
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open','closed')),
        created_at REAL NOT NULL,
        closed_at REAL,
        note TEXT,
        UNIQUE (alert_id, resident_id)
    );

    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        resident_id INTEGER REFERENCES residents(id),
        household_id INTEGER REFERENCES households(id),
        building_id INTEGER REFERENCES nodes(id),
        alert_id INTEGER REFERENCES alerts(id),
        text TEXT NOT NULL,
        category TEXT NOT NULL DEFAULT 'other',
        urgency TEXT NOT NULL DEFAULT 'normal' CHECK (urgency IN ('normal','urgent')),
        place TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'filed' CHECK (state IN
            ('filed','accepted','assigned','in_progress','resolved','rated','closed')),
        accepted_by INTEGER REFERENCES residents(id),
        assignee_id INTEGER REFERENCES residents(id),
        assignee_name TEXT,
        resolution TEXT,
        rating INTEGER,
        rating_comment TEXT,
        escalation_level INTEGER NOT NULL DEFAULT 0,
        reopened INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        accepted_at REAL,
        assigned_at REAL,
        resolved_at REAL,
        rated_at REAL,
        closed_at REAL,
        rate_asked_at REAL
    );
    CREATE INDEX requests_state ON requests(state);

    CREATE TABLE request_media (
        id INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL REFERENCES requests(id),
        kind TEXT NOT NULL,
        media_id TEXT NOT NULL,
        meta TEXT,
        at REAL NOT NULL
    );

    -- short-lived conversation state (a pending confirmation, a clarifying question)
    CREATE TABLE conversations (
        user_key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        data TEXT,
        expires_at REAL NOT NULL
    );
    """,
    # 2: dashboard accounts and sessions
    """
    CREATE TABLE web_users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        resident_id INTEGER REFERENCES residents(id),
        password_hash TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE web_sessions (
        token TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES web_users(id),
        csrf TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE login_attempts (
        id INTEGER PRIMARY KEY,
        who TEXT NOT NULL,
        at REAL NOT NULL,
        ok INTEGER NOT NULL
    );
    """,
    # 3: coverage kept up to date by triggers, so reading it at 100k households is a few small
    # index reads instead of a join over every household (goal < 100 ms)
    """
    CREATE TABLE coverage_counts (
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        building_id INTEGER NOT NULL REFERENCES nodes(id),
        households INTEGER NOT NULL DEFAULT 0,
        reached INTEGER NOT NULL DEFAULT 0,
        acked INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (alert_id, building_id)
    );
    -- the first ack of each household: what coverage and time-to-X% count
    CREATE TABLE ack_firsts (
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        household_id INTEGER NOT NULL REFERENCES households(id),
        building_id INTEGER NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (alert_id, household_id)
    );
    CREATE INDEX ack_firsts_time ON ack_firsts(alert_id, at);
    CREATE TRIGGER acks_first AFTER INSERT ON acks BEGIN
        INSERT OR IGNORE INTO ack_firsts (alert_id, household_id, building_id, at)
            SELECT NEW.alert_id, NEW.household_id, building_id, NEW.at FROM households WHERE id = NEW.household_id;
    END;
    CREATE TRIGGER ack_firsts_count AFTER INSERT ON ack_firsts BEGIN
        UPDATE coverage_counts SET acked = acked + 1
            WHERE alert_id = NEW.alert_id AND building_id = NEW.building_id;
    END;
    CREATE TRIGGER deliveries_count AFTER INSERT ON deliveries BEGIN
        UPDATE coverage_counts SET reached = reached + 1
            WHERE alert_id = NEW.alert_id
              AND building_id = (SELECT building_id FROM households WHERE id = NEW.household_id);
    END;
    INSERT INTO coverage_counts (alert_id, building_id, households)
        SELECT s.alert_id, s.building_id, COUNT(h.id) FROM alert_scope s
        LEFT JOIN households h ON h.building_id = s.building_id AND h.active = 1
        GROUP BY s.alert_id, s.building_id;
    INSERT OR IGNORE INTO ack_firsts (alert_id, household_id, building_id, at)
        SELECT a.alert_id, a.household_id, h.building_id, MIN(a.at) FROM acks a
        JOIN households h ON h.id = a.household_id GROUP BY a.alert_id, a.household_id;
    UPDATE coverage_counts SET
        reached = (SELECT COUNT(*) FROM deliveries d JOIN households h ON h.id = d.household_id
                   WHERE d.alert_id = coverage_counts.alert_id AND h.building_id = coverage_counts.building_id),
        acked = (SELECT COUNT(*) FROM ack_firsts f
                 WHERE f.alert_id = coverage_counts.alert_id AND f.building_id = coverage_counts.building_id);
    """,
    # 4: a request remembers the message it was filed from (idempotent filing without scanning
    # the event log), and the indexes the requests queue and reminders read by
    """
    ALTER TABLE requests ADD COLUMN source_key TEXT;
    UPDATE requests SET source_key = (SELECT json_extract(e.data, '$.key') FROM events e
        WHERE e.kind = 'request.file' AND e.ref_id = requests.id LIMIT 1);
    CREATE UNIQUE INDEX requests_source_key ON requests(source_key) WHERE source_key IS NOT NULL;
    CREATE INDEX requests_resident ON requests(resident_id, created_at);
    CREATE INDEX requests_building ON requests(building_id, state);
    CREATE INDEX events_kind ON events(kind, ref_id);
    """,
    # 5: the normalised message next to its raw XML, so the worker does not parse it again
    """
    ALTER TABLE inbound ADD COLUMN fields TEXT;
    """,
]

# Later migrations are files: bot/data/migrations/NNNN_what.sql, NNNN being the schema version it
# produces. Numbers may skip (a number reserved and never used); they only go forward.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _file_migrations() -> dict[int, str]:
    out = {}
    for f in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        out[int(f.name[:4])] = f.read_text(encoding="utf-8")
    return out


def _all_migrations() -> dict[int, str]:
    out = {i + 1: sql for i, sql in enumerate(MIGRATIONS)}
    for version, sql in _file_migrations().items():
        if version in out:
            raise RuntimeError(f"migration {version} is defined twice")
        out[version] = sql
    return out


SCHEMA_VERSION = max(_all_migrations())


class Store:
    """Owns the connection and the schema. `db` is a sqlite_utils.Database for row access."""

    def __init__(self, path: str | Path, *, migrate: bool = True):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        if migrate:
            self.migrate()

    @property
    def version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction. Returns the new version."""
        current = self.version
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {current} is newer than this "
                               f"Linli ({SCHEMA_VERSION}); upgrade Linli")
        for version, script in sorted(_all_migrations().items()):
            if version <= current:
                continue
            with self.transaction():
                for statement in _split_sql(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={version}")
        return self.version

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception. Nests as a savepoint."""
        if self.conn.in_transaction:
            name = f"sp{id(object())}"
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                raise
            self.conn.execute(f"RELEASE {name}")
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def q(self, sql: str, params=()) -> list[dict]:
        """Run a query and return rows as dicts."""
        cur = self.conn.execute(sql, params)
        cols = [c[0] for c in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def q1(self, sql: str, params=()) -> dict | None:
        rows = self.q(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params=()):
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def log(self, at: float, kind: str, ref_type: str | None = None, ref_id: int | None = None,
            actor_id: int | None = None, **data) -> None:
        """Append one event to the audit log."""
        self.conn.execute(
            "INSERT INTO events (at, kind, ref_type, ref_id, actor_id, data) VALUES (?,?,?,?,?,?)",
            (at, kind, ref_type, ref_id, actor_id,
             json.dumps(data, ensure_ascii=False) if data else None))

    def leave_checkpoints_to_others(self) -> None:
        self.conn.execute("PRAGMA wal_autocheckpoint=0")

    def record_connection(self) -> sqlite3.Connection:
        """A connection of its own that never blocks (busy_timeout=0) and never checkpoints: a
        front records callbacks on it and waits for the write lock without putting its event loop
        to sleep (SQLite's busy handler would)."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL", "busy_timeout=0",
                       "wal_autocheckpoint=0"):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def close(self) -> None:
        self.conn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    out, buf = [], []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        buf.append(line)
        joined = "\n".join(buf)
        if sqlite3.complete_statement(joined):
            out.append(joined.strip())
            buf = []
    if "".join(buf).strip():
        raise ValueError("incomplete SQL statement in migration")
    return out

