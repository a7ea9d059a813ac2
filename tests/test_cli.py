"""`linli` commands as an operator meets them: plain messages, no tracebacks, non-zero exits.

In-process through bot.cli.main with a config file of the test's own (never ./config.toml)."""
import io
import re
import sys
from pathlib import Path

import pytest
from test_roster import GROUP_HEAD, GROUPS, HEAD, ROWS, write_csv

from bot.cli import main
from bot.core import config as config_mod
from bot.data.store import Store

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"
@pytest.fixture
def cfg(tmp_path):
    """A copy of the shipped config.toml with its store in tmp_path."""
    p = tmp_path / "config.toml"
    p.write_text(REPO_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    config_mod.write_key(p, "store", "path", str(tmp_path / "linli.db"))
    return p


def run(capsys, *argv):
    code = main([*map(str, argv)])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out, out.err


def active(cfg) -> int:
    store = Store(config_mod.load(cfg, env={}).store.path)
    try:
        return store.scalar("SELECT COUNT(*) FROM residents WHERE active=1")
    finally:
        store.close()


# -- import ---------------------------------------------------------------------------------------
@pytest.fixture
def imported(cfg, tmp_path, capsys):
    reg = write_csv(tmp_path / "r.csv", HEAD, ROWS)
    grp = write_csv(tmp_path / "g.csv", GROUP_HEAD, GROUPS)
    code, out, _ = run(capsys, "import", reg, "--groups", grp, "--config", cfg)
    assert code == 0 and f"{len(ROWS)} residents" in out
    return cfg


@pytest.mark.parametrize("content", [b"", b"\n", ",".join(HEAD).encode() + b"\n"],
                         ids=["empty", "blank_line", "header_only"])
def test_import_of_an_empty_file_exits_non_zero_and_keeps_the_register(imported, tmp_path, capsys, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    code, out, err = run(capsys, "import", path, "--config", imported)
    assert code == 1 and "import refused" in err and "没有" in err
    assert active(imported) == len(ROWS)


def test_import_refuses_a_shrunken_register_then_allows_it(imported, tmp_path, capsys):
    short = write_csv(tmp_path / "short.csv", HEAD, [r for r in ROWS if r[5] not in ("王小明", "刘大爷")])
    code, _, err = run(capsys, "import", short, "--config", imported)
    assert code == 1 and "--allow-shrink" in err and "2 人" in err
    assert active(imported) == len(ROWS)
    code, out, _ = run(capsys, "import", short, "--dry-run", "--config", imported)
    assert code == 0 and "dry run, nothing written" in out and "2 marked inactive" in out
    assert "would be refused" in out and "2 人" in out
    code, out, _ = run(capsys, "import", short, "--dry-run", "--allow-shrink", "--config", imported)
    assert code == 0 and "2 marked inactive" in out and "refused" not in out
    assert active(imported) == len(ROWS)
    code, out, _ = run(capsys, "import", short, "--allow-shrink", "--config", imported)
    assert code == 0 and "2 marked inactive" in out
    assert active(imported) == len(ROWS) - 2


def test_max_shrink_comes_from_the_config(imported, tmp_path, capsys):
    text = imported.read_text(encoding="utf-8")
    assert "max_shrink = 0.2 " in text
    imported.write_text(text.replace("max_shrink = 0.2 ", "max_shrink = 0.5 "), encoding="utf-8")
    short = write_csv(tmp_path / "short.csv", HEAD, [r for r in ROWS if r[5] not in ("王小明", "刘大爷")])
    code, _, _ = run(capsys, "import", short, "--config", imported)
    assert code == 0 and active(imported) == len(ROWS) - 2


@pytest.mark.parametrize("name, content, needle", [
    ("nope.csv", None, "找不到文件"),
    ("r.xlsx", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "不是名册的 CSV 或 Excel"),
    ("r.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, ".xlsx"),
    ("r.xlsx", b"PK\x03\x04garbage", "Excel 文件已损坏"),
])
def test_import_of_a_wrong_file_is_one_plain_line(cfg, tmp_path, capsys, name, content, needle):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, _, err = run(capsys, "import", path, "--config", cfg)
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1


def test_import_of_a_gbk_csv(cfg, tmp_path, capsys):
    path = tmp_path / "gbk.csv"
    path.write_bytes("\r\n".join(",".join(r) for r in [HEAD] + ROWS).encode("gbk"))
    code, out, _ = run(capsys, "import", path, "--config", cfg)
    assert code == 0 and f"{len(ROWS)} residents" in out


def test_import_lists_bad_rows_in_chinese(cfg, tmp_path, capsys):
    rows = ROWS + [["第一网格", "一区", "3栋", "", "601", "怪角色", "", "国王", "", "", ""]]
    code, _, err = run(capsys, "import", write_csv(tmp_path / "r.csv", HEAD, rows), "--config", cfg)
    assert code == 1 and f"第 {len(ROWS) + 2} 行「角色」：无法识别的角色“国王”" in err
    assert "1 bad row(s), nothing imported" in err


# -- serve: no public deployment with the demo secrets --------------------------------------------
@pytest.fixture
def serve_called(monkeypatch):
    import bot.server

    calls = []

    async def fake_serve(settings, **kw):
        calls.append(settings)
        return 0
    monkeypatch.setattr(bot.server, "serve", fake_serve)
    monkeypatch.setattr(bot.server, "use_uvloop", lambda: None)
    return calls


def test_serve_refuses_a_public_url_with_demo_secrets(cfg, capsys, serve_called, monkeypatch):
    monkeypatch.setenv("LINLI_SERVER_PUBLIC_URL", "https://linli.example.cn")
    code, _, err = run(capsys, "serve", "--fronts", "0", "--config", cfg)
    assert code == 2 and serve_called == []
    for env in ("LINLI_SERVER_LINK_SECRET", "LINLI_WECOM_SECRET", "LINLI_WECOM_TOKEN",
                "LINLI_WECOM_ENCODING_AES_KEY", "LINLI_OA_APP_SECRET", "LINLI_OA_TOKEN",
                "LINLI_OA_ENCODING_AES_KEY"):
        assert env in err
    assert "https://linli.example.cn" in err


def test_serve_starts_once_the_secrets_are_real(cfg, capsys, serve_called, monkeypatch):
    monkeypatch.setenv("LINLI_SERVER_PUBLIC_URL", "https://linli.example.cn")
    for (section, key), _ in config_mod.DEMO_VALUES.items():
        value = "x" * 43 if key != "encoding_aes_key" else "A" * 42 + "E"
        monkeypatch.setenv(f"LINLI_{section.upper()}_{key.upper()}", value)
    code, _, err = run(capsys, "serve", "--fronts", "0", "--config", cfg)
    assert code == 0 and len(serve_called) == 1, err


def test_serve_on_localhost_keeps_the_demo(cfg, capsys, serve_called):
    code, _, _ = run(capsys, "serve", "--fronts", "0", "--config", cfg)
    assert code == 0 and len(serve_called) == 1


# -- init: a fresh random link secret in place of the demo one -------------------------------------
def test_init_replaces_the_demo_link_secret_in_place(cfg, capsys):
    before = cfg.read_text(encoding="utf-8")
    code, out, _ = run(capsys, "init", "--config", cfg)
    assert code == 0 and "link_secret" in out and "feed_token" in out
    after = cfg.read_text(encoding="utf-8")
    s = config_mod.load(cfg, env={})
    assert s.server.link_secret not in config_mod.DEMO_VALUES[("server", "link_secret")]
    assert len(s.server.link_secret) >= 40 and len(s.server.feed_token) >= 40
    # only those two lines changed; every comment stays, the link_secret line's comment too
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines()) and len(changed) == 2
    assert all(re.match(r"(link_secret|feed_token) = \"", b) for _, b in changed)
    assert "# signs ack links" in [b for a, b in changed if b.startswith("link_secret")][0]
    # a second init keeps the now-real secret
    code, out, _ = run(capsys, "init", "--config", cfg)
    assert code == 0 and "link_secret" not in out
    assert config_mod.load(cfg, env={}).server.link_secret == s.server.link_secret


def test_init_leaves_the_file_alone_when_the_environment_holds_the_secret(cfg, capsys, monkeypatch):
    monkeypatch.setenv("LINLI_SERVER_LINK_SECRET", "from-the-environment-" + "x" * 30)
    monkeypatch.setenv("LINLI_SERVER_FEED_TOKEN", "from-the-environment-" + "y" * 30)
    before = cfg.read_text(encoding="utf-8")
    code, out, _ = run(capsys, "init", "--config", cfg)
    assert code == 0 and cfg.read_text(encoding="utf-8") == before


# -- user add without a terminal -------------------------------------------------------------------
def users(cfg):
    store = Store(config_mod.load(cfg, env={}).store.path)
    try:
        return store.q("SELECT username, resident_id FROM web_users ORDER BY id")
    finally:
        store.close()


class NotATerminal(io.StringIO):
    def isatty(self):
        return False


def test_user_add_reads_the_password_from_the_environment(cfg, capsys, monkeypatch):
    monkeypatch.setenv("LINLI_USER_PASSWORD", "a-long-password")
    monkeypatch.setattr(sys, "stdin", NotATerminal(""))
    code, out, _ = run(capsys, "user", "add", "zhang", "--config", cfg)
    assert code == 0 and "zhang ready" in out
    assert users(cfg) == [{"username": "zhang", "resident_id": None}]


def test_user_add_reads_the_password_from_stdin(imported, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", NotATerminal("a-long-password\n"))
    code, out, _ = run(capsys, "user", "add", "wang", "--resident", "王楼长", "--password-stdin",
                       "--config", imported)
    assert code == 0 and "linked to 王楼长" in out
    assert [u["username"] for u in users(imported)] == ["wang"] and users(imported)[0]["resident_id"]


def test_user_add_without_a_password_or_terminal_says_how(cfg, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", NotATerminal(""))

    def no_prompt(*a, **k):
        raise AssertionError("prompted without a terminal")
    monkeypatch.setattr("getpass.getpass", no_prompt)
    code, _, err = run(capsys, "user", "add", "li", "--config", cfg)
    assert code == 1 and "LINLI_USER_PASSWORD" in err and "--password-stdin" in err
    assert users(cfg) == []


def test_user_add_short_password_from_stdin(cfg, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", NotATerminal("short\n"))
    code, _, err = run(capsys, "user", "add", "li", "--password-stdin", "--config", cfg)
    assert code == 1 and "8 characters" in err


def test_import_warns_about_each_vulnerable_resident_without_a_social_worker(cfg, tmp_path, capsys):
    from bot.world.dalong import generate

    reg = tmp_path / "v.csv"
    info = generate(reg, households=60, seed=3)
    lines = reg.read_text(encoding="utf-8").splitlines()
    head = lines[0].split(",")
    col_v, col_w = head.index("困难类别"), head.index("联系社工")
    orphan = None
    for i, line in enumerate(lines[1:], start=1):
        cells = line.split(",")
        if cells[col_v] and cells[col_w]:
            cells[col_w] = ""
            orphan = cells[head.index("姓名")]
            lines[i] = ",".join(cells)
            break
    reg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = run(capsys, "import", reg, "--groups", info["groups_file"], "--config", cfg)
    assert code == 0 and orphan and "have no social worker" in err and orphan in err
