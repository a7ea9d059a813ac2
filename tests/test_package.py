"""An installable Linli: every file it reads at run time is found through bot/core/resources.py (and
is listed as package data, so a wheel carries it), and `linli init` sets up an empty directory.

Fast: no wheel is built here (scripts/ci_wheel.sh does that in CI, after the suite)."""
from __future__ import annotations

import glob
import os
import tomllib
from pathlib import Path

import pytest

from bot.cli import main
from bot.core import config as config_mod
from bot.core import resources

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_DATA = PYPROJECT["tool"]["setuptools"]["package-data"]


# -- resources ---------------------------------------------------------------------------------------
def test_every_resource_the_app_needs_is_found():
    assert resources.missing() == []
    for package, name in resources.REQUIRED:
        assert resources.package_path(package, name).exists(), (package, name)


def test_the_app_reads_its_files_through_the_helper():
    from bot.core import texts
    from bot.web import dashboard

    assert texts.TEMPLATES == resources.shipped("templates")
    assert (texts.TEMPLATES / "web" / "login.html").is_file()
    assert "110" in texts.render("messages/fallback_help.j2", resident_name="王", roles=[])
    assert dashboard.STATIC == resources.package_path("bot.web", "static")
    assert (dashboard.STATIC / "live.js").is_file()
    assert config_mod.DEMO_REGISTER == resources.shipped("data/dalong_register.csv")
    assert config_mod.DEMO_REGISTER.read_text(encoding="utf-8").count("\n") > 1000
    assert config_mod.DEMO_GROUPS.is_file()
    migrations = sorted(resources.package_path("bot.data", "migrations").glob("*.sql"))
    assert len(migrations) >= 1


def test_in_the_checkout_the_shipped_links_lead_to_the_top_level_files():
    # relative symlinks, so a moved checkout still works; resolved paths name the real files
    for name, target in (("templates", ROOT / "templates"), ("data", ROOT / "data"),
                         ("config.toml", ROOT / "config.toml")):
        link = ROOT / "bot" / "_shipped" / name
        assert link.is_symlink() and not os.readlink(link).startswith("/"), link
        assert resources.shipped(name) == target.resolve()


def _packaged(package: str) -> set[str]:
    """Files (relative to the package's directory) that pyproject's package-data globs select."""
    base = ROOT / package.replace(".", "/")
    out = set()
    for pattern in PACKAGE_DATA.get(package, []):
        out |= {p for p in glob.glob(pattern, root_dir=base, recursive=True) if (base / p).is_file()}
    return out


@pytest.mark.parametrize("package, folder, pattern", [
    ("bot", "_shipped/templates", "**/*"),
    ("bot", "_shipped/data", "*.csv"),
    ("bot.web", "static", "*"),
    ("bot.data", "migrations", "*.sql"),
])
def test_package_data_lists_every_resource_file(package, folder, pattern):
    """A template with a new suffix, a new static file: in the wheel too, or this fails."""
    base = ROOT / package.replace(".", "/")
    present = {f"{folder}/{p}" for p in glob.glob(pattern, root_dir=base / folder, recursive=True)
               if (base / folder / p).is_file() and "__pycache__" not in p}
    assert len(present) >= 1
    assert present - _packaged(package) == set()


def test_package_data_ships_the_config_and_the_vocabulary():
    assert "_shipped/config.toml" in _packaged("bot")
    assert "vocabulary.toml" in _packaged("bot.core")
    # bot/_shipped is data, not a package of its own
    assert "bot._shipped*" in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["exclude"]


def test_a_missing_resource_is_a_clear_error(monkeypatch):
    with pytest.raises(resources.ResourceError, match=r"bot\.core/no-such-file\.txt is missing"):
        resources.package_path("bot.core", "no-such-file.txt")
    monkeypatch.setattr(resources, "REQUIRED", resources.REQUIRED + (("bot.core", "gone.toml"),
                                                                      ("bot.nonexistent", "x")))
    problems = resources.missing()
    assert len(problems) == 2 and "gone.toml" in problems[0] and "bot.nonexistent" in problems[1]


