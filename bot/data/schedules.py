"""Scheduled and recurring jobs (schedules) and what became of each fire time (schedule_runs)."""
from __future__ import annotations

import json

from bot.data.store import Store

_EDITABLE = ("kind", "spec", "words", "type", "colour", "text", "template", "scope", "scope_names", "audience",
             "missed", "state", "next_at")


def create(store: Store, *, kind: str, spec: dict, words: str, type: str, colour: str, text: str, template: str,
           scope: list[int], scope_names: list[str], audience: list[str] | None, missed: str, next_at: float,
           created_by: int | None, now: float) -> int:
    return store.conn.execute(
        "INSERT INTO schedules (kind, spec, words, type, colour, text, template, scope, scope_names, audience,"
        " missed, state, next_at, created_by, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,'active',?,?,?,?)",
        (kind, json.dumps(spec, ensure_ascii=False), words, type, colour, text, template, json.dumps(scope),
         json.dumps(scope_names, ensure_ascii=False),
         json.dumps(audience, ensure_ascii=False) if audience is not None else None,
         missed, next_at, created_by, now, now)).lastrowid


def get(store: Store, schedule_id: int) -> dict | None:
    return store.q1("SELECT * FROM schedules WHERE id=?", (schedule_id,))


def listing(store: Store, *, include_ended: bool = False) -> list[dict]:
    if include_ended:
        return store.q("SELECT * FROM schedules ORDER BY id")
    return store.q("SELECT * FROM schedules WHERE state IN ('active','paused') ORDER BY id")


def update(store: Store, schedule_id: int, now: float, **fields) -> None:
    unknown = set(fields) - set(_EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    if not fields:
        return
    values = []
    for k, v in fields.items():
        if k in ("spec", "scope", "scope_names") or (k == "audience" and v is not None):
            v = json.dumps(v, ensure_ascii=False)
        values.append(v)
    cols = ", ".join(f"{k}=?" for k in fields)
    store.conn.execute(f"UPDATE schedules SET {cols}, updated_at=? WHERE id=?", (*values, now, schedule_id))


def due(store: Store, now: float) -> list[dict]:
    return store.q("SELECT * FROM schedules WHERE state='active' AND next_at <= ? ORDER BY next_at, id", (now,))


def next_due(store: Store) -> float | None:
    return store.scalar("SELECT MIN(next_at) FROM schedules WHERE state='active'")


def record_run(store: Store, schedule_id: int, due_at: float, ran_at: float, outcome: str,
               alert_id: int | None = None, note: str = "") -> bool:
    """One fire time acted on. False when it already was (the (schedule, fire time) key)."""
    cur = store.conn.execute(
        "INSERT OR IGNORE INTO schedule_runs (schedule_id, due_at, ran_at, outcome, alert_id, note) "
        "VALUES (?,?,?,?,?,?)", (schedule_id, due_at, ran_at, outcome, alert_id, note))
    return cur.rowcount == 1


def advance(store: Store, schedule_id: int, expected_next_at: float, next_at: float | None, last_at: float,
            now: float) -> bool:
    """Move next_at on, only if nobody else did (compare-and-set): False means another process
    handled this fire time first."""
    cur = store.conn.execute(
        "UPDATE schedules SET next_at=?, last_at=?, updated_at=?, "
        "state=CASE WHEN ? IS NULL THEN 'done' ELSE state END WHERE id=? AND next_at=? AND state='active'",
        (next_at, last_at, now, next_at, schedule_id, expected_next_at))
    return cur.rowcount == 1


def runs(store: Store, schedule_id: int) -> list[dict]:
    return store.q("SELECT * FROM schedule_runs WHERE schedule_id=? ORDER BY due_at", (schedule_id,))
