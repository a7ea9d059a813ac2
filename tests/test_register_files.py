"""The register import against the files an office really has, and hostile ones: empty exports,
a truncated register, GBK CSVs, wrong file types, garbage, zip bombs, huge files.

Every refusal is a RegisterError (one sentence a person can act on) and leaves the store as it was.
"""
import csv
import io
import sqlite3
import zipfile

import openpyxl
import pytest
from test_architecture import ROOT, cycles, graph, sql_sites
from test_roster import GROUP_HEAD, GROUPS, HEAD, ROWS, write_csv

from bot.data.store import Store
from bot.domain import register
from bot.domain.register import BadRowsError, FileRefused, ShrinkRefused, import_register
from bot.world.dalong import generate

MINE = ("bot/cli.py", "bot/domain/register.py", "bot/core/config.py")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "t.db")
    yield s
    s.close()


def snapshot(store):
    """Everything an import may touch, to prove a refused one touched nothing."""
    return [store.q(f"SELECT * FROM {t} ORDER BY rowid") for t in
            ("nodes", "households", "residents", "node_leads", "chat_groups", "events")]


@pytest.fixture
def loaded(store, tmp_path):
    """A store holding the small register of test_roster (7 people, 3 groups)."""
    import_register(store, write_csv(tmp_path / "r.csv", HEAD, ROWS),
                    groups_path=write_csv(tmp_path / "g.csv", GROUP_HEAD, GROUPS))
    return store


def xlsx(path, *sheets):
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for i, rows in enumerate(sheets):
        ws = wb.create_sheet(f"s{i}")
        for r in rows:
            ws.append(r)
    wb.save(path)
    return path


# -- 1. an empty file must not wipe the register ---------------------------------------------------
EMPTY_FILES = {
    "empty.csv": b"",
    "blank_line.csv": b"\n",
    "blank_lines.csv": b"\r\n\r\n  \n",
    "header_only.csv": ",".join(HEAD).encode() + b"\n",
    "header_only_bom.csv": b"\xef\xbb\xbf" + ",".join(HEAD).encode() + b"\r\n",
    "unknown_headers.csv": b"a,b,c\n",
    "commas_only.csv": ",".join(HEAD).encode() + b"\n,,,,,\n,,,\n",
}


@pytest.mark.parametrize("name", sorted(EMPTY_FILES))
def test_an_empty_csv_is_refused_and_the_register_stays(loaded, tmp_path, name):
    before = snapshot(loaded)
    path = tmp_path / name
    path.write_bytes(EMPTY_FILES[name])
    with pytest.raises(FileRefused) as e:
        import_register(loaded, path)
    assert e.value.code in ("no_header", "no_rows", "missing_columns")
    assert snapshot(loaded) == before
    assert loaded.scalar("SELECT COUNT(*) FROM residents WHERE active=1") == len(ROWS)


@pytest.mark.parametrize("sheets", [[[HEAD]], [[]], [[HEAD], [GROUP_HEAD]], [[], []]],
                         ids=["header_only", "empty_sheet", "header_only_with_groups", "two_empty"])
def test_an_empty_xlsx_is_refused_and_the_register_stays(loaded, tmp_path, sheets):
    before = snapshot(loaded)
    with pytest.raises(FileRefused) as e:
        import_register(loaded, xlsx(tmp_path / "r.xlsx", *sheets))
    assert e.value.code in ("no_header", "no_rows")
    assert "没有" in str(e.value)
    assert snapshot(loaded) == before


def test_all_rows_bad_with_skip_bad_is_refused(loaded, tmp_path):
    before = snapshot(loaded)
    path = write_csv(tmp_path / "bad.csv", HEAD, [["第一网格", "一区", "3栋", "", "601", "", "", "", "", "", ""]])
    with pytest.raises(FileRefused) as e:
        import_register(loaded, path, skip_bad=True)
    assert e.value.code == "no_good_rows"
    assert snapshot(loaded) == before


