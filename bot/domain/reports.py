"""Monthly report on residents' requests: counts by category, building and state, median time to
accept and to resolve, average rating; exported as CSV or XLSX for the community office.

A request belongs to the month it was filed in (community time zone), whatever its state now,
so a report re-run later shows how that month's requests ended up. Column and row labels are
Chinese and come from templates/messages/requests/_labels.j2, like every other user-facing word.
"""
from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime
from pathlib import Path
from statistics import mean, median
from zoneinfo import ZoneInfo

from bot.core import texts
from bot.core.tables import fit_sheet, safe_cell
from bot.data import reports as reports_db

_DETAIL = ("id", "created", "resident", "household", "building", "category", "urgency", "place",
           "text", "state", "assignee", "resolution", "accept_h", "resolve_h", "rating",
           "rating_comment", "reopened")


def month_bounds(year: int, month: int, tz: str = "Asia/Shanghai") -> tuple[float, float]:
    """[start, end) of a calendar month in the community's time zone, as epoch seconds."""
    zone = ZoneInfo(tz)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start.timestamp(), end.timestamp()


def _hours(a: float | None, b: float | None) -> float | None:
    return round((b - a) / 3600, 1) if a is not None and b is not None else None


def _counted(values) -> dict:
    """Most frequent first; ties in name order, so the report is stable."""
    return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))


def monthly_report(store, year: int, month: int, tz: str = "Asia/Shanghai") -> dict:
    start, end = month_bounds(year, month, tz)
    rows = reports_db.requests_between(store, start, end)
    details = []
    for r in rows:
        details.append({
            **{k: r.get(k) for k in _DETAIL if k in r},
            "created": datetime.fromtimestamp(r["created_at"], ZoneInfo(tz))
            .strftime("%Y-%m-%d %H:%M"),
            "assignee": r["assignee_name"] or "",
            "accept_h": _hours(r["created_at"], r["accepted_at"]),
            "resolve_h": _hours(r["created_at"], r["resolved_at"]),
        })
    accept = [d["accept_h"] for d in details if d["accept_h"] is not None]
    resolve = [d["resolve_h"] for d in details if d["resolve_h"] is not None]
    ratings = [r["rating"] for r in rows if r["rating"] is not None]
    return {
        "year": year, "month": month, "total": len(rows),
        "urgent": sum(r["urgency"] == "urgent" for r in rows),
        "reopened": sum(r["reopened"] > 0 for r in rows),
        "by_category": _counted(r["category"] for r in rows),
        "by_building": _counted(r["building"] or "" for r in rows),
        "by_state": _counted(r["state"] for r in rows),
        "median_accept_h": round(median(accept), 1) if accept else None,
        "median_resolve_h": round(median(resolve), 1) if resolve else None,
        "avg_rating": round(mean(ratings), 2) if ratings else None,
        "rated": len(ratings),
        "requests": details,
    }


# -- export --------------------------------------------------------------------------------
def _labels():
    return texts.env().get_template("messages/requests/_labels.j2").module


def _summary_rows(rep: dict, L) -> list[list]:
    R = L.REPORT
    out = [[R["title"], f"{rep['year']}-{rep['month']:02d}"], [R["metric"], R["value"]]]
    out += [[R[k], "" if rep[k] is None else rep[k]] for k in
            ("total", "urgent", "reopened", "median_accept_h", "median_resolve_h",
             "avg_rating", "rated")]
    sections = (("by_category", L.CATEGORY), ("by_state", L.STATE), ("by_building", {}))
    for key, names in sections:
        out += [[], [R[key], R["count"]]]
        out += [[names.get(k, k) or R["no_building"], n] for k, n in rep[key].items()]
    return out


def _detail_rows(rep: dict, L) -> list[list]:
    values = {"category": L.CATEGORY, "state": L.STATE, "urgency": L.URGENCY}
    out = [[L.COLUMNS[c] for c in _DETAIL]]
    for d in rep["requests"]:
        out.append([values[c].get(d[c], d[c]) if c in values else
                    ("" if d.get(c) is None else d[c]) for c in _DETAIL])
    return out


def write_requests_report(store, year: int, month: int, path: str | Path,
                          tz: str = "Asia/Shanghai") -> dict:
    """Write the month's report to `path`: .csv (summary, then details, one sheet; UTF-8 with a
    BOM so Excel opens the Chinese correctly) or .xlsx (a summary and a details sheet).
    Returns the report dict."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise ValueError(f"{path}: report format must be .csv or .xlsx")
    rep, L = monthly_report(store, year, month, tz), _labels()
    summary, details = _summary_rows(rep, L), _detail_rows(rep, L)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8-sig") as f:
            csv.writer(f).writerows([[safe_cell(v) for v in row] for row in summary + [[]] + details])
        return rep
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = L.REPORT["summary"]
    for row in summary:
        ws.append([safe_cell(v) for v in row])
    ws2 = wb.create_sheet(L.REPORT["details"])
    for row in details:
        ws2.append([safe_cell(v) for v in row])
    fit_sheet(ws)
    fit_sheet(ws2)
    wb.save(path)
    return rep
