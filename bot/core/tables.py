"""Tables for people to open in Excel: formula-safe cells, fitted columns, natural order.

A cell that starts with = + - @ (or a tab / carriage return) is run as a formula by Excel and
LibreOffice; a resident's text must never be (CSV/formula injection), so such a cell gets a
leading apostrophe. Buildings sort as people count them: 1栋, 2栋 … 10栋, 第二网格 before 第三网格.
"""
from __future__ import annotations

import re
import unicodedata

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MIN_WIDTH, MAX_WIDTH = 6, 60


def safe_cell(value):
    """A text cell a spreadsheet will not run as a formula (see the module docstring)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def display_width(value) -> int:
    """Columns a value takes in a spreadsheet: wide (CJK) characters count two."""
    text = "" if value is None else str(value)
    longest = max(text.split("\n"), key=len) if text else ""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in longest)


def fit_sheet(ws) -> None:
    """Freeze the header row and size each column to its widest cell (within limits)."""
    from openpyxl.utils import get_column_letter

    ws.freeze_panes = "A2"
    widths: dict[int, int] = {}
    for row in ws.iter_rows():
        for cell in row:
            widths[cell.column] = max(widths.get(cell.column, 0), display_width(cell.value))
    for col, w in widths.items():
        ws.column_dimensions[get_column_letter(col)].width = min(MAX_WIDTH, max(MIN_WIDTH, w + 2))


_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_RUNS = re.compile(r"(\d+|[零〇一二两三四五六七八九十百千]+)")


def _zh_int(run: str) -> int:
    """一 1, 十 10, 十二 12, 二十 20, 一百零五 105 (registers number grids and compounds in words)."""
    total = num = 0
    for c in run:
        if c in _ZH_DIGITS:
            num = _ZH_DIGITS[c]
        else:
            total += (num or 1) * _ZH_UNITS[c]
            num = 0
    return total + num


def natural_key(text) -> tuple:
    """Sort key that reads numbers as numbers: 1栋, 2栋 … 10栋 (not 1栋, 10栋, 2栋), and 第一网格,
    第二网格 … 第十网格 (not by the characters' code points, which put 三 before 二)."""
    out = []
    for part in _RUNS.split("" if text is None else str(text)):
        if not part:
            continue
        if part.isdigit():
            out.append((0, int(part), ""))
        elif part[0] in _ZH_DIGITS or part[0] in _ZH_UNITS:
            out.append((0, _zh_int(part), ""))
        else:
            out.append((1, 0, part))
    return tuple(out)
