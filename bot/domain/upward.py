"""Coverage reported upward: the town/street office that sent a warning gets its coverage back
without asking, and a one-page report of one warning for the office.

Report points ([upward] points_min, e.g. 10 and 30 minutes after issue, and 'end': when the warning
expires, is lifted or is superseded by an update) are derived from the alert rows; this module is a
Timers source (`next_due_at`, `run_due`), so a restart loses none. Each (alert, point) is done once:
a row in upward_reports, written in the same transaction as the sends it causes. After an outage
several points may be due at once: only the newest is sent (the others are recorded as skipped),
since the office wants the current figures, not a burst of stale ones.

At each point, for each warning (and each notice too with [upward] notices = true), in one
transaction:
- a summary to the configured chat ([upward] channel "robot" — a WeCom group robot key — or
  "wecom_appchat" — an app chat id — and target): an outbox row, purpose 'upward';
- with [upward] webhook_url: an outbox row on channel 'webhook' whose payload {"json": {...}} is
  POSTed as JSON by the webhook sender (bot/transports/outbound/cap_out.py);
- for a warning that came in as CAP, with [upward] cap_url: an outbox row on channel 'cap' whose
  payload {"cap": {...}} the CAP sender writes as a CAP 1.2 message (msgType [upward]
  cap_msg_type, Ack by default, <references> naming the office's original (sender, identifier,
  sent) and the message that made this warning; coverage figures as <parameter>s) and POSTs.
The domain never writes XML: it says what the message means; the transport writes it.

`alert_report(deps, alert_id) -> bytes` is the office's one-page XLSX of one warning: counts by
grid with a chart, time to 50/90/95/100%, hops that missed deadlines, households never reached,
vulnerable residents not visited in time.
"""
from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.core import texts
from bot.data import alerts as alerts_db
from bot.data import upward as upward_db
from bot.domain import coverage as coverage_mod
from bot.domain.alerts import get
from bot.domain.ports import Deps
from bot.domain.wording import render_context

log = logging.getLogger("linli.upward")

CHAT_CHANNELS = ("robot", "wecom_appchat")
CAP_MSG_TYPES = ("Ack", "Update")
MILESTONES = (50, 90, 95, 100)


@dataclass(frozen=True)
class UpwardSettings:
    """[upward] in config.toml (bot/core/config.py is asked to carry the same fields)."""
    points_min: list = field(default_factory=lambda: [10, 30])  # minutes after issue; 'end' always follows
    channel: str = ""  # "robot" | "wecom_appchat" | "" (no chat summary)
    target: str = ""  # the robot's webhook key, or the app chat's chatid
    webhook_url: str = ""  # JSON POST of the figures ("" = none)
    cap_url: str = ""  # CAP 1.2 Ack/Update back to the office, for warnings that came in as CAP
    cap_sender: str = "linli"  # our <sender> (no spaces, commas, '<' or '&')
    cap_msg_type: str = "Ack"  # "Ack" (receipt + figures) or "Update"
    notices: bool = False  # report notices (通知) too
    max_age_h: float = 48  # alerts older than this are not reported (no backlog after enabling)


def settings_of(deps: Deps) -> UpwardSettings:
    return getattr(deps.settings, "upward", None) or UpwardSettings()


def enabled(cfg: UpwardSettings) -> bool:
    return bool((cfg.channel and cfg.target) or cfg.webhook_url or cfg.cap_url)


# -- when ------------------------------------------------------------------------------------------
def end_at(alert: dict) -> float:
    """When the warning stopped being live: superseded/lifted -> its successor's time; else expiry."""
    if alert["state"] in ("superseded", "lifted"):
        return alert.get("succeeded_at") or alert["summary_at"] or alert["expires_at"]
    return alert["expires_at"]


def points(cfg: UpwardSettings, alert: dict) -> list[tuple[str, float]]:
    """(point, due time) in time order; a minute point at or after the end is left to 'end'."""
    end = end_at(alert)
    out = [(f"m{int(m)}", alert["created_at"] + 60 * float(m)) for m in sorted(cfg.points_min)]
    return [(p, t) for p, t in out if t < end] + [("end", end)]


def _candidates(deps: Deps, cfg: UpwardSettings) -> list[dict]:
    rows = upward_db.candidates(deps.store, deps.clock.now() - cfg.max_age_h * 3600)
    return [a for a in rows if cfg.notices or a["kind"] != "notice"]


def next_due_at(deps: Deps) -> float | None:
    cfg = settings_of(deps)
    if not enabled(cfg):
        return None
    times = []
    for a in _candidates(deps, cfg):
        done = upward_db.done_points(deps.store, a["id"])
        times += [t for p, t in points(cfg, a) if p not in done]
    return min(times) if times else None


