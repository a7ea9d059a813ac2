"""Downloads: the per-alert delivery report and the monthly requests report, CSV or XLSX.

CSV is UTF-8 with a BOM (Excel on the community office's PC otherwise shows the Chinese as
mojibake); XLSX is built in memory with openpyxl. Headers and value words come from
templates/web/_labels.html. A lead's delivery report covers only their buildings.
"""
from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from aiohttp import web

from bot.core.clock import local
from bot.data import dashboard as queries
from bot.domain.reports import write_requests_report
from bot.web.render import labels

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_COLUMNS = ("compound", "building", "household", "reached_via", "reached_at", "acked_by", "ack_how",
            "answer", "acked_at", "vulnerable", "followup", "worker")


def _labels():
    return labels()


def delivery_rows(app, alert_id: int, scope) -> list[list]:
    """Header + one row per household in the alert's scope (and the viewer's)."""
    L, tz = _labels(), app.settings.timezone

    def when(ts):
        return local(ts, tz).strftime("%Y-%m-%d %H:%M:%S") if ts else ""
    rows = queries.delivery_rows(app.store, alert_id, scope)
    out = [[L.DELIVERY_COLUMNS[c] for c in _COLUMNS]]
    for r in rows:
        out.append([r["compound"] or "", r["building"], r["household"],
                    L.VIA.get(r["via"], r["via"] or ""), when(r["reached_at"]), r["acked_by"] or "",
                    L.CHANNEL.get(r["channel"], r["channel"] or ""),
                    L.ANSWER.get(r["answer"], r["answer"] or ""), when(r["acked_at"]),
                    r["vulnerable"] or "", L.FOLLOWUP.get(r["followup"], ""), r["worker"] or ""])
    return out


def table_bytes(rows: list[list], fmt: str, sheet: str) -> bytes:
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        return buf.getvalue().encode("utf-8-sig")
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def download(body: bytes, fmt: str, filename: str) -> web.Response:
    return web.Response(body=body, headers={
        "Content-Type": CONTENT_TYPES[fmt], "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{filename}"'})


def requests_report(app, year: int, month: int, fmt: str) -> bytes:
    """The monthly report via bot.domain.reports (which writes files), read back for the download."""
    with tempfile.TemporaryDirectory(prefix="linli-report-") as tmp:
        path = Path(tmp) / f"requests.{fmt}"
        write_requests_report(app.store, year, month, path, tz=app.settings.timezone)
        return path.read_bytes()
