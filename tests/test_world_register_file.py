"""The world's own reading of the register file (bot/world/register_file.py): who is on the
platform, where they live, which groups exist and who sits in them — and every row it cannot use
skipped with a reason, never a crash. The world reads the file the office imports, so what it
finds must line up with what Linli's importer makes of the same file."""
from __future__ import annotations

import csv

import openpyxl
import pytest

from bot.data.store import Store
from bot.domain.register import import_register
from bot.world.dalong import GROUP_HEADERS, HEADERS, generate
from bot.world.register_file import RegisterFile, RegisterFileError

COMMUNITY = ("大龙社区",)
B1 = ("大龙社区", "第一网格", "大龙一区", "1栋")


def write_csv(path, headers, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(headers)
        w.writerows(rows)
    return path


def person(grid="", compound="", building="", unit="", room="", name="", roles="居民", vuln="", sw="",
           wecom="", openid="", phone=""):
    return ("大龙社区", grid, compound, building, unit, room, name, phone, roles, vuln, sw, wecom, openid)


PEOPLE = [
    person(name="段俊", roles="社区工作人员、党员", wecom="staff1"),
    person(name="李社工", roles="社工", wecom="sw1"),
    person(grid="第一网格", name="汪雄德", roles="网格长、党员", wecom="grid1"),
    person("第一网格", "大龙一区", "1栋", "", "101", "王楼长", "楼长、党员", wecom="lead1"),
    person("第一网格", "大龙一区", "1栋", "", "101", "王小明", openid="oA1"),
    person("第一网格", "大龙一区", "1栋", "", "102", "陈阿婆", vuln="独居老人", sw="李社工"),  # no WeChat
    person("第一网格", "大龙一区", "2栋", "2单元", "301", "王楼长", "楼长", wecom="lead2"),   # same name
    person("第一网格", "大龙一区", "2栋", "2单元", "302", "赵六", "居民、志愿者", openid="oA2"),
]
GROUPS = [
    ("大龙社区", "", "", "", "大龙社区两委群", "应用群", "communitychat", "段俊"),
    ("大龙社区", "第一网格", "", "", "第一网格党支部群", "应用群", "gridchat1", "汪雄德"),
    ("大龙社区", "第一网格", "大龙一区", "", "大龙一区楼长群", "机器人", "robot-01", ""),
    ("大龙社区", "第一网格", "大龙一区", "1栋", "大龙一区1栋居民群", "个人微信群", "", "王楼长"),
    ("大龙社区", "第一网格", "大龙一区", "2栋", "大龙一区2栋居民群", "客户群", "wrc2", "王楼长"),
]


@pytest.fixture
def small(tmp_path):
    return (write_csv(tmp_path / "reg.csv", HEADERS, PEOPLE),
            write_csv(tmp_path / "reg_groups.csv", GROUP_HEADERS, GROUPS))


def test_people_accounts_households_and_roles(small):
    rf = RegisterFile.load(*small)
    assert rf.skipped == []
    by_name = {p.name: p for p in rf.people if p.name != "王楼长"}
    assert by_name["王小明"].uid == "oA1" and by_name["王小明"].household == "大龙一区1栋101"
    assert by_name["陈阿婆"].uid is None and by_name["陈阿婆"].vulnerable == "独居老人"
    assert by_name["陈阿婆"].social_worker == "李社工" and by_name["陈阿婆"].building == B1
    assert by_name["赵六"].household == "大龙一区2栋2单元302"
    assert by_name["赵六"].roles == ("resident",)  # 志愿者 is nothing the world acts on
    assert by_name["段俊"].roles == ("staff", "party_member") and by_name["段俊"].household is None
    assert by_name["段俊"].as_row()["roles"] == "staff,party_member"
    assert by_name["汪雄德"].place == ("大龙社区", "第一网格")


def test_group_members_and_owners(small):
    rf = RegisterFile.load(*small)
    g = {x.name: x for x in rf.groups}
    assert [x.kind for x in rf.groups] == ["app_chat", "app_chat", "robot", "personal", "customer"]
    assert rf.members_of(g["大龙社区两委群"]) == {"staff1"}
    assert rf.members_of(g["第一网格党支部群"]) == {"grid1"}
    assert rf.members_of(g["大龙一区楼长群"]) == {"lead1", "lead2"}
    assert rf.members_of(g["大龙一区1栋居民群"]) == {"lead1", "oA1"}  # 陈阿婆 has no WeChat
    assert rf.members_of(g["大龙一区2栋居民群"]) == {"lead2", "oA2"}
    # two leads are called 王楼长: each building's group is owned by its own lead
    assert rf.owner_of(g["大龙一区1栋居民群"]) == "lead1"
    assert rf.owner_of(g["大龙一区2栋居民群"]) == "lead2"
    assert rf.owner_of(g["大龙一区楼长群"]) is None


def test_xlsx_with_groups_on_the_second_sheet(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADERS)
    ws.append(("大龙社区", "第一网格", "大龙一区", "1栋", None, 101, "王小明", 13800000000, "居民", None, None,
               None, "oA1"))  # numbers, as a spreadsheet stores them
    groups = wb.create_sheet()
    groups.append(GROUP_HEADERS)
    groups.append(("大龙社区", "第一网格", "大龙一区", "1栋", "1栋居民群", "个人微信群", None, None))
    wb.save(tmp_path / "reg.xlsx")
    rf = RegisterFile.load(tmp_path / "reg.xlsx")
    (p,) = rf.people
    assert (p.room, p.phone, p.household) == ("101", "13800000000", "大龙一区1栋101")
    assert [(g.name, g.kind) for g in rf.groups] == [("1栋居民群", "personal")]
    # an XLSX without a groups sheet has no groups, and no complaint
    wb.remove(groups)
    wb.save(tmp_path / "nogroups.xlsx")
    assert RegisterFile.load(tmp_path / "nogroups.xlsx").groups == []


def test_rows_the_world_cannot_use_are_skipped_with_a_reason(tmp_path):
    reg = write_csv(tmp_path / "reg.csv", HEADERS, [
        person("第一网格", "大龙一区", "1栋", "", "101", "", openid="oX"),                 # row 2: no name
        person("第一网格", "大龙一区", "1栋", "", "101", "甲", openid="oA"),               # row 3
        person("第一网格", "大龙一区", "1栋", "", "102", "乙", openid="oA"),               # row 4: oA taken
        person("第一网格", "大龙一区", "1栋", "", "103", "丙", "居民、外星人", openid="oB"),  # unknown word
    ])
    groups = write_csv(tmp_path / "g.csv", GROUP_HEADERS, [
        ("大龙社区", "", "", "", "两委群", "飞书群", "x", ""),           # row 2: unknown kind
        ("大龙社区", "", "", "", "应用群一", "应用群", "", ""),           # row 3: app chat without id
        ("大龙社区", "", "", "", "", "应用群", "c1", ""),                 # row 4: no name
        ("大龙社区", "", "", "", "居民群", "微信群", "", "查无此人"),     # row 5: fine, owner unknown
    ])
    rf = RegisterFile.load(reg, groups)
    assert [p.name for p in rf.people] == ["甲", "丙"]
    assert rf.people[1].roles == ("resident",)
    assert rf.skipped == ["row 2: no name", "row 4: account oA already belongs to row 3",
                          "groups row 2: unknown group kind '飞书群'",
                          "groups row 3: no chat id for this app_chat group",
                          "groups row 4: no group name"]
    (g,) = rf.groups
    assert rf.owner_of(g) is None and rf.members_of(g) == set()


def test_a_file_without_the_columns_is_refused(tmp_path):
    bad = write_csv(tmp_path / "bad.csv", ("名字", "房间"), [("甲", "101")])
    with pytest.raises(RegisterFileError, match="missing column.*name"):
        RegisterFile.load(bad)
    reg = write_csv(tmp_path / "reg.csv", HEADERS, PEOPLE[:1])
    bad_groups = write_csv(tmp_path / "g.csv", ("群", "备注"), [("x", "y")])
    with pytest.raises(RegisterFileError, match="missing column.*name, kind"):
        RegisterFile.load(reg, bad_groups)
    with pytest.raises(FileNotFoundError):
        RegisterFile.load(tmp_path / "nope.csv")
    # a header-only file: nobody is on the platform, which is not an error
    empty = write_csv(tmp_path / "empty.csv", HEADERS, [])
    assert RegisterFile.load(empty).people == []


def test_world_and_linli_read_the_same_register_alike(tmp_path):
    """The generated Dalong-shaped register, read by the world and imported by Linli: the same
    accounts, the same household labels, the same groups and owners."""
    info = generate(tmp_path / "reg.csv", households=150, seed=5)
    rf = RegisterFile.load(info["register"], info["groups_file"])
    store = Store(tmp_path / "linli.db")
    import_register(store, info["register"], groups_path=info["groups_file"], now=0)
    residents = store.q("SELECT * FROM residents WHERE active=1")
    assert {p.uid for p in rf.people if p.uid} == {r["wecom_userid"] or r["oa_openid"] for r in residents
                                                   if r["wecom_userid"] or r["oa_openid"]}
    assert {p.household for p in rf.people if p.household} == {
        r["label"] for r in store.q("SELECT label FROM households WHERE active=1")}
    assert len(rf.people) == len(residents)
    linli_groups = {g["name"]: (g["kind"], g["owner"]) for g in store.q(
        "SELECT g.name, g.kind, o.wecom_userid AS owner FROM chat_groups g LEFT JOIN residents o ON o.id=g.owner_id")}
    assert {g.name: (g.kind, rf.owner_of(g)) for g in rf.groups} == linli_groups
    vulnerable = {(r["name"], r["vulnerable"]) for r in residents if r["vulnerable"]}
    assert vulnerable and {(p.name, p.vulnerable) for p in rf.people if p.vulnerable} == vulnerable


def test_short_rows_and_blank_lines_read_as_blanks(tmp_path):
    """Some exporters leave trailing empty cells off and put blank lines in; neither loses a person."""
    reg = tmp_path / "reg.csv"
    reg.write_text(",".join(HEADERS) + "\n\n大龙社区,第一网格,大龙一区,1栋,,101,甲,,居民,,,,oA\n"
                   "大龙社区,第一网格,大龙一区,1栋,,102,乙\n", encoding="utf-8")
    rf = RegisterFile.load(reg)
    assert [(p.name, p.uid, p.household, p.roles) for p in rf.people] == [
        ("甲", "oA", "大龙一区1栋101", ("resident",)), ("乙", None, "大龙一区1栋102", ("resident",))]
    assert rf.skipped == []
