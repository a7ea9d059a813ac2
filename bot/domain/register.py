"""The register (roster): import from the community office's CSV/XLSX, and tree counts.

One row per resident. Headers may be Chinese or English. A file with any bad row imports
nothing (one transaction) unless skip_bad is set. Re-import updates in place; people missing
from the new file are marked inactive, never deleted, so their history stays.

The file is hostile until read: its type is taken from its bytes, not its name (a CSV called
.xlsx imports as CSV; an .xls or a picture is refused); a CSV's encoding is found (UTF-8 with or
without BOM, or GB18030, which Excel on Chinese Windows writes as "GBK"); an XLSX's declared
unpacked size is checked before openpyxl opens it; rows are streamed twice (validate, then
write), so memory grows with the number of people, not with the size of their rows; a file
with no data rows, too many rows, or one that would mark more than `max_shrink` of the register
inactive is refused before anything is written. Every refusal is a RegisterError whose message
is one sentence (Chinese, from templates/messages/register_problem.j2) a person can act on.

Optional columns for the community's own loops: 产权人 (per resident: 是/否, 1/0, Y/N), 建筑面积
(per household, m²: the same on each of its rows, or on one), 党员中心户 / 红管家 (per household:
who looks after it, named by phone, by room in the same building — "2单元301", "301 王芳" — or by
name). A reference that names nobody or several people is a row error; a steward of more than
STEWARD_MAX_HOUSEHOLDS households is a warning (report.stewards_overloaded). A column left out of
the file reads as blank, like every other column: no owners, no areas, no stewards.
"""
from __future__ import annotations

import codecs
import csv
import re
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from bot.core import vocabulary
from bot.core.texts import render
from bot.data import register as data
from bot.data.store import Store

# canonical column -> accepted headers (lower-cased, spaces stripped): the shared vocabulary
COLUMNS: dict[str, tuple[str, ...]] = vocabulary.table("register.columns")
GROUP_COLUMNS: dict[str, tuple[str, ...]] = vocabulary.table("register.group_columns")
REQUIRED = ("name", "room", "building")
GROUP_REQUIRED = ("name", "kind")

ROLE_WORDS = vocabulary.table("register.roles")  # role -> words; the first is how the register names it
ROLE_OF = {w.lower(): role for role, words in ROLE_WORDS.items() for w in words}
# a role as the register names it (the first word of each list): what error messages say
ROLE_NAME = {role: words[0] for role, words in ROLE_WORDS.items()}
VULNERABLE = vocabulary.words("register.vulnerable")
GROUP_KINDS = vocabulary.table("register.group_kinds")
KIND_OF = {w.lower(): k for k, words in GROUP_KINDS.items() for w in words}
LEAD_ROLES_BY_LEVEL = {"grid": "grid_lead", "building": "building_lead"}
PLACE_LEVELS = ("community", "grid", "compound", "building")
KEY_FIELDS = ("community", "grid", "compound", "building", "unit", "room", "name", "phone")
PHONE_RE = re.compile(r"^(1\d{10}|0\d{2,3}-?\d{7,8})$")
SPLIT_RE = re.compile(r"[、,，/;；\s]+")
DEFAULT_COMMUNITY = "社区"
NO_VULNERABILITY = "无"
# 产权人: the vocabulary's words, and the ones it cannot hold ("是"/"yes" are also requests.yes)
OWNER_YES = {w.lower() for w in vocabulary.words("register.owner.yes")} | {"1", "是", "yes"}
OWNER_NO = {w.lower() for w in vocabulary.words("register.owner.no")} | {"0", "否", "no", NO_VULNERABILITY}
AREA_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:m²|m2|㎡|平方米|平米|平)?$", re.I)
MAX_AREA_M2 = 10_000.0          # no flat is larger; a bigger number is a typo (or 元, or a phone)
# a steward (党员中心户 / 红管家) is named on a household's rows by phone, by room in the same
# building ("2单元301", "301 王芳"), or by name; more households than this is a warning, not an error
STEWARD_MAX_HOUSEHOLDS = 15
STEWARD_ROOM_RE = re.compile(r"^(?:(?P<unit>\d+)\s*单元)?\s*(?P<room>\d{2,5})\s*(?:室|号|房)?\s*(?P<name>\S*)$")

# Limits. A 100,000-household community is ~240,000 rows: a 27 MB CSV, or a 20 MB XLSX whose
# sheet unpacks to 190 MB (openpyxl's inline strings; Excel's shared strings make it smaller).
# These leave ample room above that and refuse what no register is.
MAX_ROWS = 500_000              # data rows; [register] max_rows overrides
MAX_SHRINK = 0.2                # share of active residents one import may inactivate
MAX_FILE_BYTES = 256 << 20      # a CSV on disk
MAX_UNPACKED_BYTES = 768 << 20  # an XLSX's parts, as their zip entries declare them
MAX_SHARED_STRINGS = 128 << 20  # openpyxl holds the shared-string table in memory whole
MAX_PACK_RATIO = 200            # unpacked / packed, for a part larger than BOMB_CHECK_BYTES
BOMB_CHECK_BYTES = 16 << 20
MAX_LINE_CHARS = 64 << 10       # one physical CSV line (a row is ~150 characters)
MAX_COLUMNS = 256               # columns read from an XLSX row (the register has 13)
MAX_GROUP_ROWS = 100_000
EXCEL_MAX_ROWS = 1_048_576      # no sheet Excel writes has more
MAX_BAD_KEPT = 1000             # row errors kept for the report; the count goes on past it
HEADER_SEARCH_ROWS = 10         # a title row or two above the header is common in office files


@dataclass
class BadRow:
    row: int
    column: str
    reason: str
    sheet: str = ""  # "" the register, "groups" the groups sheet or file

    def __str__(self) -> str:
        return render("messages/register_bad_row.j2", row=self.row, column=self.column,
                      reason=self.reason, sheet=self.sheet)