async def run_due(deps: Deps) -> dict:
    cfg = settings_of(deps)
    sent = skipped = 0
    if not enabled(cfg):
        return {"upward_sent": 0}
    now = deps.clock.now()
    for a in _candidates(deps, cfg):
        done = upward_db.done_points(deps.store, a["id"])
        due = [(p, t) for p, t in points(cfg, a) if p not in done and t <= now]
        if not due:
            continue
        with deps.store.transaction():
            for p, t in due[:-1]:
                skipped += upward_db.record(deps.store, a["id"], p, t, now, "skipped")
            point, t = due[-1]
            n = report(deps, a, point, cfg=cfg)
            if upward_db.record(deps.store, a["id"], point, t, now, "sent", n):
                sent += 1
            else:
                raise RuntimeError("upward point recorded twice")  # rolls the sends back
            deps.store.log(now, "upward.reported", "alert", a["id"], None, point=point, sends=n,
                           skipped=len(due) - 1)
    if sent:
        deps.outbox.kick()
    return {"upward_sent": sent, "upward_skipped": skipped}


# -- what --------------------------------------------------------------------------------------------
def figures(deps: Deps, alert: dict) -> dict:
    """The coverage numbers every report shares (chat summary, webhook JSON, CAP parameters, XLSX)."""
    store = deps.store
    cov = coverage_mod.coverage(store, alert["id"])
    time_to = dict(cov["time_to"])
    time_to[95] = coverage_mod.time_to_fraction(store, alert["id"], cov["acked"], cov["households"], 0.95,
                                                alert["created_at"])
    grids = [n for root in cov["tree"] for n in ([root] if root["kind"] == "grid" else root["children"])]
    follow = upward_db.followups_of(store, alert["id"])
    return {
        "alert_id": alert["id"], "households": cov["households"], "reached": cov["reached"],
        "acked": cov["acked"], "pct": cov["pct"],
        "help": sum(g["help"] for g in grids),
        "minutes_to": {p: (round(time_to[p] / 60, 1) if time_to.get(p) is not None else None) for p in MILESTONES},
        "grids": [{"name": g["name"], "households": g["households"], "reached": g["reached"], "acked": g["acked"],
                   "pct": g["pct"]} for g in grids],
        "never_reached": len(upward_db.never_reached(store, alert["id"])),
        "late_hops": len(late_hops(deps, alert["id"])),
        "followups_open": sum(f["state"] == "open" for f in follow),
        "followups_late": len(_late_followups(follow, deps.clock.now())),
    }


def _late_followups(rows: list[dict], now: float) -> list[dict]:
    """Vulnerable residents not visited in time: the task escalated (it missed a deadline; escalation
    moves the row's deadline on), or was closed after its deadline, or is still open past it (or open
    with no deadline). One still open before its first deadline is not late yet."""
    def late(f: dict) -> bool:
        if f["level"] > 0:
            return True
        if f["deadline_at"] is None:
            return f["state"] == "open"
        return (now if f["state"] == "open" else (f["closed_at"] or now)) > f["deadline_at"]
    return [f for f in rows if late(f)]


def late_hops(deps: Deps, alert_id: int) -> list[dict]:
    """Hops that missed their deadline: escalated or failed, or done (or still open) after the first one."""
    now = deps.clock.now()
    return [h for h in upward_db.hops_of(deps.store, alert_id)
            if h["escalation_level"] > 0 or h["state"] in ("escalated", "failed")
            or (h["done_at"] or now) > _hop_deadline(deps.settings, h)]


def _hop_deadline(settings, hop: dict) -> float:
    """A hop's first deadline ([relay] minutes by the node's level); escalation moves the row's own."""
    minutes = getattr(settings.relay, f"{hop['node_kind']}_deadline_min", settings.relay.building_deadline_min)
    return hop["created_at"] + 60 * float(minutes)


def _chain(store, alert: dict) -> list[int]:
    ids, a = [], alert
    while a is not None:
        ids.append(a["id"])
        a = alerts_db.get(store, a["supersedes_id"]) if a["supersedes_id"] else None
    return list(reversed(ids))


def cap_references(deps: Deps, alert: dict) -> list[tuple[str, str, str]]:
    """The office's original message and the one that made this warning (sender, identifier, sent)."""
    rows = upward_db.cap_origins(deps.store, _chain(deps.store, alert))
    if not rows:
        return []
    refs = [(rows[0]["sender"], rows[0]["identifier"], rows[0]["sent"])]
    own = [r for r in rows if r["alert_id"] == alert["id"]]
    if own and (own[-1]["sender"], own[-1]["identifier"], own[-1]["sent"]) not in refs:
        refs.append((own[-1]["sender"], own[-1]["identifier"], own[-1]["sent"]))
    return refs


