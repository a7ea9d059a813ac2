"""Whether a warning is still live: the one rule every door applies before counting an answer."""
from __future__ import annotations


def is_live(alert: dict, now: float) -> bool:
    """A warning people can still answer: active, not a lift, not past its expiry."""
    return alert["state"] == "active" and alert["action"] != "lift" and alert["expires_at"] > now