@dataclass
class ImportReport:
    residents: int = 0        # active residents in the file, after the import
    households: int = 0
    groups: int = 0
    inactivated: int = 0      # residents marked inactive (moved out)
    added: int = 0            # residents new to the register
    updated: int = 0          # residents whose row changed (or who came back)
    households_added: int = 0
    households_inactivated: int = 0
    leads_changed: int = 0    # lead links added plus lead links removed
    bad: list[BadRow] = field(default_factory=list)
    bad_count: int = 0        # every bad row, also those past MAX_BAD_KEPT
    rows: int = 0             # data rows read
    dry_run: bool = False
    refusal: str = ""         # dry run: why the real import would be refused (too many leave)
    committed: bool = False
    # vulnerable residents nobody is assigned to (联系社工 empty or unknown): a warning, not an error —
    # their one-to-one visits go to the grid lead at once
    without_worker: list[dict] = field(default_factory=list)
    # stewards (党员中心户 / 红管家) looking after more than STEWARD_MAX_HOUSEHOLDS households: a
    # warning; and how many households have a steward
    stewards_overloaded: list[dict] = field(default_factory=list)
    stewarded: int = 0

    def add_bad(self, bad: BadRow) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_BAD_KEPT:
            self.bad.append(bad)


class RegisterError(Exception):
    """A register import refused. `str(e)` is one sentence for a person; `report` has the rows."""

    def __init__(self, message: str, report: ImportReport | None = None, code: str = ""):
        self.report = report if report is not None else ImportReport()
        self.code = code
        super().__init__(message)


class FileRefused(RegisterError):
    """The file as a whole: missing, unreadable, of another type, empty, too big."""

    def __init__(self, code: str, report: ImportReport | None = None, **params):
        super().__init__(problem(code, **params), report, code)
        self.found = False  # missing_columns: whether some of the required columns were there


class BadRowsError(RegisterError):
    """Rows that cannot be imported (listed in report.bad); nothing was written."""

    def __init__(self, report: ImportReport):
        super().__init__(f"{report.bad_count} bad row(s); nothing imported", report)


class ShrinkRefused(RegisterError):
    """The file would mark too much of the register inactive (a truncated or wrong file)."""


ImportError_ = RegisterError  # the old name; callers catch it for every refusal


class _DryRun(Exception):
    """Raised inside the import's transaction to roll a dry run back."""


def problem(code: str, **params) -> str:
    return render("messages/register_problem.j2", code=code, **params)


# -- reading files -------------------------------------------------------------------------
def _sniff(path: Path) -> str:
    """'xlsx' or 'csv', from the file's first bytes; anything else is refused."""
    if not path.exists():
        raise FileRefused("not_found", path=str(path))
    if not path.is_file():
        raise FileRefused("not_a_file", path=str(path))
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise FileRefused("unreadable", path=str(path), detail=e.strerror or str(e)) from None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):  # OLE2: Excel 97-2003 .xls, or a password-protected .xlsx
        raise FileRefused("old_xls")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text" is UTF-16
        raise FileRefused("utf16")
    return "csv"


def _csv_encoding(path: Path) -> str:
    """UTF-8 (BOM or not) or GB18030 (a superset of GBK), checked over the whole file in chunks."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise FileRefused("too_big_file", limit_mb=MAX_FILE_BYTES >> 20)
    for encoding in ("utf-8", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)("strict")
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    if b"\x00" in chunk:  # no text encoding we accept has NUL bytes
                        raise FileRefused("binary")
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return "utf-8-sig" if encoding == "utf-8" else encoding
    raise FileRefused("unknown_encoding")


def _bounded_lines(f) -> Iterator[str]:
    """The file's lines, refusing one longer than MAX_LINE_CHARS instead of reading it whole."""
    n = 0
    while True:
        line = f.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE_CHARS:
            raise FileRefused("line_too_long", row=n, limit=MAX_LINE_CHARS)
        yield line


