"""The CLI door for the acts the chat and the dashboard also have: the same domain functions, the
same refusals in plain words (issue a drill, a notice, a vulnerable-only warning; release a held CAP
message; retry dead sends; schedule notices; the office's report)."""
from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
from test_cli import REPO_CONFIG, run

from bot.core import config as config_mod
from bot.data.store import Store
from bot.world.dalong import generate

DATA = Path(__file__).parent / "data" / "cap"


@pytest.fixture
def cfg(tmp_path, capsys):
    p = tmp_path / "config.toml"
    p.write_text(REPO_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    config_mod.write_key(p, "store", "path", str(tmp_path / "linli.db"))
    reg = tmp_path / "r.csv"
    info = generate(reg, households=60, seed=3)
    code, _, err = run(capsys, "import", reg, "--groups", info["groups_file"], "--config", p)
    assert code == 0, err
    return p


def rows(cfg, sql, params=()):
    store = Store(config_mod.load(cfg, env={}).store.path)
    try:
        return store.q(sql, params)
    finally:
        store.close()


def test_a_drill_a_notice_and_a_vulnerable_only_warning(cfg, capsys):
    assert run(capsys, "alert", "send", "--type", "暴雨", "--colour", "黄色", "--drill", "--config", cfg)[0] == 0
    assert run(capsys, "alert", "send", "--type", "通知", "--text", "周六为老服务日", "--config", cfg)[0] == 0
    assert run(capsys, "alert", "send", "--type", "高温", "--colour", "橙色", "--vulnerable", "--config", cfg)[0] == 0
    got = rows(cfg, "SELECT type, status, kind, audience FROM alerts ORDER BY id")
    assert [(r["type"], r["status"], r["kind"]) for r in got] == [
        ("暴雨", "exercise", "warning"), ("通知", "actual", "notice"), ("高温", "actual", "warning")]
    assert got[2]["audience"] == '["*"]'


def test_a_colour_the_signal_lacks_is_refused_in_plain_words(cfg, capsys):
    code, _, err = run(capsys, "alert", "send", "--type", "高温", "--colour", "蓝色", "--config", cfg)
    assert code == 1 and "高温预警信号没有“蓝色”" in err and "黄色、橙色、红色" in err


def test_ingest_then_release_a_held_cap_message(cfg, capsys):
    xml = (DATA / "storm_alert.xml").read_text(encoding="utf-8").replace("番禺区", "某某镇").replace("440113", "449999")
    xml = xml.replace("2024-06-01T14:00:00+08:00", "2099-06-01T14:00:00+08:00")  # the CLI runs on the real clock
    path = cfg.parent / "held.xml"
    path.write_text(xml, encoding="utf-8")
    code, out, _ = run(capsys, "alert", "ingest", path, "--config", cfg)
    assert code == 0 and out.startswith("held:")
    cap_id = rows(cfg, "SELECT id FROM cap_messages")[0]["id"]
    code, out, _ = run(capsys, "alert", "cap-release", cap_id, "--scope", "第一网格", "--config", cfg)
    assert code == 0 and rows(cfg, "SELECT COUNT(*) n FROM alerts")[0]["n"] == 1


def test_retry_needs_ids_or_an_alert_and_puts_dead_sends_back(cfg, capsys):
    code, _, err = run(capsys, "alert", "retry", "--config", cfg)
    assert code == 2 and "send ids or alert_id" in err
    run(capsys, "alert", "send", "--type", "暴雨", "--colour", "黄色", "--config", cfg)
    store = Store(config_mod.load(cfg, env={}).store.path)
    store.conn.execute("UPDATE sends SET state='dead' WHERE id IN (SELECT id FROM sends LIMIT 3)")
    store.close()
    code, out, _ = run(capsys, "alert", "retry", "--alert", "1", "--config", cfg)
    assert code == 0 and out.startswith("3 dead or failed sends")


def test_schedule_add_list_pause_cancel(cfg, capsys):
    code, out, _ = run(capsys, "schedule", "add", "每月5号9点", "--text", "为老服务日", "--config", cfg)
    assert code == 0 and out.startswith("schedule #1")
    assert "#1 [active]" in run(capsys, "schedule", "list", "--config", cfg)[1]
    assert run(capsys, "schedule", "pause", "1", "--config", cfg)[0] == 0
    assert "#1 [paused]" in run(capsys, "schedule", "list", "--config", cfg)[1]
    assert run(capsys, "schedule", "cancel", "1", "--config", cfg)[0] == 0
    code, _, err = run(capsys, "schedule", "add", "昨天8点", "--text", "x", "--config", cfg)
    assert code == 1 and err.startswith("refused:") and "Traceback" not in err


def test_the_office_report_is_an_xlsx(cfg, capsys, tmp_path):
    run(capsys, "alert", "send", "--type", "暴雨", "--colour", "黄色", "--config", cfg)
    out = tmp_path / "office.xlsx"
    code, _, _ = run(capsys, "report", "office", "--alert", "1", "--out", out, "--config", cfg)
    assert code == 0 and openpyxl.load_workbook(out).sheetnames


def test_drill_report_of_a_warning(cfg, capsys, tmp_path):
    run(capsys, "alert", "send", "--type", "暴雨", "--colour", "黄色", "--drill", "--config", cfg)
    out = tmp_path / "after.xlsx"
    code, printed, _ = run(capsys, "drill", "report", "1", "--out", out, "--config", cfg)
    assert code == 0 and openpyxl.load_workbook(out).sheetnames
    code, _, err = run(capsys, "drill", "report", "99", "--out", out, "--config", cfg)
    assert code == 1 and err.startswith("refused:")
