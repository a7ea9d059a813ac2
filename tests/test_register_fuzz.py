"""Fuzz target for the register import: whatever a file holds, `import_register` either imports
it or raises RegisterError (one sentence for a person) and leaves the store exactly as it was.
Any other exception, or a refusal that wrote something, is a bug.

Three generators: raw bytes under any name; CSV text built from the register's own vocabulary
(headers, roles, place names with "/" and "|", phones, categories, stray quotes and newlines) in
every encoding the import accepts, sometimes with bytes flipped; and XLSX files, intact or cut
or with bytes flipped.

CI runs a bounded number of examples per generator (a few seconds in all). A longer run, e.g.
before a release or after touching bot/domain/register.py:

    REGISTER_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q tests/test_register_fuzz.py

(Not a LINLI_* variable: tests/conftest.py clears those.) A long run keeps failing examples in
.hypothesis/ and replays them first on the next long run; the CI run keeps no database.
"""
import os
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_roster import HEAD, ROWS, write_csv  # noqa: E402

from bot.data.store import Store  # noqa: E402
from bot.domain.register import COLUMNS, GROUP_KINDS, ROLE_WORDS, VULNERABLE, RegisterError, import_register  # noqa: E402

LONG_RUN = "REGISTER_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("REGISTER_FUZZ_EXAMPLES", "60"))
# CI: the same 60 examples every run, and no shrinking (it can take minutes on an XLSX); a long
# run explores at random and shrinks what it finds
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG_RUN,
                # CI writes no example database into the checkout; a long run keeps .hypothesis/
                **({} if LONG_RUN else {"database": None}),
                phases=list(Phase) if LONG_RUN else [Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

HEADERS = [alias for aliases in COLUMNS.values() for alias in aliases] + ["备注", "", "姓 名", "NAME"]
WORDS = ([w for words in ROLE_WORDS.values() for w in words] + list(VULNERABLE)
         + [w for words in GROUP_KINDS.values() for w in words]
         + ["第一网格", "一区", "3栋", "2单元", "502", "一区/二区", "3|4", "王小明", "13800000000",
            "020-8888888", "12345", "无", "、", "，", "\"", "\n", "\r\n", " ", "=1+1", "0", "1e9",
            "周社工", "lead1", "sw1", "𠮷", "\u3000", "\ufeff"])
CELL = st.one_of(st.sampled_from(WORDS), st.text(max_size=12), st.just(""))
ENCODINGS = ["utf-8", "utf-8-sig", "gb18030", "gbk"]


def snapshot(store):
    return [store.q(f"SELECT * FROM {t} ORDER BY rowid") for t in
            ("nodes", "households", "residents", "node_leads", "chat_groups", "events")]


def base_store(tmp: Path) -> Store:
    """A store holding a small register, so that a refusal that writes would show."""
    store = Store(":memory:")
    import_register(store, write_csv(tmp / "base.csv", HEAD, ROWS))
    return store


def check(path: Path, flags: dict) -> None:
    store = base_store(path.parent)
    try:
        before = snapshot(store)
        try:
            report = import_register(store, path, **flags)
        except RegisterError as e:
            assert str(e).strip(), "a refusal says why"
            assert snapshot(store) == before, "a refused import wrote something"
            return
        if report.dry_run:
            assert snapshot(store) == before, "a dry run wrote something"
        else:
            assert report.committed and report.residents > 0
    finally:
        store.close()


def same_bytes_every_time(path: Path) -> bytes:
    """The saved workbook with its timestamps fixed, so that a flipped byte lands on the same
    content when Hypothesis replays an example (openpyxl stamps the save time in two places)."""
    import io
    import re
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "docProps/core.xml":
                data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2024-06-01T00:00:00Z", data)
            zout.writestr(zipfile.ZipInfo(item.filename, date_time=(2024, 6, 1, 0, 0, 0)), data,
                          compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


FLAGS = st.fixed_dictionaries({"skip_bad": st.booleans(), "dry_run": st.booleans(),
                               "allow_shrink": st.booleans(), "max_rows": st.sampled_from([5, 1000])})


def flip(data: bytes, positions: list[int], value: int) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for p in positions:
        out[p % len(out)] = value
    return bytes(out)


@FUZZ
@given(data=st.binary(max_size=3000), suffix=st.sampled_from([".csv", ".xlsx", ".xls", ""]), flags=FLAGS)
def test_fuzz_raw_bytes(data, suffix, flags):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{suffix}"
        path.write_bytes(data)
        check(path, flags)


@FUZZ
@given(head=st.lists(st.sampled_from(HEADERS), min_size=0, max_size=14),
       rows=st.lists(st.lists(CELL, max_size=15), max_size=12),
       keep_base=st.booleans(), encoding=st.sampled_from(ENCODINGS),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), quote_all=st.booleans(),
       flips=st.lists(st.integers(min_value=0), max_size=3), flip_to=st.integers(0, 255), flags=FLAGS)
def test_fuzz_csv_rows(head, rows, keep_base, encoding, newline, quote_all, flips, flip_to, flags):
    import csv
    import io

    if keep_base:  # mostly-valid files reach the write path, not only the validation
        head, rows = HEAD, ROWS + rows
    buf = io.StringIO()
    csv.writer(buf, lineterminator=newline, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
               ).writerows([head] + rows)
    data = buf.getvalue().encode(encoding, errors="replace")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.csv"
        path.write_bytes(flip(data, flips, flip_to))
        check(path, flags)


@FUZZ
@given(rows=st.lists(st.lists(st.one_of(CELL, st.integers(-10, 10**12), st.floats(allow_nan=True),
                                        st.none()), max_size=14), max_size=10),
       keep_base=st.booleans(), second_sheet=st.booleans(), cut=st.integers(0, 100),
       flips=st.lists(st.integers(min_value=0), max_size=2), flip_to=st.integers(0, 255), flags=FLAGS)
def test_fuzz_xlsx(rows, keep_base, second_sheet, cut, flips, flip_to, flags):
    import openpyxl
    from openpyxl.utils.exceptions import IllegalCharacterError

    wb = openpyxl.Workbook()
    ws = wb.active
    try:
        for r in ([HEAD] + ROWS if keep_base else []) + rows:
            ws.append(r)
        if second_sheet:
            wb.create_sheet("群").append(["群名", "类型", "群ID"])
    except IllegalCharacterError:
        return  # openpyxl cannot write it; nothing to import
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.xlsx"
        wb.save(path)
        data = same_bytes_every_time(path)
        if cut < 20:  # sometimes a truncated download
            data = data[: len(data) * cut // 20]
        path.write_bytes(flip(data, flips, flip_to))
        check(path, flags)