class _Table:
    """One sheet of a register file: rows as lists of strings, re-readable (two passes)."""

    def __init__(self, path: Path, sheet: int = 0):
        self.path, self.sheet = path, sheet
        self.kind = _sniff(path)
        self.wb = None
        self.spool = None
        if self.kind == "csv":
            self.encoding = _csv_encoding(path) if sheet == 0 else None
        else:
            self.wb = _open_workbook(path)

    def exists(self) -> bool:
        return self.kind == "xlsx" and self.sheet < len(self.wb.worksheets) or (
            self.kind == "csv" and self.sheet == 0)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(row number as the spreadsheet shows it, cells). Blank rows are skipped."""
        source = self._xlsx_rows() if self.kind == "xlsx" else self._csv_rows()
        for n, cells in source:
            if any(cells):
                yield n, cells

    def _csv_rows(self):
        n = 0
        try:
            with open(self.path, encoding=self.encoding, newline="") as f:
                for n, row in enumerate(csv.reader(_bounded_lines(f)), start=1):
                    yield n, [c.strip() for c in row]
        except csv.Error as e:
            raise FileRefused("csv_error", row=n + 1, detail=str(e)) from None
        except (OSError, UnicodeDecodeError) as e:  # the file changed between the two passes
            raise FileRefused("unreadable", path=str(self.path), detail=str(e)) from None

    def _xlsx_rows(self):
        if self.spool is not None:  # read whole once already: the second pass reads the spool
            self.spool.seek(0)
            for line in csv.reader(self.spool):
                yield int(line[0]), line[1:]
            return
        if self.sheet >= len(self.wb.worksheets):  # a workbook of chart sheets only, or none
            return
        ws = self.wb.worksheets[self.sheet]
        # parsing the sheet's XML is most of an XLSX import's time: the first full read copies
        # the non-blank rows to a temporary CSV on disk (memory stays flat) for the next one
        spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")
        out = csv.writer(spool)
        n = 0
        try:
            for n, row in enumerate(ws.iter_rows(values_only=True, max_col=MAX_COLUMNS), start=1):
                if n > EXCEL_MAX_ROWS:  # openpyxl pads up to any row number the XML claims
                    raise FileRefused("too_many_rows", limit=EXCEL_MAX_ROWS)
                cells = [_cell(v) for v in row]
                if any(cells):
                    out.writerow([n, *cells])
                yield n, cells
        except FileRefused:
            spool.close()
            raise
        except Exception as e:  # noqa: BLE001 - see _open_workbook
            spool.close()
            raise FileRefused("bad_workbook", detail=f"row {n + 1}: {type(e).__name__}") from None
        except BaseException:  # GeneratorExit: the header search stopped early; no spool
            spool.close()
            raise
        self.spool = spool

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
        if self.wb is not None:
            self.wb.close()


def _open_workbook(path: Path):
    """openpyxl in read-only (streaming) mode, after checking the zip's declared sizes: zipfile
    never unpacks past an entry's declared size (it stops and fails the CRC), so the sum of the
    declared sizes bounds what openpyxl can make of the file."""
    import openpyxl

    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except Exception as e:  # noqa: BLE001
        # zipfile on a damaged archive raises BadZipFile, but also NotImplementedError (an
        # unknown zip version, found by the fuzz target), ValueError, EOFError, OSError ...
        raise FileRefused("bad_workbook", detail=type(e).__name__) from None
    names = {i.filename for i in infos}
    if "xl/workbook.xml" not in names:
        raise FileRefused("not_workbook")
    if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES or any(
            i.filename == "xl/sharedStrings.xml" and i.file_size > MAX_SHARED_STRINGS for i in infos):
        raise FileRefused("too_big_unpacked", limit_mb=MAX_UNPACKED_BYTES >> 20)
    # a sheet packs about 10:1 (measured: 9.3 for the 100k-household register); a large part
    # packed hundreds to one is repetition made to be unpacked, i.e. a zip bomb under the cap
    if any(i.file_size > BOMB_CHECK_BYTES and i.file_size > MAX_PACK_RATIO * max(i.compress_size, 1)
           for i in infos):
        raise FileRefused("too_big_unpacked", limit_mb=MAX_UNPACKED_BYTES >> 20)
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001
        # openpyxl fails on a malformed workbook with whatever its parser hit (KeyError,
        # ValueError, TypeError, XML errors, zipfile errors ...); all mean "damaged file"
        raise FileRefused("bad_workbook", detail=type(e).__name__) from None


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _header_lookup(columns: dict) -> dict[str, str]:
    return {alias.lower().replace(" ", ""): canon for canon, al in columns.items() for alias in al}


def _find_header(rows: Iterator[tuple[int, list[str]]], columns: dict, required: tuple[str, ...],
                 where: str = ""):
    """The header row: the first of the first few non-blank rows that has every required column
    (a title row above the header is common). Returns (row number, {canon: index}, headers)."""
    lookup = _header_lookup(columns)
    first = None
    for k, (n, cells) in enumerate(rows):
        mapping = {}
        for i, h in enumerate(cells):
            canon = lookup.get(h.lower().replace(" ", ""))
            if canon and canon not in mapping:
                mapping[canon] = i
        if first is None:
            first = (n, mapping, cells)
        if all(c in mapping for c in required):
            return n, mapping, cells
        if k + 1 >= HEADER_SEARCH_ROWS:
            break
    if first is None:
        raise FileRefused("no_header")
    _, mapping, cells = first
    missing = [c for c in required if c not in mapping]
    names = "、".join(f"{columns[c][0]}（{columns[c][-1]}）" for c in missing)
    e = FileRefused("missing_columns", columns=names, seen="、".join(h for h in cells if h)[:300],
                    where=where)
    e.found = any(c in mapping for c in required)  # some of the required columns are there
    raise e


class _Sheet:
    """A sheet with its header found: records as {canonical column: value}, and how the file
    names each column (for row errors)."""

    def __init__(self, table: _Table, columns: dict, required: tuple[str, ...], where: str = ""):
        self.table = table
        self.header_row, self.index, headers = _find_header(table.rows(), columns, required, where)
        self.label = {c: headers[i] for c, i in self.index.items()}
        self.columns = columns

    def column(self, canon: str) -> str:
        return self.label.get(canon) or self.columns[canon][0]

    def records(self) -> Iterator[tuple[int, dict[str, str]]]:
        for n, cells in self.table.rows():
            if n <= self.header_row:
                continue
            yield n, {c: (cells[i] if i < len(cells) else "") for c, i in self.index.items()}


def read_table(path: Path, sheet: int = 0) -> list[dict[str, str]] | None:
    """Rows of a CSV file or one sheet of an XLSX file as dicts keyed by raw header (small files:
    tests and tools). Returns None when an XLSX file has no such sheet."""
    table = _Table(Path(path), sheet)
    try:
        if not table.exists():
            return None
        rows = list(table.rows())
    finally:
        table.close()
    if not rows:
        return []
    headers = rows[0][1]
    # zip without strict: a short row leaves its last columns out
    return [dict(zip(headers, cells, strict=False)) for _, cells in rows[1:]]


# -- validation ----------------------------------------------------------------------------
def _parse_roles(text: str) -> tuple[list[str], str | None]:
    roles = []
    for word in SPLIT_RE.split(text.strip()):
        if not word:
            continue
        role = ROLE_OF.get(word.lower())
        if role is None:
            return [], problem("unknown_role", word=word, known="、".join(ROLE_NAME.values()))
        if role not in roles:
            roles.append(role)
    return roles or ["resident"], None


def _validate(i: int, r: dict, sheet: _Sheet) -> tuple[dict | None, list[BadRow]]:
    bad = []
    col = sheet.column
    row = dict(r)
    if not row.get("name"):
        bad.append(BadRow(i, col("name"), problem("empty_name")))
    roles, err = _parse_roles(row.get("roles", ""))
    if err:
        bad.append(BadRow(i, col("roles"), err))
    for level in PLACE_LEVELS:
        if "/" in row.get(level, ""):  # "/" joins a node's path: it would merge two places
            bad.append(BadRow(i, col(level), problem("slash_in_place", value=row[level])))
    for key_field in KEY_FIELDS:
        if "|" in row.get(key_field, ""):  # "|" joins a person's key
            bad.append(BadRow(i, col(key_field), problem("bar_in_value", value=row[key_field])))
    if row.get("room"):
        for level in ("grid", "compound", "building"):
            if not row.get(level):
                bad.append(BadRow(i, col(level), problem("place_missing_for_room", place=col(level))))
    elif "resident" in roles and not ({"staff", "social_worker", "grid_lead"} & set(roles)):
        bad.append(BadRow(i, col("room"), problem(
            "room_missing", resident=ROLE_NAME["resident"],
            exempt="、".join(ROLE_NAME[r] for r in ("staff", "social_worker", "grid_lead")))))
    for level, role in LEAD_ROLES_BY_LEVEL.items():
        if role in roles and not row.get(level):
            bad.append(BadRow(i, col(level), problem("lead_without_place", role=ROLE_NAME[role],
                                                     place=col(level))))
    phone = re.sub(r"\s", "", row.get("phone", ""))
    if phone and not PHONE_RE.match(phone):
        bad.append(BadRow(i, col("phone"), problem("bad_phone", value=phone)))
    cats = [c for c in SPLIT_RE.split(row.get("vulnerable", "")) if c and c != NO_VULNERABILITY]
    for c in cats:
        if c not in VULNERABLE:
            bad.append(BadRow(i, col("vulnerable"), problem("unknown_vulnerable", word=c,
                                                            known="、".join(VULNERABLE))))
    owner_word = row.get("owner", "").strip().lower()
    owner = 1 if owner_word in OWNER_YES else 0
    if owner_word and owner_word not in OWNER_YES | OWNER_NO:
        bad.append(BadRow(i, col("owner"), problem("bad_owner", value=row["owner"])))
    area = None
    if row.get("area"):
        m = AREA_RE.match(row["area"].replace(",", "").replace("，", ""))
        area = float(m.group(1)) if m else None
        if area is None or not 0 < area <= MAX_AREA_M2:
            bad.append(BadRow(i, col("area"), problem("bad_area", value=row["area"], limit=int(MAX_AREA_M2))))
        elif not row.get("room"):
            bad.append(BadRow(i, col("area"), problem("household_value_without_room", column=col("area"))))
    if row.get("steward") and not row.get("room"):
        bad.append(BadRow(i, col("steward"), problem("household_value_without_room", column=col("steward"))))
    if bad:
        return None, bad
    row.update(phone=phone, roles=roles, vulnerable="、".join(cats),
               community=row.get("community") or DEFAULT_COMMUNITY, owner=owner, area=area,
               steward=re.sub(r"\s+", " ", row.get("steward", "")).strip())
    return row, []


def _person_key(r: dict) -> str:
    if r.get("room"):
        return "|".join([r["community"], r["grid"], r["compound"], r["building"],
                         r.get("unit", ""), r["room"], r["name"]])
    return "|".join([r["community"], "staff", r["name"], r.get("phone", "")])


def _node_parts(r: dict) -> list[tuple[str, str]]:
    parts = [("community", r["community"])]
    for kind in ("grid", "compound", "building"):
        if r.get(kind):
            parts.append((kind, r[kind]))
        else:
            break
    return parts


@dataclass
class _Checked:
    """What the validation pass keeps: per person a key, not the row."""
    bad_rows: set[int] = field(default_factory=set)
    keys: dict[str, int] = field(default_factory=dict)        # person key -> first row
    workers: dict[str, str] = field(default_factory=dict)     # social worker name -> key
    accounts: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)  # -> row, key
    # per household (building path, unit, room): [area, its row, steward reference, its row]
    households: dict[tuple[str, str, str], list] = field(default_factory=dict)
    # the people a steward reference may name (only when the file has a steward column)
    people: "_People | None" = None
    steward_of: dict[tuple[str, str, str], str] = field(default_factory=dict)  # household -> key

    def good_keys(self) -> set[str]:
        return {k for k, n in self.keys.items() if n not in self.bad_rows}


def _check(sheet: _Sheet, report: ImportReport, max_rows: int) -> _Checked:
    """First pass: every row validated, duplicates and references checked, nothing kept but keys."""
    checked = _Checked(people=_People() if "steward" in sheet.index else None)
    accounts = checked.accounts
    worker_refs: list[tuple[int, str]] = []

    def bad(b: BadRow) -> None:
        report.add_bad(b)
        checked.bad_rows.add(b.row)

    for i, r in sheet.records():
        report.rows += 1
        if report.rows > max_rows:
            raise FileRefused("too_many_rows", report, limit=max_rows)
        row, errors = _validate(i, r, sheet)
        for e in errors:
            bad(e)
        if row is None:
            continue
        key = _person_key(row)
        if key in checked.keys:
            bad(BadRow(i, sheet.column("name"), problem("duplicate", first=checked.keys[key])))
            continue
        dup = False
        for column in ("wecom_userid", "oa_openid"):
            value = row.get(column, "")
            if value:
                first = accounts.setdefault((column, value), (i, key))[0]
                if first != i:
                    bad(BadRow(i, sheet.column(column), problem("duplicate_account", value=value,
                                                                first=first)))
                    dup = True
        if dup:
            continue
        checked.keys[key] = i
        if row.get("room") and not _household_values(i, row, sheet, checked, bad):
            continue
        if checked.people is not None:
            checked.people.add(key, i, row)
        if "social_worker" in row["roles"]:
            checked.workers[row["name"]] = key
        if row.get("social_worker"):
            worker_refs.append((i, row["social_worker"]))
    if report.rows == 0:
        raise FileRefused("no_rows", report)
    # a worker whose own row is bad is no worker: the people referring to them are bad too
    live = {name for name, key in checked.workers.items() if checked.keys[key] not in checked.bad_rows}
    for i, name in worker_refs:
        if name not in live and i not in checked.bad_rows:
            bad(BadRow(i, sheet.column("social_worker"), problem(
                "not_social_worker", name=name, role=ROLE_NAME["social_worker"])))
    if checked.people is not None:
        _resolve_stewards(checked, sheet, report, bad)
    return checked


def _household_key(row: dict) -> tuple[str, str, str]:
    return ("/".join(n for _, n in _node_parts(row)), row.get("unit", ""), row["room"])


def _household_values(i: int, row: dict, sheet: _Sheet, checked: _Checked, bad) -> bool:
    """A household's area and steward, the same on each of its rows (a blank cell agrees with
    anything). A row that says otherwise is bad; returns False for it."""
    entry = checked.households.setdefault(_household_key(row), [None, 0, "", 0])
    ok = True
    if row["area"] is not None:
        if entry[0] is not None and entry[0] != row["area"]:
            bad(BadRow(i, sheet.column("area"), problem("household_conflict", column=sheet.column("area"),
                                                         value=row.get("area"), other=f"{entry[0]:g}",
                                                         first=entry[1])))
            ok = False
        elif entry[0] is None:
            entry[0], entry[1] = row["area"], i
    if row["steward"]:
        if entry[2] and entry[2] != row["steward"]:
            bad(BadRow(i, sheet.column("steward"), problem("household_conflict", column=sheet.column("steward"),
                                                           value=row["steward"], other=entry[2],
                                                           first=entry[3])))
            ok = False
        elif not entry[2]:
            entry[2], entry[3] = row["steward"], i
    return ok


def _unit_no(unit: str) -> str:
    return unit.replace("单元", "").strip()


class _People:
    """Who a steward reference can name: people by phone, by room in a building, by name. Kept
    only when the file has a steward column (a few small tuples per person)."""

    def __init__(self):
        self.by_phone: dict[str, list[str]] = {}
        self.by_room: dict[tuple[str, str, str], list[tuple[str, int, str, tuple]]] = {}
        self.units: dict[tuple[str, str], list[tuple[str, str, str]]] = {}  # (path, room) -> rooms
        self.by_name: dict[str, list[tuple[str, str]]] = {}  # name -> (key, building path)
        self.row_of: dict[str, int] = {}
        self.label_of: dict[str, str] = {}
        self.name_of: dict[str, str] = {}

    def add(self, key: str, i: int, row: dict) -> None:
        self.row_of[key] = i
        self.name_of[key] = row["name"]
        if row.get("phone"):
            self.by_phone.setdefault(row["phone"], []).append(key)
        path = ""
        if row.get("room"):
            path = _household_key(row)[0]
            room = (path, _unit_no(row.get("unit", "")), row["room"])
            if room not in self.by_room:
                self.units.setdefault((path, row["room"]), []).append(room)
            self.by_room.setdefault(room, []).append((key, i, row["name"], tuple(row["roles"])))
            self.label_of[key] = f"{row['compound']}{row['building']}{row.get('unit', '')}{row['room']}"
        self.by_name.setdefault(row["name"], []).append((key, path))

    def resolve(self, ref: str, path: str, good) -> tuple[str | None, str]:
        """(person key, "") or (None, why: 'unknown' / 'ambiguous')."""
        phone = re.sub(r"[\s-]", "", ref)
        if PHONE_RE.match(phone) or PHONE_RE.match(ref):
            keys = [k for k in self.by_phone.get(ref, []) + self.by_phone.get(phone, []) if good(k)]
            keys = list(dict.fromkeys(keys))
            return (keys[0], "") if len(keys) == 1 else (None, "ambiguous" if keys else "unknown")
        m = STEWARD_ROOM_RE.match(ref)
        if m:
            unit, room, name = m.group("unit") or "", m.group("room"), m.group("name")
            homes = [hk for hk in self.units.get((path, room), []) if not unit or hk[1] == unit]
            if len(homes) != 1:
                return None, "ambiguous" if homes else "unknown"
            members = [p for p in self.by_room[homes[0]] if good(p[0])]
            if name:
                members = [p for p in members if p[2] == name]
                return (members[0][0], "") if len(members) == 1 else (None, "ambiguous" if members else "unknown")
            if not members:
                return None, "unknown"
            # the household's steward, else its party member, else the first listed (its head)
            members.sort(key=lambda p: ("steward" not in p[3], "party_member" not in p[3], p[1]))
            return members[0][0], ""
        named = [(k, p) for k, p in self.by_name.get(ref, []) if good(k)]
        local = [k for k, p in named if p == path]
        if len(local) == 1:
            return local[0], ""
        if len(named) == 1:
            return named[0][0], ""
        return None, "ambiguous" if named else "unknown"


def _resolve_stewards(checked: _Checked, sheet: _Sheet, report: ImportReport, bad) -> None:
    """Each household's steward reference names exactly one good row of the file."""
    people = checked.people

    def good(key: str) -> bool:
        return checked.keys.get(key) not in checked.bad_rows

    load: dict[str, int] = {}
    for hk, (_, _, ref, row) in checked.households.items():
        if not ref or row in checked.bad_rows:
            continue
        key, why = people.resolve(ref, hk[0], good)
        if key is None:
            bad(BadRow(row, sheet.column("steward"), problem(f"steward_{why}", value=ref)))
            continue
        checked.steward_of[hk] = key
    # a steward whose own row turned out bad above (skip_bad goes on without it) is nobody's
    for hk, key in list(checked.steward_of.items()):
        if not good(key):
            del checked.steward_of[hk]
        else:
            load[key] = load.get(key, 0) + 1
    for key, n in load.items():
        if n > STEWARD_MAX_HOUSEHOLDS:
            report.stewards_overloaded.append(dict(name=people.name_of[key], label=people.label_of.get(key, ""), households=n,
                                                   row=people.row_of.get(key), limit=STEWARD_MAX_HOUSEHOLDS))


