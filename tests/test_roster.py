import csv

import openpyxl
import pytest

from bot.data.store import Store
from bot.domain.register import ImportError_, format_tree, import_register, tree_counts
from bot.world.dalong import generate

HEAD = ["网格", "小区", "楼栋", "单元", "房号", "姓名", "电话", "角色", "困难类别", "联系社工", "企业微信ID"]
ROWS = [
    ["", "", "", "", "", "周社工", "13800000001", "社工", "", "", "sw1"],
    ["", "", "", "", "", "陈书记", "13800000002", "社区工作人员、党员", "", "", "staff1"],
    ["第一网格", "", "", "", "", "李网格", "13800000003", "网格长", "", "", "g1"],
    ["第一网格", "一区", "3栋", "2单元", "502", "王楼长", "13800000004", "楼长、党员", "", "", "lead1"],
    ["第一网格", "一区", "3栋", "2单元", "502", "王小明", "", "居民", "", "", ""],
    ["第一网格", "一区", "3栋", "1单元", "101", "张奶奶", "", "", "独居老人", "周社工", ""],
    ["第一网格", "一区", "5栋", "", "301", "刘大爷", "020-8888888", "居民", "低保户、残疾人", "周社工", ""],
]
GROUP_HEAD = ["网格", "小区", "楼栋", "群名", "类型", "群ID", "群主"]
GROUPS = [
    ["第一网格", "", "", "第一网格群", "应用群", "gridchat1", "李网格"],
    ["第一网格", "一区", "", "一区楼长群", "机器人", "robot-1", ""],
    ["第一网格", "一区", "3栋", "3栋居民群", "个人微信群", "", "王楼长"],
]


def write_csv(path, head, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)
    return path


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "t.db")
    yield s
    s.close()


def counts(store):
    return {t: store.scalar(f"SELECT COUNT(*) FROM {t}") for t in
            ("nodes", "households", "residents", "chat_groups", "node_leads")}


def test_good_file(store, tmp_path):
    reg = write_csv(tmp_path / "r.csv", HEAD, ROWS)
    grp = write_csv(tmp_path / "g.csv", GROUP_HEAD, GROUPS)
    rep = import_register(store, reg, groups_path=grp)
    assert (rep.residents, rep.households, rep.groups, rep.bad) == (7, 3, 3, [])
    zhang = store.q1("SELECT * FROM residents WHERE name='张奶奶'")
    assert zhang["vulnerable"] == "独居老人" and zhang["wecom_userid"] is None  # no WeChat: normal
    sw = store.q1("SELECT id FROM residents WHERE name='周社工'")["id"]
    assert zhang["social_worker_id"] == sw
    lead = store.q1("SELECT roles FROM residents WHERE name='王楼长'")
    assert lead["roles"] == "building_lead,party_member"
    hh = store.q1("SELECT label FROM households h JOIN residents r ON r.household_id=h.id "
                  "WHERE r.name='王小明'")
    assert hh["label"] == "一区3栋2单元502"
    leads = store.q("SELECT n.path, r.name FROM node_leads l JOIN nodes n ON n.id=l.node_id "
                    "JOIN residents r ON r.id=l.resident_id ORDER BY n.path")
    assert [(x["path"], x["name"]) for x in leads] == [
        ("社区/第一网格", "李网格"), ("社区/第一网格/一区/3栋", "王楼长")]
    kinds = {g["name"]: g["kind"] for g in store.q("SELECT name, kind FROM chat_groups")}
    assert kinds == {"第一网格群": "app_chat", "一区楼长群": "robot", "3栋居民群": "personal"}
    assert store.q1("SELECT kind FROM events ORDER BY id DESC")["kind"] == "register.imported"


