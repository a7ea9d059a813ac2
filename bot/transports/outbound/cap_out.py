"""CAP 1.2 out: the XML writer for the coverage reports Linli sends back to the office that issued a
warning, and the two HTTP channels that carry reports upward ('cap' and 'webhook').

The domain (bot/domain/upward.py) decides what a report says and queues an outbox row; it never
writes XML. A row on channel 'cap' has the payload {"cap": message}, where `message` is:

    {
      "identifier": "linli.coverage.12.m10",      # ours; no spaces, commas, '<' or '&'
      "sender": "linli",
      "sent": "2024-06-01T08:10:00+08:00",        # CAP dateTime: offset, never 'Z', no fraction
      "status": "Actual" | "Exercise",
      "msgType": "Ack" | "Update",
      "scope": "Private",                         # with "addresses": the office's sender id(s)
      "addresses": "gd-qxj",
      "references": [[sender, identifier, sent], ...],   # the office's original, then its update
      "note": "…",                                # optional
      "info": {                                   # optional
        "language": "zh-CN", "category": ["Met"], "event": "…",
        "urgency": "Unknown", "severity": "Unknown", "certainty": "Observed",
        "headline": "…", "description": "…",
        "parameters": [[valueName, value], ...],  # the coverage figures
        "areas": [{"areaDesc": "…"}]
      }
    }

`write(message) -> bytes` turns it into a UTF-8 <alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
with the elements in the order the OASIS CAP 1.2 schema's sequences require (tests validate the
output against CAP-v1.2.xsd). References are written as CAP says: "sender,identifier,sent" triples
separated by spaces. Standard: OASIS Common Alerting Protocol Version 1.2 (1 July 2010),
http://docs.oasis-open.org/emergency/cap/v1.2/CAP-v1.2-os.html

A row on channel 'webhook' has the payload {"json": body}: the body is POSTed as JSON.

Both senders POST to the row's target URL with the app's shared aiohttp session: 2xx is success;
timeouts, connection errors, 408, 429 and 5xx are retried by the outbox; any other status is
permanent for that row (the outbox dead-letters it and the dashboard shows it).
"""
from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import aiohttp

from bot.transports.outbound.senders import SendResult

NS = "urn:oasis:names:tc:emergency:cap:1.2"
RETRY_STATUSES = {408, 429}
ERR_HTTP = -1101  # Linli-local code: the endpoint answered a non-2xx status (errmsg has it)
ERR_NETWORK = -1102  # Linli-local code: no answer (timeout, connection refused …)
ERR_BAD_PAYLOAD = -1103  # Linli-local code: the row's payload cannot be written (a bug): never retried

_ALERT_ORDER = ("identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction",
                "addresses", "code", "note", "references", "incidents")
_INFO_HEAD = ("language", "category", "event", "responseType", "urgency", "severity", "certainty", "audience")
_INFO_TAIL = ("effective", "onset", "expires", "senderName", "headline", "description", "instruction", "web",
              "contact")
_REQUIRED = ("identifier", "sender", "sent", "status", "msgType", "scope")


class CapWriteError(ValueError):
    pass


def _el(parent: ET.Element, name: str, text) -> ET.Element:
    e = ET.SubElement(parent, f"{{{NS}}}{name}")
    e.text = str(text)
    return e


def _many(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def write(message: dict) -> bytes:
    """The CAP 1.2 XML of one message (see the module docstring for its shape)."""
    missing = [k for k in _REQUIRED if not message.get(k)]
    if missing:
        raise CapWriteError(f"CAP message lacks {missing}")
    root = ET.Element(f"{{{NS}}}alert")
    for key in _ALERT_ORDER:
        value = message.get(key)
        if value in (None, "", []):
            continue
        if key == "references":
            value = " ".join(",".join(r) for r in value) if not isinstance(value, str) else value
        for v in _many(value) if key == "code" else [value]:
            _el(root, key, v)
    for info in _many(message.get("info") or []):
        _write_info(root, info)
    ET.register_namespace("", NS)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _write_info(root: ET.Element, info: dict) -> None:
    node = ET.SubElement(root, f"{{{NS}}}info")
    for key in _INFO_HEAD:
        value = info.get(key)
        if value in (None, "", []):
            continue
        for v in _many(value):
            _el(node, key, v)
    for name, value in info.get("eventCodes", []):
        ec = ET.SubElement(node, f"{{{NS}}}eventCode")
        _el(ec, "valueName", name)
        _el(ec, "value", value)
    for key in _INFO_TAIL:
        if info.get(key) not in (None, ""):
            _el(node, key, info[key])
    for name, value in info.get("parameters", []):
        p = ET.SubElement(node, f"{{{NS}}}parameter")
        _el(p, "valueName", name)
        _el(p, "value", value)
    for area in info.get("areas", []):
        a = ET.SubElement(node, f"{{{NS}}}area")
        _el(a, "areaDesc", area["areaDesc"])
        for name, value in area.get("geocodes", []):
            g = ET.SubElement(a, f"{{{NS}}}geocode")
            _el(g, "valueName", name)
            _el(g, "value", value)


# -- the channels -------------------------------------------------------------------------------------
async def _post(app, url: str, data: bytes, content_type: str) -> SendResult:
    http = app.http
    if http is None:  # not started (a CLI process): leave the row for the worker
        return SendResult(False, ERR_NETWORK, "no http session", retryable=True)
    try:
        async with http.post(url, data=data, headers={"Content-Type": content_type}) as resp:
            body = (await resp.text())[:200]
            if 200 <= resp.status < 300:
                return SendResult(True, 0, "ok", detail={"status": resp.status})
            retry = resp.status in RETRY_STATUSES or resp.status >= 500
            return SendResult(False, ERR_HTTP, f"HTTP {resp.status}: {body}", retryable=retry,
                              detail={"status": resp.status})
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        return SendResult(False, ERR_NETWORK, f"{type(e).__name__}: {e}", retryable=True)


class CapPostSender:
    """channel 'cap': payload {"cap": message} -> CAP 1.2 XML POSTed to the target URL."""

    def __init__(self, app):
        self.app = app

    async def send(self, target: str, payload: dict) -> SendResult:
        try:
            xml = write(payload["cap"])
        except (KeyError, TypeError, CapWriteError) as e:
            return SendResult(False, ERR_BAD_PAYLOAD, f"bad CAP payload: {e}")
        return await _post(self.app, target, xml, "application/xml; charset=utf-8")


class JsonWebhookSender:
    """channel 'webhook': payload {"json": body} -> body POSTed as JSON to the target URL."""

    def __init__(self, app):
        self.app = app

    async def send(self, target: str, payload: dict) -> SendResult:
        if "json" not in payload:
            return SendResult(False, ERR_BAD_PAYLOAD, "webhook payload has no 'json'")
        data = json.dumps(payload["json"], ensure_ascii=False).encode("utf-8")
        return await _post(self.app, target, data, "application/json; charset=utf-8")