# -- writing -------------------------------------------------------------------------------
class _Tree:
    """Find-or-create nodes by path, cached for the import."""

    def __init__(self, store: Store):
        self.store = store
        self.ids = data.node_paths(store)

    def node(self, parts: list[tuple[str, str]]) -> int:
        parent, path = None, ""
        for kind, name in parts:
            path = f"{path}/{name}" if path else name
            nid = self.ids.get(path)
            if nid is None:
                nid = data.add_node(self.store, kind, name, parent, path)
                self.ids[path] = nid
            parent = nid
        return parent


def _signature(name, phone, household_id, node_id, roles, vulnerable, social_worker_id,
               wecom_userid, oa_openid, owner) -> int:
    """A resident's imported fields, hashed: re-importing an unchanged row writes nothing, and the
    index of the register costs a number per person instead of a row."""
    return hash((name, phone, household_id, node_id, roles, vulnerable, social_worker_id,
                 wecom_userid, oa_openid, owner))


class _Existing:
    """The register as it stands: person key -> (id, signature, active), households by place."""

    def __init__(self, store: Store):
        self.residents: dict[str, list] = {}
        self.active = 0
        for (rid, key, name, phone, hh, node, roles, vuln, sw, wecom, oa, owner, active, _) in \
                data.iter_residents(store):
            self.residents[key] = (rid, _signature(name, phone, hh, node, roles, vuln, sw, wecom, oa, owner),
                                   active)
            self.active += active
        # (building, unit, room) -> [id, label, active, area_m2, steward_id]
        self.households: dict[tuple, list] = {
            (b, u, r): [hid, label, active, area, steward]
            for hid, b, u, r, label, active, area, steward in data.iter_households(store)}