# -- linli init in an empty directory ---------------------------------------------------------------
@pytest.fixture
def empty_dir(tmp_path, monkeypatch):
    d = tmp_path / "empty"
    d.mkdir()
    monkeypatch.chdir(d)
    for key in ("LINLI_SERVER_LINK_SECRET", "LINLI_SERVER_FEED_TOKEN", "LINLI_STORE_PATH"):
        monkeypatch.delenv(key, raising=False)
    return d


def run(capsys, *argv):
    code = main([*map(str, argv)])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out, out.err


def test_init_writes_a_commented_config_anywhere_and_the_store_here(empty_dir, capsys):
    path = empty_dir / "etc" / "x.toml"  # its directory does not exist yet
    code, out, err = run(capsys, "init", "--config", path)
    assert code == 0, err
    assert f"wrote a commented config file to {path}" in out
    text = path.read_text(encoding="utf-8")
    shipped = config_mod.default_config_text()
    assert text.startswith("# Linli configuration") and text.count("\n#") > 10
    # the shipped file, line for line, but for its own two secrets
    assert len(shipped.splitlines()) == len(text.splitlines())
    changed = [(a, b) for a, b in zip(shipped.splitlines(), text.splitlines(), strict=True) if a != b]
    assert sorted(b.split(" =")[0] for _, b in changed) == ["feed_token", "link_secret"]
    s = config_mod.load(path, env={})
    assert s.server.link_secret not in config_mod.DEMO_VALUES[("server", "link_secret")]
    assert len(s.server.link_secret) >= 40 and len(s.server.feed_token) >= 40
    # the store's relative path is taken from the current directory, created on the way
    assert s.store.path == "data/linli.db"
    assert (empty_dir / "data" / "linli.db").is_file()
    assert f"store {empty_dir / 'data' / 'linli.db'}: schema version" in out


def test_init_with_the_default_config_path(empty_dir, capsys):
    code, out, _ = run(capsys, "init")
    assert code == 0 and (empty_dir / "config.toml").is_file()
    assert config_mod.load(empty_dir / "config.toml", env={}).wecom.corp_id  # the demo world's


def test_init_keeps_an_existing_config(empty_dir, capsys):
    path = empty_dir / "mine.toml"
    own = '# mine\n[store]\npath = "db/mine.db"\n[server]\nlink_secret = "' + "s" * 43 + '"\nfeed_token = "t"\n'
    path.write_text(own, encoding="utf-8")
    code, out, _ = run(capsys, "init", "--config", path)
    assert code == 0 and "wrote a" not in out
    assert path.read_text(encoding="utf-8") == own
    assert (empty_dir / "db" / "mine.db").is_file()


def test_a_second_init_changes_nothing(empty_dir, capsys):
    assert run(capsys, "init", "--config", "c.toml")[0] == 0
    before = (empty_dir / "c.toml").read_text(encoding="utf-8")
    code, out, _ = run(capsys, "init", "--config", "c.toml")
    assert code == 0 and "wrote" not in out
    assert (empty_dir / "c.toml").read_text(encoding="utf-8") == before


def test_init_refuses_a_directory_as_config(empty_dir, capsys):
    (empty_dir / "conf").mkdir()
    code, _, err = run(capsys, "init", "--config", empty_dir / "conf")
    assert code == 2 and "is a directory" in err


def test_init_refuses_a_config_under_a_file(empty_dir, capsys):
    (empty_dir / "afile").write_text("x", encoding="utf-8")
    code, _, err = run(capsys, "init", "--config", empty_dir / "afile" / "x.toml")
    assert code == 2 and "cannot create its directory" in err
    assert (empty_dir / "afile").read_text(encoding="utf-8") == "x"


# -- deployment examples stay consistent with what the code expects ----------------------------------
def test_dockerfile_runs_as_a_non_root_user_with_a_data_volume():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'VOLUME ["/data"]' in text and "HEALTHCHECK" in text and "linli" in text
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignore and ".git" in ignore


def test_systemd_unit_example():
    text = (ROOT / "deploy" / "linli.service").read_text(encoding="utf-8")
    keys = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
    assert {"User", "WorkingDirectory", "EnvironmentFile", "Restart", "ExecStart"} <= keys
    assert "Restart=on-failure" in text and "linli serve" in text