def test_a_shrunken_register_is_refused_unless_allowed(loaded, tmp_path):
    before = snapshot(loaded)
    kept = [r for r in ROWS if r[5] not in ("王小明", "刘大爷")]  # 2 of 7 (29%) gone
    path = write_csv(tmp_path / "short.csv", HEAD, kept)
    with pytest.raises(ShrinkRefused) as e:
        import_register(loaded, path)
    assert e.value.report.inactivated == 2
    assert "2 人" in str(e.value) and "20" in str(e.value)
    assert snapshot(loaded) == before
    assert import_register(loaded, path, max_shrink=0.5).inactivated == 2  # a looser limit
    import_register(loaded, write_csv(tmp_path / "r.csv", HEAD, ROWS))  # everyone back
    rep = import_register(loaded, path, allow_shrink=True)
    assert rep.committed and rep.inactivated == 2
    assert loaded.scalar("SELECT COUNT(*) FROM residents WHERE active=1") == 5


def test_shrink_limit_counts_only_active_people(loaded, tmp_path):
    """People already gone do not count again: a second import of the same short file passes."""
    path = write_csv(tmp_path / "short.csv", HEAD, [r for r in ROWS if r[5] not in ("王小明", "刘大爷")])
    import_register(loaded, path, allow_shrink=True)
    assert import_register(loaded, path).inactivated == 0


def test_dry_run_counts_the_changes_and_writes_nothing(loaded, tmp_path):
    before = snapshot(loaded)
    rows = [r for r in ROWS if r[5] != "王小明"]  # moves out (1 of 7: within the limit)
    rows = [r[:6] + ["13900000000"] + r[7:] if r[5] == "张奶奶" else r for r in rows]  # new phone
    rows = [r[:7] + ["居民"] + r[8:] if r[5] == "王楼长" else r for r in rows]  # no longer a lead
    rows.append(["第一网格", "一区", "9栋", "", "101", "新住户", "", "居民", "", "", ""])
    path = write_csv(tmp_path / "r2.csv", HEAD, rows)
    rep = import_register(loaded, path, dry_run=True)
    assert (rep.dry_run, rep.committed) == (True, False)
    assert (rep.added, rep.updated, rep.inactivated) == (1, 2, 1)
    assert rep.households_added == 1 and rep.leads_changed == 1  # 王楼长's link to 3栋 goes
    assert snapshot(loaded) == before
    real = import_register(loaded, path)  # the real import does what the dry run said
    assert (real.added, real.updated, real.inactivated, real.leads_changed) == (1, 2, 1, 1)


def test_reimport_unchanged_writes_no_resident(loaded, tmp_path):
    rep = import_register(loaded, write_csv(tmp_path / "r.csv", HEAD, ROWS))
    assert (rep.added, rep.updated, rep.inactivated, rep.leads_changed) == (0, 0, 0, 0)


# -- 2. hostile files ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["junk.xlsx", "junk.csv", "junk"])
def test_garbage_bytes_are_refused_in_one_sentence(store, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code in ("binary", "unknown_encoding")
    assert "\n" not in str(e.value)


def test_a_csv_named_xlsx_imports_as_csv(store, tmp_path):
    src = write_csv(tmp_path / "r.csv", HEAD, ROWS)
    path = tmp_path / "r.xlsx"
    path.write_bytes(src.read_bytes())
    assert import_register(store, path).residents == len(ROWS)


@pytest.mark.parametrize("content, code", [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "old_xls"),
    ("姓名,房号\n".encode("utf-16"), "utf16"),
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binary"),
    (b"\xff\xd8\xff\xe0\0\x10JFIF", "binary"),
])
def test_other_file_types_are_named(store, tmp_path, content, code):
    path = tmp_path / "r.xlsx"
    path.write_bytes(content)
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == code


def test_a_zip_that_is_not_a_workbook(store, tmp_path):
    path = tmp_path / "r.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == "not_workbook"