@contextmanager
def _opened(path: Path, sheet: int = 0):
    table = _Table(path, sheet)
    try:
        yield table
    finally:
        table.close()


def import_register(store: Store, path: str | Path, *, groups_path: str | Path | None = None,
                    skip_bad: bool = False, now: float = 0.0, dry_run: bool = False,
                    max_shrink: float = MAX_SHRINK, allow_shrink: bool = False,
                    max_rows: int = MAX_ROWS) -> ImportReport:
    """Import a register file (and its groups sheet/file) into the store.

    Raises RegisterError (FileRefused, BadRowsError, ShrinkRefused) and writes nothing when the
    file cannot be imported. dry_run: everything is done and counted in the transaction, which is
    then rolled back."""
    report = ImportReport(dry_run=dry_run)
    with _opened(Path(path)) as table:
        sheet = _Sheet(table, COLUMNS, REQUIRED)
        checked = _check(sheet, report, max_rows)
        if report.bad_count and not skip_bad:
            raise BadRowsError(report)
        good = checked.good_keys()
        if not good:
            raise FileRefused("no_good_rows", report)
        groups = _read_groups(Path(path), table, groups_path)

        try:
            # the write lock is taken only now: the first pass above read the file alone
            with store.transaction():
                existing = _Existing(store)
                try:
                    _refuse_shrink(existing, good, report, max_shrink, allow_shrink)
                except ShrinkRefused as e:
                    if not dry_run:
                        raise
                    report.refusal = str(e)  # a dry run still shows what the file would change
                data.defer_foreign_keys(store)  # a row may name a social worker listed below it
                _write(store, sheet, checked, existing, groups, report, now, skip_bad)
                report.without_worker = data.vulnerable_without_worker(store)
                if report.bad_count and not skip_bad:
                    raise BadRowsError(report)
                if dry_run:
                    raise _DryRun
        except _DryRun:
            return report
    report.committed = True
    return report


