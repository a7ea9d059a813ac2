"""Per-household ack links: a signed token naming the alert and the household.

The token carries an HMAC-SHA256 (truncated to 96 bits), so a link cannot be altered to answer
for another household or another warning. Only ASCII digits are accepted as ids: int() would
also read Arabic-Indic or full-width digits, and compare_digest refuses non-ASCII str.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

_TOKEN = re.compile(r"^([0-9]{1,12})\.([0-9]{1,12})\.([A-Za-z0-9_-]{16})$")


def make_token(secret: str, alert_id: int, household_id: int) -> str:
    body = f"{alert_id}.{household_id}"
    sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()[:12]
    return f"{body}.{base64.urlsafe_b64encode(sig).decode().rstrip('=')}"


def read_token(secret: str, token: str) -> tuple[int, int] | None:
    """(alert_id, household_id) of a genuine token, None for anything else."""
    m = _TOKEN.match(token or "")
    if m is None:
        return None
    alert_id, household_id = int(m.group(1)), int(m.group(2))
    expected = make_token(secret, alert_id, household_id)
    return (alert_id, household_id) if hmac.compare_digest(expected.encode(), token.encode()) else None


def ack_url(public_url: str, secret: str, alert_id: int, household_id: int) -> str:
    return f"{public_url.rstrip('/')}/ack/{make_token(secret, alert_id, household_id)}"