def test_a_truncated_workbook_is_refused(store, tmp_path):
    path = xlsx(tmp_path / "r.xlsx", [HEAD] + ROWS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == "bad_workbook"


def test_a_zip_bomb_is_refused_before_it_is_opened(store, tmp_path, monkeypatch):
    """The zip's declared sizes are checked before openpyxl reads a byte of the sheet."""
    monkeypatch.setattr(register, "MAX_UNPACKED_BYTES", 4 << 20)
    path = xlsx(tmp_path / "r.xlsx", [HEAD] + ROWS)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/padding.xml", b"\0" * (5 << 20))  # 5 MB of zeros: ~5 KB packed
    assert path.stat().st_size < 100_000

    def never(*a, **k):
        raise AssertionError("openpyxl opened a zip bomb")
    monkeypatch.setattr(openpyxl, "load_workbook", never)
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == "too_big_unpacked"


def test_a_lying_zip_entry_stops_at_its_declared_size(store, tmp_path):
    """A sheet whose zip entry declares fewer bytes than it holds: zipfile stops at the declared
    size and the CRC fails, so the declared sizes really bound what is unpacked."""
    path = xlsx(tmp_path / "r.xlsx", [HEAD] + ROWS * 40)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("xl/worksheets/sheet1.xml")
    small = (info.file_size // 4).to_bytes(4, "little")
    # the local header's uncompressed size (offset 22) and the central directory's (offset 24)
    raw[info.header_offset + 22: info.header_offset + 26] = small
    patched = 0
    pos = raw.find(b"xl/worksheets/sheet1.xml")
    while pos != -1:
        if raw[pos - 46: pos - 42] == b"PK\x01\x02":  # the entry's central directory record
            raw[pos - 46 + 24: pos - 46 + 28] = small
            patched += 1
        pos = raw.find(b"xl/worksheets/sheet1.xml", pos + 1)
    assert patched == 1
    path.write_bytes(bytes(raw))
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == "bad_workbook"


def test_too_many_rows_is_refused_before_anything_is_written(store, tmp_path):
    rows = [["第一网格", "一区", "3栋", "", str(100 + i), f"住户{i}", "", "居民", "", "", ""]
            for i in range(60)]
    path = write_csv(tmp_path / "big.csv", HEAD, rows)
    with pytest.raises(FileRefused) as e:
        import_register(store, path, max_rows=50)
    assert e.value.code == "too_many_rows" and "50" in str(e.value)
    assert store.scalar("SELECT COUNT(*) FROM residents") == 0
    assert import_register(store, path, max_rows=60).residents == 60


def test_an_endless_line_is_refused(store, tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(",".join(HEAD).encode() + b"\n" + b"x" * (register.MAX_LINE_CHARS + 10))
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == "line_too_long"


def test_a_huge_quoted_field_is_refused(store, tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(",".join(HEAD).encode() + b'\n"' + b"x\n" * 100_000 + b'"\n')
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == "csv_error"


def test_a_slash_in_a_place_name_is_a_row_error(store, tmp_path):
    rows = ROWS + [["第一网格", "一区/二区", "3栋", "", "701", "斜杠", "", "居民", "", "", ""],
                   ["第一网格", "一区", "3/4栋", "", "702", "斜杠二", "", "居民", "", "", ""]]
    with pytest.raises(BadRowsError) as e:
        import_register(store, write_csv(tmp_path / "r.csv", HEAD, rows))
    bad = {(b.row, b.column) for b in e.value.report.bad}
    assert bad == {(len(ROWS) + 2, "小区"), (len(ROWS) + 3, "楼栋")}
    assert "“/”" in e.value.report.bad[0].reason
    # with --skip-bad the rest imports, and "一区/二区" did not become 一区 → 二区
    import_register(store, write_csv(tmp_path / "r.csv", HEAD, rows), skip_bad=True)
    assert store.scalar("SELECT COUNT(*) FROM nodes WHERE name='二区' OR path LIKE '%3/4栋%'") == 0


def test_statements_fit_a_small_variable_limit(tmp_path):
    """No statement grows with the register: with SQLite's old default of 999 variables, 1,200
    households import, re-import and shrink (the old code failed at 'too many SQL variables'
    past the limit, 250,000 on this build, i.e. at about a million rows)."""
    store = Store(tmp_path / "v.db")
    store.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    info = generate(tmp_path / "big.csv", households=1200, seed=3)
    rep = import_register(store, tmp_path / "big.csv", groups_path=info["groups_file"])
    assert rep.households == 1200
    import_register(store, tmp_path / "big.csv", groups_path=info["groups_file"])
    generate(tmp_path / "small.csv", households=100, seed=3)
    rep = import_register(store, tmp_path / "small.csv", allow_shrink=True)
    assert rep.households_inactivated >= 1100 and rep.inactivated > 2500
    assert store.scalar("SELECT COUNT(*) FROM households WHERE active=1") == 100


# -- 3. the office's own files ------------------------------------------------------------------
def csv_bytes(head, rows, encoding):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(head)
    w.writerows(rows)
    return buf.getvalue().encode(encoding)


def dump(store):
    return store.q("SELECT key, name, phone, roles, vulnerable, wecom_userid FROM residents ORDER BY id")


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8-sig", "utf-8"])
def test_excel_csv_encodings_import_alike(tmp_path, encoding):
    ref = Store(tmp_path / "ref.db")
    import_register(ref, write_csv(tmp_path / "r.csv", HEAD, ROWS))
    s = Store(tmp_path / f"{encoding}.db")
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes(csv_bytes(HEAD, ROWS, encoding))
    assert import_register(s, path).residents == len(ROWS)
    assert dump(s) == dump(ref)


def test_gb18030_only_characters(store, tmp_path):
    """A name with a character outside GBK (𠮷) survives a GB18030 file."""
    rows = ROWS + [["第一网格", "一区", "3栋", "", "801", "𠮷祥", "", "居民", "", "", ""]]
    path = tmp_path / "r.csv"
    path.write_bytes(csv_bytes(HEAD, rows, "gb18030"))
    import_register(store, path)
    assert store.scalar("SELECT COUNT(*) FROM residents WHERE name='𠮷祥'") == 1


def test_a_missing_file_is_one_sentence(store, tmp_path):
    with pytest.raises(FileRefused) as e:
        import_register(store, tmp_path / "nope.csv")
    assert e.value.code == "not_found" and "nope.csv" in str(e.value)
    with pytest.raises(FileRefused) as e:
        import_register(store, tmp_path)
    assert e.value.code == "not_a_file"


def test_row_errors_are_chinese_and_name_roles_as_the_register_does(store, tmp_path):
    rows = ROWS + [["第一网格", "一区", "3栋", "", "", "无房号", "", "居民", "", "", ""],
                   ["第一网格", "一区", "3栋", "", "602", "怪角色", "", "国王", "", "", ""],
                   ["", "", "", "", "", "无网格", "", "网格长", "", "", ""]]
    with pytest.raises(BadRowsError) as e:
        import_register(store, write_csv(tmp_path / "r.csv", HEAD, rows))
    text = "\n".join(map(str, e.value.report.bad))
    assert "第 9 行「房号」" in text and "社区工作人员、社工、网格长" in text
    assert "“国王”" in text and "楼长" in text and "grid_lead" not in text and "building_lead" not in text
    assert "第 11 行「网格」：网格长需要填写网格" in text


def test_row_errors_name_the_column_as_the_file_does(store, tmp_path):
    head = ["grid", "compound", "building", "unit", "room", "name", "phone", "roles", "vulnerable",
            "social_worker", "wecom_userid"]
    rows = ROWS + [["第一网格", "一区", "3栋", "", "601", "坏电话", "12345", "居民", "", "", ""]]
    with pytest.raises(BadRowsError) as e:
        import_register(store, write_csv(tmp_path / "r.csv", head, rows))
    (bad,) = e.value.report.bad
    assert (bad.row, bad.column) == (len(ROWS) + 2, "phone") and "12345" in bad.reason


def test_a_title_row_above_the_header(store, tmp_path):
    path = xlsx(tmp_path / "r.xlsx", [["大龙社区居民名册（2024年6月）"], HEAD] + ROWS)
    assert import_register(store, path).residents == len(ROWS)


def test_duplicate_wecom_ids_are_row_errors(store, tmp_path):
    rows = ROWS + [["第一网格", "一区", "3栋", "", "901", "重号", "", "居民", "", "", "lead1"]]
    with pytest.raises(BadRowsError) as e:
        import_register(store, write_csv(tmp_path / "r.csv", HEAD, rows))
    (bad,) = e.value.report.bad
    assert bad.column == "企业微信ID" and "第 5 行" in bad.reason


def test_an_id_of_someone_who_moved_out_goes_to_the_newcomer(loaded, tmp_path):
    """王小明 leaves (inactive, history kept); a newcomer's row carries his WeCom id: the register
    gives the account to the newcomer."""
    rows = [r[:10] + ["xm"] if r[5] == "王小明" else r for r in ROWS]
    import_register(loaded, write_csv(tmp_path / "r.csv", HEAD, rows))
    rows = [r for r in ROWS if r[5] != "王小明"] + [
        ["第一网格", "一区", "3栋", "", "909", "新人", "", "居民", "", "", "xm"]]
    rep = import_register(loaded, write_csv(tmp_path / "r2.csv", HEAD, rows))
    assert (rep.added, rep.inactivated) == (1, 1)
    assert loaded.q("SELECT name, active FROM residents WHERE wecom_userid='xm'") == [
        {"name": "新人", "active": 1}]


def test_two_people_swapping_ids(loaded, tmp_path):
    """An account moving from one person to another never trips the unique index halfway."""
    swap = {"王楼长": "g1", "李网格": "lead1"}
    rows = [r[:10] + [swap[r[5]]] if r[5] in swap else r for r in ROWS]
    rep = import_register(loaded, write_csv(tmp_path / "r2.csv", HEAD, rows))
    assert rep.updated == 2
    got = {r["name"]: r["wecom_userid"] for r in loaded.q("SELECT name, wecom_userid FROM residents")}
    assert (got["王楼长"], got["李网格"]) == ("g1", "lead1")


def test_a_constraint_failure_on_write_names_the_rows(loaded):
    """If a batch still breaks a constraint, the culprits are found row by row and the rest stays."""
    from bot.data import register as data

    taken = loaded.q1("SELECT * FROM residents WHERE wecom_userid='lead1'")
    clash = dict(taken, id=999, key="x|y", name="冒名")
    fine = dict(taken, id=1000, key="x|z", name="新人", wecom_userid=None)
    with loaded.transaction():
        failed = data.write_residents(loaded, [clash, fine], [])
    assert [(rec["id"], "UNIQUE" in err) for rec, err in failed] == [(999, True)]
    assert loaded.scalar("SELECT name FROM residents WHERE id=1000") == "新人"


def test_a_social_worker_listed_below_the_people_they_look_after(store, tmp_path):
    rows = ROWS[1:] + ROWS[:1]  # 周社工 last
    import_register(store, write_csv(tmp_path / "r.csv", HEAD, rows))
    sw = store.scalar("SELECT id FROM residents WHERE name='周社工'")
    assert store.scalar("SELECT social_worker_id FROM residents WHERE name='张奶奶'") == sw


# -- 6. layering --------------------------------------------------------------------------------
@pytest.mark.parametrize("rel", MINE)
def test_no_sql_in_my_files(rel):
    assert sql_sites(ROOT / rel) == []


def test_cli_is_in_no_import_cycle():
    assert [c for c in cycles(graph()) if "bot.cli" in c or "bot.domain.register" in c] == []


def test_readers_are_streams():
    """The register is read as a stream of rows (bounded memory), not as a list."""
    import inspect
    assert inspect.isgeneratorfunction(register._Table.rows)
    assert inspect.isgeneratorfunction(register._Sheet.records)


def test_a_workbook_without_worksheets(store, tmp_path):
    """Found by the fuzz target (an IndexError before): a workbook that lists no sheet."""
    import re as re_

    src = xlsx(tmp_path / "src.xlsx", [HEAD] + ROWS)
    path = tmp_path / "r.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "xl/workbook.xml":
                data = re_.sub(rb"<sheet [^>]*/>", b"", data)
            zout.writestr(item, data)
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == "no_header"


def test_a_zip_of_an_unknown_version(store, tmp_path):
    """Found by the fuzz target (NotImplementedError from zipfile before): one flipped byte."""
    path = xlsx(tmp_path / "r.xlsx", [HEAD] + ROWS)
    raw = bytearray(path.read_bytes())
    central = raw.find(b"PK\x01\x02")
    raw[central + 6] = 64  # "version needed to extract" 6.4: zipfile does not implement it
    path.write_bytes(bytes(raw))
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == "bad_workbook"


def test_a_second_sheet_that_is_not_a_groups_sheet_is_ignored(loaded, tmp_path):
    path = xlsx(tmp_path / "r.xlsx", [HEAD] + ROWS, [["说明"], ["本表由社区办公室维护"]])
    rep = import_register(loaded, path)
    assert rep.residents == len(ROWS) and rep.groups == 0
    assert loaded.scalar("SELECT COUNT(*) FROM chat_groups WHERE active=1") == len(GROUPS)


def test_a_groups_file_without_its_columns_is_refused(loaded, tmp_path):
    before = snapshot(loaded)
    grp = write_csv(tmp_path / "g.csv", ["网格", "群名"], [["第一网格", "x"]])
    with pytest.raises(FileRefused) as e:
        import_register(loaded, write_csv(tmp_path / "r.csv", HEAD, ROWS), groups_path=grp)
    assert str(e.value).startswith("群名单缺少必需的列：类型（type）")
    assert snapshot(loaded) == before


def test_a_header_only_groups_file_leaves_the_groups(loaded, tmp_path):
    grp = write_csv(tmp_path / "g.csv", GROUP_HEAD, [])
    import_register(loaded, write_csv(tmp_path / "r.csv", HEAD, ROWS), groups_path=grp)
    assert loaded.scalar("SELECT COUNT(*) FROM chat_groups WHERE active=1") == len(GROUPS)


def test_group_rows_errors_name_the_groups_sheet(loaded, tmp_path):
    grp = write_csv(tmp_path / "g.csv", GROUP_HEAD, GROUPS + [["第一网格", "九区", "", "九区群", "机器人", "r9", ""]])
    with pytest.raises(BadRowsError) as e:
        import_register(loaded, write_csv(tmp_path / "r.csv", HEAD, ROWS), groups_path=grp)
    assert [str(b) for b in e.value.report.bad] == [
        "群名单第 5 行「小区」：名册中没有这个地点：社区/第一网格/九区。"]


def test_a_zip_bomb_under_the_size_cap_is_refused_by_its_ratio(store, tmp_path, monkeypatch):
    monkeypatch.setattr(register, "BOMB_CHECK_BYTES", 1 << 20)
    path = xlsx(tmp_path / "r.xlsx", [HEAD] + ROWS)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/padding.xml", b"<x/>" * (1 << 19))  # 2 MB packed ~1000:1
    assert path.stat().st_size < register.MAX_UNPACKED_BYTES
    with pytest.raises(FileRefused) as e:
        import_register(store, path)
    assert e.value.code == "too_big_unpacked"
    # an honest workbook of the same size packs ~10:1 and imports
    monkeypatch.setattr(register, "BOMB_CHECK_BYTES", 1 << 10)
    assert import_register(store, xlsx(tmp_path / "ok.xlsx", [HEAD] + ROWS)).residents == len(ROWS)