def _refuse_shrink(existing: _Existing, good: set[str], report: ImportReport, max_shrink: float,
                   allow_shrink: bool) -> None:
    """A file that would mark more than max_shrink of the active residents inactive is more
    likely a truncated export or the wrong sheet than a third of the community moving out."""
    leaving = sum(1 for k, (_, _, active) in existing.residents.items() if active and k not in good)
    if existing.active and leaving > max_shrink * existing.active and not allow_shrink:
        report.inactivated = leaving
        raise ShrinkRefused(problem("shrink", n=leaving, total=existing.active,
                                    pct=round(100 * leaving / existing.active, 1),
                                    limit=round(100 * max_shrink, 1)), report)


def _read_groups(path: Path, table: _Table, groups_path) -> list[tuple[int, dict]] | None:
    """The groups sheet (second XLSX sheet) or file, small enough to hold; None when there is none
    (the groups stay as they are)."""
    if groups_path is not None:
        with _opened(Path(groups_path)) as gt:
            return _group_records(gt, implicit=False)
    if table.kind == "xlsx" and len(table.wb.worksheets) > 1:
        return _group_records(_SecondSheet(table), implicit=True)
    return None


class _SecondSheet(_Table):
    """The groups sheet of an already opened workbook."""

    def __init__(self, table: _Table):  # no super().__init__(): it would open the file again
        self.path, self.sheet, self.kind, self.wb = table.path, 1, "xlsx", table.wb
        self.spool = None

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


def _group_records(table: _Table, implicit: bool) -> list[tuple[int, dict]] | None:
    """implicit: the workbook's second sheet, which may be something else (notes, last year's
    list): without a group name or kind column it is not a groups sheet."""
    try:
        sheet = _Sheet(table, GROUP_COLUMNS, GROUP_REQUIRED, where="groups")
    except FileRefused as e:
        if e.code == "no_header" or (implicit and e.code == "missing_columns" and not e.found):
            return None  # no groups given: the groups stay as they are
        raise
    out = []
    for n, r in sheet.records():
        if len(out) >= MAX_GROUP_ROWS:
            raise FileRefused("too_many_rows", limit=MAX_GROUP_ROWS)
        out.append((n, r, sheet))
    return out or None  # a header without rows changes nothing either


