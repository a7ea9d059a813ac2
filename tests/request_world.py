"""A small register for the request tests: two grids, three buildings, leads, staff, a volunteer,
a social worker."""
from __future__ import annotations

import csv
import json

from helpers_callbacks import make_app, make_settings

from bot.domain.register import import_register

HEAD = ["网格", "小区", "楼栋", "单元", "房号", "姓名", "电话", "角色", "困难类别", "联系社工",
        "企业微信ID", "公众号OpenID"]
ROWS = [
    ["", "", "", "", "", "陈书记", "", "社区工作人员", "", "", "staff1", ""],
    ["第一网格", "", "", "", "", "李网格", "", "网格长", "", "", "grid1", ""],
    ["第二网格", "", "", "", "", "赵网格", "", "网格长", "", "", "grid2", ""],
    ["第一网格", "一区", "3栋", "2单元", "502", "王楼长", "", "楼长、党员", "", "", "lead3", ""],
    ["第一网格", "一区", "5栋", "", "101", "孙楼长", "", "楼长", "", "", "lead5", ""],
    ["第二网格", "二区", "8栋", "", "101", "周楼长", "", "楼长", "", "", "lead8", ""],
    ["第一网格", "一区", "3栋", "2单元", "301", "王小明", "", "居民", "", "", "xm", ""],
    ["第一网格", "一区", "3栋", "1单元", "101", "刘阿姨", "", "居民", "", "", "", "o-liu"],
    ["第一网格", "一区", "5栋", "", "302", "钱师傅", "", "志愿者", "", "", "vol1", ""],
    ["第二网格", "二区", "8栋", "", "201", "吴奶奶", "", "居民", "", "", "wu", ""],
    ["第一网格", "一区", "5栋", "", "303", "张大爷", "", "居民", "", "", "", ""],  # no WeChat
    ["第一网格", "", "", "", "", "林社工", "", "社工", "", "", "sw1", ""],
]
# who writes as each role in the role-matrix and reading tests (WeCom user ids)
SENDER_OF_ROLE = {"resident": "xm", "building_lead": "lead3", "grid_lead": "grid1",
                  "staff": "staff1", "social_worker": "sw1"}


def write_register(tmp_path):
    path = tmp_path / "register.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([HEAD] + ROWS)
    return path


def build(tmp_path, clock=None):
    """A fresh app (recording outbox, fake clock) with the register imported."""
    app = make_app(make_settings(tmp_path), clock=clock)
    import_register(app.store, write_register(tmp_path))
    return app


def person(app, name: str) -> dict:
    return app.store.q1("SELECT * FROM residents WHERE name = ?", (name,))


def sends(app, target: str | None = None) -> list[dict]:
    """Queued sends (optionally to one target) with the payload text decoded."""
    rows = app.store.q("SELECT * FROM sends ORDER BY id")
    return [{**r, "text": json.loads(r["payload"])["text"]} for r in rows
            if target is None or r["target"] == target]


def texts_to(app, target: str) -> list[str]:
    return [s["text"] for s in sends(app, target)]


def events(app, request_id: int) -> list[str]:
    return [e["kind"] for e in app.store.q(
        "SELECT kind FROM events WHERE ref_type = 'request' AND ref_id = ? ORDER BY id",
        (request_id,))]