def test_bad_rows_import_nothing(store, tmp_path):
    rows = ROWS + [
        ["第一网格", "一区", "3栋", "", "", "无房号", "", "居民", "", "", ""],
        ["第一网格", "一区", "3栋", "", "601", "坏电话", "12345", "居民", "", "", ""],
        ["第一网格", "一区", "3栋", "", "602", "怪角色", "", "国王", "", "", ""],
        ["第一网格", "一区", "3栋", "", "603", "怪类别", "", "", "富豪", "", ""],
        ["第一网格", "一区", "3栋", "", "604", "无社工", "", "", "低保户", "不存在", ""],
        ["第一网格", "一区", "", "", "605", "无楼栋", "", "", "", "", ""],
    ]
    reg = write_csv(tmp_path / "r.csv", HEAD, rows)
    with pytest.raises(ImportError_) as e:
        import_register(store, reg)
    bad = {(b.row, b.column.split("/")[0]) for b in e.value.report.bad}
    n = len(ROWS) + 1
    assert bad == {(n + 1, "房号"), (n + 2, "电话"), (n + 3, "角色"), (n + 4, "困难类别"),
                   (n + 5, "联系社工"), (n + 6, "楼栋")}
    assert all(b.reason for b in e.value.report.bad)
    assert counts(store) == {"nodes": 0, "households": 0, "residents": 0, "chat_groups": 0,
                             "node_leads": 0}


def test_skip_bad_imports_good_rows(store, tmp_path):
    rows = ROWS + [["第一网格", "一区", "3栋", "", "601", "坏电话", "12345", "居民", "", "", ""]]
    rep = import_register(store, write_csv(tmp_path / "r.csv", HEAD, rows), skip_bad=True)
    assert rep.residents == 7 and len(rep.bad) == 1 and rep.bad[0].row == len(ROWS) + 2
    assert store.scalar("SELECT COUNT(*) FROM residents WHERE name='坏电话'") == 0


def test_missing_column_is_reported(store, tmp_path):
    reg = write_csv(tmp_path / "r.csv", ["网格", "姓名"], [["a", "b"]])
    with pytest.raises(ImportError_) as e:
        import_register(store, reg)
    assert "房号（room）" in str(e.value) and "楼栋（building）" in str(e.value)


def test_english_headers(store, tmp_path):
    head = ["grid", "compound", "building", "unit", "room", "name", "phone", "roles", "vulnerable",
            "social_worker", "wecom_userid"]
    rep = import_register(store, write_csv(tmp_path / "r.csv", head, ROWS))
    assert rep.residents == 7


def test_reimport_is_idempotent_and_inactivates(store, tmp_path):
    reg = write_csv(tmp_path / "r.csv", HEAD, ROWS)
    grp = write_csv(tmp_path / "g.csv", GROUP_HEAD, GROUPS)
    import_register(store, reg, groups_path=grp)
    before = counts(store)
    ids = {r["name"]: r["id"] for r in store.q("SELECT id, name FROM residents")}
    import_register(store, reg, groups_path=grp)
    assert counts(store) == before
    # updated file: 王小明 moved out, 张奶奶 got a phone
    rows = [r for r in ROWS if r[5] != "王小明"]
    rows = [r[:6] + ["13900000000"] + r[7:] if r[5] == "张奶奶" else r for r in rows]
    rep = import_register(store, write_csv(tmp_path / "r2.csv", HEAD, rows), groups_path=grp)
    assert rep.inactivated == 1
    assert counts(store) == before  # nothing deleted
    gone = store.q1("SELECT id, active FROM residents WHERE name='王小明'")
    assert gone == {"id": ids["王小明"], "active": 0}
    zhang = store.q1("SELECT id, phone FROM residents WHERE name='张奶奶'")
    assert zhang == {"id": ids["张奶奶"], "phone": "13900000000"}