def _write(store: Store, sheet: _Sheet, checked: _Checked, existing: _Existing, groups,
           report: ImportReport, now: float, skip_bad: bool) -> None:
    tree = _Tree(store)
    next_res = data.max_id(store, "residents")
    next_hh = data.max_id(store, "households")
    # ids are chosen here (the transaction holds the write lock), so a batch needs no read-back
    # and a social worker's id is known before their row is written
    new_ids: dict[str, int] = {}

    def id_for(key: str) -> tuple[int, bool]:
        nonlocal next_res
        if key in existing.residents:
            return existing.residents[key][0], False
        if key not in new_ids:
            next_res += 1
            new_ids[key] = next_res
        return new_ids[key], True

    worker_ids = {name: id_for(key)[0] for name, key in checked.workers.items()
                  if checked.keys[key] not in checked.bad_rows}
    seen_res: set[int] = set()
    seen_hh: set[int] = set()
    # group owners are named; only those names are worth remembering (not every resident's)
    owners = {g.get("owner") for _, g, _ in groups or () if g.get("owner")}
    ids_by_name: dict[str, list[int]] = {}
    links: list[tuple[int, int, int]] = []
    ranks: dict[int, int] = {}
    new_res, changed_res, new_hh, changed_hh = [], [], [], []
    rows_of: dict[int, int] = {}  # resident id -> row, for conflicts found on write
    steward_changes: list[tuple[int | None, int]] = []  # (steward id, household id)

    def flush() -> None:
        data.insert_households(store, new_hh)
        data.update_households(store, changed_hh)
        for rec, _err in data.write_residents(store, new_res, changed_res):
            value = rec.get("wecom_userid") or rec.get("oa_openid") or ""
            column = sheet.column("wecom_userid" if rec.get("wecom_userid") else "oa_openid")
            report.add_bad(BadRow(rows_of[rec["id"]], column, problem("account_taken", value=value)))
            failed.add(rec["id"])
        for batch in (new_hh, changed_hh, new_res, changed_res):
            batch.clear()
        rows_of.clear()

    failed: set[int] = set()
    data.release_accounts(store, {a: key for a, (n, key) in checked.accounts.items()
                                  if n not in checked.bad_rows})
    for i, r in sheet.records():
        if i in checked.bad_rows:
            continue
        row, _ = _validate(i, r, sheet)
        if row is None:  # cannot happen: the first pass saw the same row
            continue
        parts = _node_parts(row)
        node_id = tree.node(parts)
        hh_id = None
        if row.get("room"):
            hk = (node_id, row.get("unit", ""), row["room"])
            label = f"{row['compound']}{row['building']}{row.get('unit', '')}{row['room']}"
            check_key = _household_key(row)
            area = (checked.households.get(check_key) or [None])[0]
            steward_key = checked.steward_of.get(check_key)
            steward_id = id_for(steward_key)[0] if steward_key else None
            known = existing.households.get(hk)
            if known is None:
                next_hh += 1
                known = existing.households[hk] = [next_hh, label, 1, area, None]
                new_hh.append(dict(id=next_hh, building_id=node_id, unit=hk[1], room=hk[2],
                                   label=label, active=1, area_m2=area))
                report.households_added += 1
            elif known[0] not in seen_hh and (known[1] != label or not known[2] or known[3] != area):
                changed_hh.append(dict(id=known[0], building_id=node_id, unit=hk[1], room=hk[2],
                                       label=label, active=1, area_m2=area))
                known[1:4] = [label, 1, area]
            if known[0] not in seen_hh and known[4] != steward_id:
                # written once every resident is: a household naming a steward not yet written
                # would leave a deferred foreign-key violation open, and SQLite then looks for
                # its children on every resident inserted after it
                steward_changes.append((steward_id, known[0]))
                known[4] = steward_id
            hh_id = known[0]
            if steward_id is not None and hh_id not in seen_hh:
                report.stewarded += 1
            seen_hh.add(hh_id)
        key = _person_key(row)
        rid, is_new = id_for(key)
        values = dict(name=row["name"], phone=row.get("phone", ""), household_id=hh_id,
                      node_id=node_id, roles=",".join(row["roles"]), vulnerable=row["vulnerable"],
                      social_worker_id=worker_ids.get(row.get("social_worker", "")) if row.get(
                          "social_worker") else None,
                      wecom_userid=row.get("wecom_userid") or None,
                      oa_openid=row.get("oa_openid") or None, owner=row["owner"])
        record = dict(id=rid, key=key, **values, active=1, updated_at=now)
        if is_new:
            new_res.append(record)
            report.added += 1
        else:
            old = existing.residents[key]
            if old[1] != _signature(**values) or not old[2]:
                changed_res.append(record)
                report.updated += 1
        rows_of[rid] = i
        seen_res.add(rid)
        if row["name"] in owners:
            ids_by_name.setdefault(row["name"], []).append(rid)
        for level, role in LEAD_ROLES_BY_LEVEL.items():
            if role in row["roles"]:
                level_node = tree.ids["/".join(n for _, n in parts[:{"grid": 2, "building": 4}[level]])]
                rank = ranks.get(level_node, 0)
                links.append((level_node, rid, rank))
                ranks[level_node] = rank + 1
        if len(new_res) + len(changed_res) >= data.BATCH:
            flush()
    flush()
    if failed:  # only with skip_bad does the import go on; drop what pointed at those rows
        seen_res -= failed
        links = [link for link in links if link[1] not in failed]
        data.unlink_social_worker(store, failed)
        steward_changes = [(None if s in failed else s, h) for s, h in steward_changes]
        report.added -= len(failed & set(new_ids.values()))
    data.set_stewards(store, steward_changes)
    old_links = data.lead_links(store)
    if set(links) != old_links:
        report.leads_changed = len(set(links) ^ old_links)
        data.replace_leads(store, links)
    report.inactivated = data.inactivate(
        store, "residents", (v[0] for v in existing.residents.values() if v[2] and v[0] not in seen_res), now)
    report.households_inactivated = data.inactivate(
        store, "households", (v[0] for v in existing.households.values() if v[2] and v[0] not in seen_hh))
    report.residents, report.households = len(seen_res), len(seen_hh)
    if groups is not None:
        _write_groups(store, tree, groups, ids_by_name, report)
    data.log_import(store, now, residents=report.residents, households=report.households,
                    groups=report.groups, inactivated=report.inactivated, added=report.added,
                    updated=report.updated, bad=report.bad_count)


