"""Test doubles that keep the inbound tests independent of the send side."""
from __future__ import annotations

import json


class RecordingOutbox:
    """Implements the Outbox contract's write side (a row in `sends` per key, duplicates ignored)
    without sending anything, so inbound tests never touch a network."""

    def __init__(self, app):
        self.app = app

    def enqueue(self, key, channel, target, payload, *, alert_id=None, purpose=""):
        cur = self.app.store.conn.execute(
            "INSERT OR IGNORE INTO sends (key, channel, target, payload, alert_id, purpose, "
            "created_at) VALUES (?,?,?,?,?,?,?)",
            (key, channel, target, json.dumps(payload, ensure_ascii=False), alert_id, purpose,
             self.app.clock.now()))
        return cur.lastrowid if cur.rowcount else None

    def kick(self):
        pass

    async def start(self):
        pass

    async def stop(self):
        pass

    async def drain(self):
        pass
