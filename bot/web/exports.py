"""Downloads: the per-alert delivery report, the follow-up board and the monthly requests report,
CSV or XLSX.

What every download promises the community office:
- CSV is UTF-8 with a BOM (Excel on the office's PC otherwise shows the Chinese as mojibake);
- a cell that starts with = + - @ (or a tab / carriage return) is prefixed with an apostrophe:
  names, notes and residents' requests are typed by outsiders, and a spreadsheet would otherwise
  run "=HYPERLINK(…)" as a formula (CSV/formula injection). XLSX gets the same treatment: openpyxl
  stores any string starting with "=" as a formula;
- XLSX has its header row frozen and column widths that fit the content (a CJK character counts
  as two), so the sheet is readable when opened;
- buildings sort naturally (1栋, 2栋 … 10栋), never 1栋, 10栋, 2栋.

An answer is named for what it is (bot.domain.wording.ANSWER_ZH): 已确认 for a plain ack, 平安 only
for a resident's own poll answer, 需要帮助 for help, and the report says who answered for the
household — 本人, 代确认 (a lead for a neighbour without a phone) or 上门 (a social worker's visit).
A lead's 代确认 is never called 平安: the lead did not ask the household how it is.
Headers and value words come from templates/web/_labels.html. A lead sees only their buildings.
"""
from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from aiohttp import web

from bot.core.clock import local
from bot.core.tables import FORMULA_STARTS, fit_sheet, natural_key, safe_cell
from bot.data import dashboard as queries
from bot.domain.reports import write_requests_report
from bot.web.render import labels

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# the first twelve columns keep the order offices' spreadsheets already expect; new ones go last
_COLUMNS = ("compound", "building", "household", "reached_via", "reached_at", "acked_by", "ack_how",
            "answer", "acked_at", "vulnerable", "followup", "worker", "who", "followup_outcome")


def _labels():
    return labels()


# -- what an answer means ------------------------------------------------------------------------
def who_answered(channel: str | None, by_proxy_id: int | None) -> str:
    """'self' | 'proxy' | 'visit' | '' (no answer): who answered for the household."""
    if not channel:
        return ""
    if channel == "visit":
        return "visit"
    if channel in ("proxy", "dashboard") or by_proxy_id is not None:
        return "proxy"
    return "self"


def answer_code(answer: str | None, who: str) -> str:
    """The answer as the report states it. Only a household's own answer can be 平安: a proxy
    (代确认) that somehow carries 'safe' is reported as a plain 已确认."""
    if not answer:
        return ""
    if answer == "safe" and who == "proxy":
        return "ok"
    return answer


def delivery_rows(app, alert_id: int, scope) -> list[list]:
    """Header + one row per household in the alert's scope (and the viewer's), buildings in
    natural order."""
    L, tz = _labels(), app.settings.timezone

    def when(ts):
        return local(ts, tz).strftime("%Y-%m-%d %H:%M:%S") if ts else ""
    rows = sorted(queries.delivery_report(app.store, alert_id, scope),
                  key=lambda r: (natural_key(r["compound"] or ""), natural_key(r["building"]),
                                 natural_key(r["household"])))
    out = [[L.DELIVERY_COLUMNS[c] for c in _COLUMNS]]
    for r in rows:
        who = who_answered(r["channel"], r["by_proxy_id"])
        by = r["proxy_name"] if who in ("proxy", "visit") and r["proxy_name"] else r["answered_by"]
        out.append([r["compound"] or "", r["building"], r["household"],
                    L.VIA.get(r["via"], r["via"] or ""), when(r["reached_at"]), by or "",
                    L.CHANNEL.get(r["channel"], r["channel"] or ""),
                    L.ANSWER.get(answer_code(r["answer"], who), r["answer"] or ""), when(r["acked_at"]),
                    r["vulnerable"] or "", L.FOLLOWUP.get(r["followup"], ""), r["worker"] or "",
                    L.WHO.get(who, ""), L.OUTCOME.get(r["followup_outcome"] or "", r["followup_outcome"] or "")])
    return out


def followup_rows(app, tasks: list[dict]) -> list[list]:
    """Header + one row per follow-up task of the board (already cut to the viewer's area)."""
    L, tz = _labels(), app.settings.timezone

    def when(ts):
        return local(ts, tz).strftime("%Y-%m-%d %H:%M") if ts else ""
    out = [[L.FOLLOWUP_COLUMNS[c] for c in L.FOLLOWUP_ORDER]]
    for t in tasks:
        out.append([f"#{t['alert_id']}", t["worker"] or L.NO_WORKER, t["name"], t["room"], t["phone"] or "",
                    t["vulnerable"] or "", L.BOARD_STATE[t["board_state"]], t["outcome_zh"] or "",
                    t["note"] or "", when(t["deadline_at"]), when(t["closed_at"])])
    return out


# -- files -----------------------------------------------------------------------------------------
def csv_bytes(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows([[safe_cell(v) for v in row] for row in rows])
    return buf.getvalue().encode("utf-8-sig")


def table_bytes(rows: list[list], fmt: str, sheet: str) -> bytes:
    if fmt == "csv":
        return csv_bytes(rows)
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    for row in rows:
        ws.append([safe_cell(v) for v in row])
    fit_sheet(ws)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def download(body: bytes, fmt: str, filename: str) -> web.Response:
    return web.Response(body=body, headers={
        "Content-Type": CONTENT_TYPES[fmt], "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{filename}"'})


def requests_report(app, year: int, month: int, fmt: str) -> bytes:
    """The monthly report via bot.domain.reports (which writes files), read back for the download
    and made safe on the way: formula-looking cells escaped, XLSX headers frozen and fitted."""
    with tempfile.TemporaryDirectory(prefix="linli-report-") as tmp:
        path = Path(tmp) / f"requests.{fmt}"
        write_requests_report(app.store, year, month, path, tz=app.settings.timezone)
        body = path.read_bytes()
    return _harden_csv(body) if fmt == "csv" else _harden_xlsx(body)


def _harden_csv(body: bytes) -> bytes:
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    return csv_bytes(rows)


def _harden_xlsx(body: bytes) -> bytes:
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(body))
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and cell.value.startswith(FORMULA_STARTS):
                    # a resident's "=…" was stored as a formula: store it as the text it was
                    cell.value = "'" + cell.value
                    cell.data_type = "s"
        fit_sheet(ws)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