def _write_groups(store, tree: _Tree, groups: list, ids_by_name, report: ImportReport) -> None:
    seen = set()
    kind_names = {k: words[0] for k, words in GROUP_KINDS.items()}
    for i, g, sheet in groups:
        col = sheet.column
        kind = KIND_OF.get(g.get("kind", "").lower())
        if kind is None:
            report.add_bad(BadRow(i, col("kind"), problem("unknown_group_kind", word=g.get("kind", ""),
                                                           known="、".join(kind_names.values())), "groups"))
            continue
        if kind in ("app_chat", "robot", "customer") and not g.get("chat_id"):
            report.add_bad(BadRow(i, col("chat_id"), problem("group_needs_chat_id", kind=kind_names[kind]),
                                  "groups"))
            continue
        g["community"] = g.get("community") or DEFAULT_COMMUNITY
        if any("/" in g.get(level, "") for level in PLACE_LEVELS):
            level = next(lv for lv in PLACE_LEVELS if "/" in g.get(lv, ""))
            report.add_bad(BadRow(i, col(level), problem("slash_in_place", value=g[level]), "groups"))
            continue
        path = "/".join(n for _, n in _node_parts(g))
        node_id = tree.ids.get(path)
        if node_id is None:
            deepest = [lv for lv in PLACE_LEVELS if g.get(lv)][-1]  # community is always set
            report.add_bad(BadRow(i, col(deepest), problem("no_such_place", place=path), "groups"))
            continue
        owner_id = None
        if g.get("owner"):
            owner_ids = ids_by_name.get(g["owner"], [])
            if not owner_ids:
                report.add_bad(BadRow(i, col("owner"), problem("owner_not_found", name=g["owner"]), "groups"))
                continue
            owner_id = _pick_owner(store, owner_ids, node_id, path)
            if owner_id is None:
                report.add_bad(BadRow(i, col("owner"), problem("owner_ambiguous", name=g["owner"]), "groups"))
                continue
        data.upsert_group(store, node_id, g["name"], kind, g.get("chat_id", ""), owner_id)
        seen.add((node_id, g["name"]))
        report.groups += 1
    data.inactivate(store, "chat_groups",
                    [gid for gid, node_id, name in data.active_groups(store) if (node_id, name) not in seen])


def _pick_owner(store, candidates: list[int], node_id: int, path: str) -> int | None:
    """Names repeat in a community: prefer the person who leads this node, then one who lives
    here; a single candidate is taken as is."""
    if len(candidates) == 1:
        return candidates[0]
    lead = data.lead_among(store, node_id, candidates)
    if lead is not None:
        return lead
    for pattern in (path, path + "/%"):  # attached to this very node first, then anywhere below
        local = data.attached_under(store, candidates, pattern)
        if len(local) == 1:
            return local[0]
    return None


def person_named(store: Store, name: str) -> list[int]:
    """Ids of the active people with this name (a dashboard account is linked to one of them)."""
    return data.active_people_named(store, name)


# -- the tree with counts -------------------------------------------------------------------
def tree_counts(store: Store) -> list[dict]:
    """Every node with households, residents, vulnerable residents and leads below it."""
    nodes = data.nodes(store)
    per_building = data.counts_per_building(store)
    leads = data.active_leads_per_node(store)
    by_id = {n["id"]: dict(n, households=0, residents=0, vulnerable=0, leads=leads.get(n["id"], 0),
                           children=[]) for n in nodes}
    for n in nodes:
        if n["parent_id"] in by_id:
            by_id[n["parent_id"]]["children"].append(by_id[n["id"]])
    for bid, c in per_building.items():
        node = by_id.get(bid)
        while node is not None:
            for k in ("households", "residents", "vulnerable"):
                node[k] += c[k] or 0
            node = by_id.get(node["parent_id"])
    for n in nodes:  # building leads roll up too
        if n["kind"] == "building":
            p = by_id.get(n["parent_id"])
            while p is not None:
                p["leads"] += leads.get(n["id"], 0)
                p = by_id.get(p["parent_id"])
    return [by_id[n["id"]] for n in nodes if n["parent_id"] is None]


def format_tree(roots: list[dict]) -> str:
    kinds_zh = {"community": "社区", "grid": "网格", "compound": "小区", "building": "楼栋"}
    lines = []

    def walk(n, depth, max_depth):
        lines.append(f"{'  ' * depth}{n['name']} [{kinds_zh[n['kind']]}]  households={n['households']} "
                     f"residents={n['residents']} vulnerable={n['vulnerable']} leads={n['leads']}"
                     + (f" buildings={_count(n, 'building')}" if n["kind"] != "building" else ""))
        if depth < max_depth:
            for c in n["children"]:
                walk(c, depth + 1, max_depth)
    for root in roots:
        walk(root, 0, 2)
    return "\n".join(lines)


def _count(n: dict, kind: str) -> int:
    return sum((1 if c["kind"] == kind else 0) + _count(c, kind) for c in n["children"])