def cap_sent(at: float, tz: str) -> str:
    """CAP's dateTime: local time with its offset, seconds, no fraction and never 'Z'."""
    return datetime.fromtimestamp(int(at), ZoneInfo(tz)).isoformat()


def _cap_token(s: str) -> str:
    """identifier/sender may not contain spaces, commas, '<' or '&' (CAP 1.2 §3.2.1)."""
    return re.sub(r"[\s,<&]+", "_", s)


def cap_message(deps: Deps, alert: dict, point: str, figs: dict, refs: list[tuple[str, str, str]],
                cfg: UpwardSettings | None = None) -> dict:
    """The CAP 1.2 message reporting coverage, as data (the shape is in cap_out's docstring)."""
    cfg = cfg or settings_of(deps)
    tz, now = deps.settings.timezone, deps.clock.now()
    words = texts.env().get_template("messages/upward_labels.j2").module
    ctx = render_context(deps.store, alert, deps.settings)
    params = [("LinliAlertId", str(alert["id"])), ("LinliReportPoint", point),
              ("HouseholdsInScope", str(figs["households"])), ("HouseholdsReached", str(figs["reached"])),
              ("HouseholdsAcknowledged", str(figs["acked"])), ("AcknowledgedPercent", str(figs["pct"])),
              ("HelpRequested", str(figs["help"])), ("HouseholdsNeverReached", str(figs["never_reached"])),
              ("HopsLate", str(figs["late_hops"])), ("FollowupsOpen", str(figs["followups_open"]))]
    params += [(f"MinutesTo{p}Percent", "" if v is None else str(v)) for p, v in figs["minutes_to"].items()]
    params += [(f"Grid:{g['name']}", f"{g['acked']}/{g['households']}") for g in figs["grids"]]
    return {
        "identifier": _cap_token(f"{cfg.cap_sender}.coverage.{alert['id']}.{point}"),
        "sender": _cap_token(cfg.cap_sender),
        "sent": cap_sent(now, tz),
        "status": "Exercise" if alert.get("status") == "exercise" else "Actual",
        "msgType": cfg.cap_msg_type if cfg.cap_msg_type in CAP_MSG_TYPES else "Ack",
        "scope": "Private",
        "addresses": " ".join(sorted({r[0] for r in refs})),
        "references": [list(r) for r in refs],
        "note": words.cap_note(ctx, point, figs).strip(),
        "info": {
            "language": "zh-CN", "category": ["Met"],
            "event": words.cap_event(ctx).strip(),
            "urgency": "Unknown", "severity": "Unknown", "certainty": "Observed",
            "headline": words.cap_headline(ctx, point, figs).strip(),
            "description": summary_text(deps, alert, point, figs),
            "parameters": [list(p) for p in params],
            "areas": [{"areaDesc": ctx["community"]}],
        },
    }


def summary_text(deps: Deps, alert: dict, point: str, figs: dict) -> str:
    return texts.render("messages/upward_summary.j2", point=point, f=figs,
                        minutes=int(point[1:]) if point.startswith("m") else None,
                        **render_context(deps.store, alert, deps.settings))


def report(deps: Deps, alert: dict, point: str, *, cfg: UpwardSettings | None = None) -> int:
    """Queue this point's reports (chat, webhook, CAP). Returns how many rows were queued. Called
    inside the caller's transaction; keys make a second call for the same point a no-op."""
    cfg = cfg or settings_of(deps)
    figs = figures(deps, alert)
    key, n = f"upward:{alert['id']}:{point}", 0
    if cfg.channel in CHAT_CHANNELS and cfg.target:
        n += deps.outbox.enqueue(f"{key}:chat", cfg.channel, cfg.target,
                                 {"text": summary_text(deps, alert, point, figs)},
                                 alert_id=alert["id"], purpose="upward") is not None
    elif cfg.channel:
        log.warning("[upward] channel %r is not one of %s: no chat summary", cfg.channel, CHAT_CHANNELS)
    if cfg.webhook_url:
        body = {"alert_id": alert["id"], "point": point, "type": alert["type"], "colour": alert["colour"],
                "kind": alert["kind"], "status": alert["status"], "state": alert["state"],
                "issued_at": cap_sent(alert["created_at"], deps.settings.timezone),
                "at": cap_sent(deps.clock.now(), deps.settings.timezone), **figs,
                "minutes_to": {str(k): v for k, v in figs["minutes_to"].items()}}
        n += deps.outbox.enqueue(f"{key}:webhook", "webhook", cfg.webhook_url, {"json": body},
                                 alert_id=alert["id"], purpose="upward") is not None
    refs = cap_references(deps, alert) if cfg.cap_url else []
    if refs:
        n += deps.outbox.enqueue(f"{key}:cap", "cap", cfg.cap_url,
                                 {"cap": cap_message(deps, alert, point, figs, refs, cfg)},
                                 alert_id=alert["id"], purpose="upward_cap") is not None
    return n


