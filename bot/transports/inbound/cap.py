"""Warnings ingested from a weather service as CAP 1.2 (Common Alerting Protocol) XML, the format
China's national early-warning platform (12379) and the meteorological bureaus publish.

Alert -> issue, Update -> update the active warning of that type, Cancel -> lift it. The CAP
description becomes the warning's text (the template still adds what to do). An identifier is
ingested once: the same file fed twice issues nothing the second time.
"""
from __future__ import annotations

import datetime as dt

import xmltodict

from bot.domain import alerts as alerts_mod
from bot.core import texts
from bot.domain.alerts import COLOURS, TYPES, AlertError, Draft

SEVERITY_COLOUR = {"minor": "blue", "moderate": "yellow", "severe": "orange", "extreme": "red"}
MAX_BYTES = 256 * 1024


def _strip(d):
    """Drop namespace prefixes (cap:info -> info) so both prefixed and default-namespace files read."""
    if isinstance(d, dict):
        return {k.split(":")[-1]: _strip(v) for k, v in d.items() if not k.startswith("@xmlns")}
    if isinstance(d, list):
        return [_strip(x) for x in d]
    return d


def parse(xml: bytes | str) -> dict:
    """The fields Linli needs from a CAP message. Raises AlertError('bad_cap') on anything else."""
    if len(xml) > MAX_BYTES:
        raise AlertError("bad_cap", value="too large")
    try:
        # xmltodict refuses entity declarations (no billion laughs, no external entities)
        doc = _strip(xmltodict.parse(xml, disable_entities=True))
    except Exception as e:  # expat errors, entity refusals
        raise AlertError("bad_cap", value=type(e).__name__) from None
    alert = doc.get("alert") if isinstance(doc, dict) else None
    if not isinstance(alert, dict):
        raise AlertError("bad_cap", value="no <alert>")
    info = alert.get("info")
    info = info[0] if isinstance(info, list) else info
    if not isinstance(info, dict):
        raise AlertError("bad_cap", value="no <info>")
    words = " ".join(str(info.get(k) or "") for k in ("event", "headline"))
    type_ = next((t for t in sorted(TYPES, key=len, reverse=True) if t in words), "其他")
    colour = next((c for c in COLOURS if texts.COLOUR_ZH[c] in words), None)
    colour = colour or SEVERITY_COLOUR.get(str(info.get("severity", "")).lower())
    if colour is None:
        raise AlertError("bad_cap", value="no colour or severity")
    expires = None
    if info.get("expires"):
        try:
            expires = dt.datetime.fromisoformat(str(info["expires"])).timestamp()
        except ValueError:
            raise AlertError("bad_cap", value="bad <expires>") from None
    msg_type = str(alert.get("msgType", "Alert")).lower()
    if msg_type not in ("alert", "update", "cancel"):
        raise AlertError("bad_cap", value=f"msgType {msg_type}")
    return {"identifier": str(alert.get("identifier") or ""), "msg_type": msg_type, "type": type_,
            "colour": colour, "text": str(info.get("description") or "").strip(), "expires": expires,
            "sender": str(info.get("senderName") or alert.get("sender") or "")}


def ingest(app, xml: bytes | str, *, issuer_id: int | None = None) -> int | None:
    """Issue / update / lift from one CAP message. Returns the new alert id, or None if this
    identifier was already ingested."""
    cap = parse(xml)
    store = app.store
    if cap["identifier"] and alerts_mod.was_ingested(store, cap["identifier"]):
        return None
    now = app.clock.now()
    expires_h = (cap["expires"] - now) / 3600 if cap["expires"] else None
    if expires_h is not None and expires_h <= 0:
        raise AlertError("bad_cap", value="already expired")
    if cap["msg_type"] == "alert":
        alert_id = alerts_mod.issue(app, Draft(type=cap["type"], colour=cap["colour"], text=cap["text"],
                                               expires_h=expires_h, issuer_id=issuer_id))
    else:
        active = alerts_mod.newest_active_of_type(store, cap["type"])
        if active is None:
            raise AlertError("no_alert", value=cap["type"])
        action = "lift" if cap["msg_type"] == "cancel" else "update"
        alert_id = alerts_mod.follow_on(app, active["id"], action, colour=cap["colour"] if action == "update" else None,
                                        text=cap["text"], issuer_id=issuer_id)
    store.log(now, "cap.ingested", "alert", alert_id, issuer_id, identifier=cap["identifier"],
              sender=cap["sender"], msg_type=cap["msg_type"])
    return alert_id