def test_xlsx_and_csv_give_the_same_store(tmp_path):
    reg = write_csv(tmp_path / "r.csv", HEAD, ROWS)
    grp = write_csv(tmp_path / "g.csv", GROUP_HEAD, GROUPS)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "名册"
    for r in [HEAD] + ROWS:
        ws.append([int(c) if c.isdigit() and len(c) < 6 else c for c in r])  # rooms as numbers
    ws2 = wb.create_sheet("群")
    for r in [GROUP_HEAD] + GROUPS:
        ws2.append(r)
    wb.save(tmp_path / "r.xlsx")
    a, b = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    import_register(a, reg, groups_path=grp)
    import_register(b, tmp_path / "r.xlsx")

    def dump(s):
        return [s.q(f"SELECT * FROM {t} ORDER BY rowid") for t in
                ("nodes", "households", "chat_groups", "node_leads")] + [
            s.q("SELECT key, name, phone, household_id, roles, vulnerable, social_worker_id, "
                "wecom_userid, active FROM residents ORDER BY id")]
    assert dump(a) == dump(b)


def test_dalong_register_shape(tmp_path):
    out = tmp_path / "dalong.csv"
    info = generate(out, households=3300, seed=2024)
    assert info["buildings"] == 113
    store = Store(tmp_path / "d.db")
    import_register(store, out, groups_path=tmp_path / "dalong_groups.csv")
    (root,) = tree_counts(store)
    grids = root["children"]
    compounds = [c for g in grids for c in g["children"]]
    buildings = [b for c in compounds for b in c["children"]]
    assert (len(grids), len(compounds), len(buildings)) == (4, 7, 113)
    assert root["households"] == 3300
    assert 2.2 <= root["residents"] / root["households"] <= 2.6
    assert 0.01 <= root["vulnerable"] / root["residents"] <= 0.08
    assert all(b["leads"] >= 1 for b in buildings)  # every building has a lead
    workers = store.scalar("SELECT COUNT(*) FROM residents WHERE roles LIKE '%social_worker%'")
    assert 8 <= workers <= 12
    # every vulnerable resident has a social worker
    assert store.scalar("SELECT COUNT(*) FROM residents WHERE vulnerable!='' "
                        "AND social_worker_id IS NULL") == 0
    assert "大龙社区" in format_tree([root])


def test_generator_is_deterministic(tmp_path):
    generate(tmp_path / "a.csv", households=200, seed=5)
    generate(tmp_path / "b.csv", households=200, seed=5)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_checked_in_register_matches_generator(tmp_path):
    from bot.core.config import DEMO_REGISTER

    generate(tmp_path / "x.csv", households=3300, seed=2024)
    assert (tmp_path / "x.csv").read_bytes() == DEMO_REGISTER.read_bytes()


def test_store_schema_and_events_append_only(tmp_path):
    import sqlite3

    from bot.data.store import SCHEMA_VERSION
    s = Store(tmp_path / "s.db")
    assert s.version == SCHEMA_VERSION
    assert s.scalar("PRAGMA journal_mode") == "wal" and s.scalar("PRAGMA foreign_keys") == 1
    s.log(1.0, "x", a=1)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        s.conn.execute("UPDATE events SET kind='y'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        s.conn.execute("DELETE FROM events")
    s.close()
    assert Store(tmp_path / "s.db").version == SCHEMA_VERSION  # reopening migrates nothing


def test_forward_migration_keeps_data(tmp_path):
    """A store left at an older schema version is migrated forward in place, data kept."""
    import sqlite3

    from bot.data import store as store_mod

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for version, script in enumerate(store_mod.MIGRATIONS[:3], start=1):
        for statement in store_mod._split_sql(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={version}")
    conn.execute("INSERT INTO requests (id, text, created_at) VALUES (7, '楼道灯坏了', 1.0)")
    conn.execute("INSERT INTO events (at, kind, ref_type, ref_id, data) VALUES "
                 "(1.0, 'request.file', 'request', 7, '{\"key\": \"inbound:42\"}')")
    conn.commit()
    conn.close()
    s = Store(path)
    assert s.version == store_mod.SCHEMA_VERSION
    assert s.q1("SELECT text, source_key FROM requests WHERE id=7") == {"text": "楼道灯坏了",
                                                                       "source_key": "inbound:42"}