def reports_of(deps: Deps, alert_id: int) -> list[dict]:
    """Which points were reported for an alert (for the dashboard)."""
    return upward_db.reports(deps.store, alert_id)


# -- the office's one-page report ---------------------------------------------------------------------
def alert_report(deps: Deps, alert_id: int) -> bytes:
    """XLSX for the street office: summary with counts by grid and a chart, then the lists."""
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference
    from openpyxl.styles import Font

    store, tz = deps.store, deps.settings.timezone
    alert = get(store, alert_id)  # AlertError("no_alert") for an unknown id
    alert = {**alert, "succeeded_at": (alerts_db.successor(store, alert_id) or {}).get("created_at")}
    figs = figures(deps, alert)
    L = texts.env().get_template("messages/upward_labels.j2").module
    ctx = render_context(store, alert, deps.settings)

    def when(t: float | None) -> str:
        return datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if t else ""

    wb = Workbook()
    ws = wb.active
    ws.title = L.SHEET["summary"]
    ws.append([L.title(ctx).strip()])
    ws["A1"].font = Font(bold=True, size=14)
    rows = [("issued", when(alert["created_at"])), ("ended", when(end_at(alert)) if alert["state"] != "active"
                                                      else L.STILL_ACTIVE),
            ("households", figs["households"]), ("reached", figs["reached"]), ("acked", figs["acked"]),
            ("pct", figs["pct"]), ("help", figs["help"])]
    rows += [(f"to_{p}", "" if v is None else v) for p, v in figs["minutes_to"].items()]
    rows += [("late_hops", figs["late_hops"]), ("never_reached", figs["never_reached"]),
             ("followups_late", figs["followups_late"])]
    for k, v in rows:
        ws.append([L.SUMMARY[k], v])
    ws.append([])
    head = ws.max_row + 1
    ws.append([L.GRID[k] for k in ("name", "households", "reached", "acked", "pct")])
    for g in figs["grids"]:
        ws.append([g["name"], g["households"], g["reached"], g["acked"], g["pct"]])
    last = ws.max_row
    for cell in ws[head]:
        cell.font = Font(bold=True)
    ws.column_dimensions["A"].width = 28
    if figs["grids"]:
        chart = BarChart()
        chart.type, chart.grouping = "col", "clustered"
        chart.title, chart.y_axis.title = L.CHART["title"], L.CHART["y"]
        chart.add_data(Reference(ws, min_col=2, max_col=4, min_row=head, max_row=last), titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=1, min_row=head + 1, max_row=last))
        chart.height, chart.width = 8, 16
        ws.add_chart(chart, "D2")

    def sheet(name: str, columns: list[str], data: list[list]) -> None:
        s = wb.create_sheet(L.SHEET[name])
        s.append([L.COLUMNS[c] for c in columns])
        for c in s[1]:
            c.font = Font(bold=True)
        for row in data:
            s.append(row)
        if not data:
            s.append([L.NONE])

    sheet("never_reached", ["grid", "compound", "building", "household"],
          [[h["grid"], h["compound"], h["building"], h["label"]] for h in upward_db.never_reached(store, alert_id)])
    hops = [(h, _hop_deadline(deps.settings, h)) for h in late_hops(deps, alert_id)]
    sheet("late_hops", ["node", "group", "method", "state", "lead", "escalations", "deadline", "done", "late_min"],
          [[h["node"], h["grp"] or "", L.METHOD.get(h["method"], h["method"]), L.HOP_STATE.get(h["state"], h["state"]),
            h["lead"] or "", h["escalation_level"], when(due), when(h["done_at"]),
            round(((h["done_at"] or deps.clock.now()) - due) / 60, 1)] for h, due in hops])
    sheet("followups_late", ["resident", "household", "vulnerable", "worker", "created", "deadline", "closed",
                             "outcome"],
          [[f["resident"], f["household"], f["vulnerable"], f["worker"] or "", when(f["created_at"]),
            when(f["deadline_at"]), when(f["closed_at"]), L.OUTCOME.get(f["outcome"] or "", f["outcome"] or "")]
           for f in _late_followups(upward_db.followups_of(store, alert_id), deps.clock.now())])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
