import tomllib

import pytest

from bot.core.config import ConfigError, load

GOOD = """
[store]
path = "x.db"
[wecom]
corp_id = "ww1"
token = "T"
encoding_aes_key = "DoGSgGYHvHZ1kpKiLeN/CkVCF2nfZMlKuaRTqkebPek"
secret = "in-file"
"""


def write(tmp_path, text):
    p = tmp_path / "config.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_checked_in_config_loads():
    s = load("config.toml", env={})
    assert s.store.path == "data/linli.db"
    assert s.server.timestamp_window_s == 300
    assert s.escalation.remind_after_min["red"] < s.escalation.remind_after_min["blue"]


def test_defaults_and_frozen(tmp_path):
    s = load(write(tmp_path, GOOD), env={})
    assert s.store.path == "x.db" and s.wecom.secret == "in-file"
    with pytest.raises(Exception):
        s.store.path = "y"  # frozen


def test_env_overrides_secrets_and_redaction(tmp_path):
    env = {"LINLI_WECOM_SECRET": "from-env", "LINLI_DASHBOARD_PASSWORD": "pw",
           "LINLI_SERVER_PORT": "9999"}
    s = load(write(tmp_path, GOOD), env=env)
    assert s.wecom.secret == "from-env" and s.dashboard.password == "pw" and s.server.port == 9999
    red = s.redacted()
    assert red["wecom"]["secret"] == "***" and red["dashboard"]["password"] == "***"
    assert "from-env" not in repr(red)


@pytest.mark.parametrize("text, env, needle", [
    ("[store]\npathh = 'x'\n", {}, "[store] pathh"),
    ("[stor]\npath = 'x'\n", {}, "'stor'"),
    ("[server]\nport = 'eighty'\n", {}, "[server] port"),
    ("[server]\nport = true\n", {}, "[server] port"),
    ("[wecom]\ncorp_id='ww'\ntoken='t'\nencoding_aes_key='short'\n", {}, "encoding_aes_key"),
    ("[wecom]\ncorp_id='ww'\n", {}, "[wecom] token"),
    ("[server\n", {}, "not valid TOML"),
    ("", {"LINLI_SERVER_PORT": "x"}, "LINLI_SERVER_PORT"),
])
def test_errors_name_the_key_and_file(tmp_path, text, env, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load(p, env=env)
    assert needle in str(e.value)
    if not needle.startswith("LINLI_"):
        assert str(p) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml", env={})


def test_cli_reports_config_error(tmp_path, capsys):
    from bot.cli import main

    assert main(["roster", "--config", str(write(tmp_path, "[x]\n"))]) == 2
    assert "configuration error" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--config", "NOPE.toml", "roster"], ["roster", "--config", "NOPE.toml"],
                                  ["alert", "list", "--config", "NOPE.toml"]])
def test_config_flag_anywhere_on_the_line(argv, capsys):
    from bot.cli import main

    assert main(argv) == 2
    assert "NOPE.toml" in capsys.readouterr().err


# -- demo credentials on a public deployment ---------------------------------------------------
def test_checked_in_config_has_a_register_section():
    s = load("config.toml", env={})
    assert s.register.max_shrink == 0.2 and s.register.max_rows >= 300_000


@pytest.mark.parametrize("text, needle", [
    ("[register]\nmax_shrink = 1.5\n", "max_shrink"),
    ("[register]\nmax_rows = 0\n", "max_rows"),
])
def test_register_limits_are_checked(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle):
        load(write(tmp_path, text), env={})


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:8080/", "http://[::1]:8080",
                                 "http://linli.local", "http://127.0.1.1"])
def test_demo_secrets_are_fine_on_this_machine(url):
    from bot.core.config import deployment_problems

    assert deployment_problems(load("config.toml", env={"LINLI_SERVER_PUBLIC_URL": url})) == []


def test_demo_secrets_are_listed_for_a_public_url():
    from bot.core.config import DEMO_VALUES, deployment_problems

    env = {"LINLI_SERVER_PUBLIC_URL": "https://linli.example.cn", "LINLI_DASHBOARD_PASSWORD": "linli-demo"}
    problems = deployment_problems(load("config.toml", env=env))
    text = "\n".join(problems)
    for section, key in DEMO_VALUES:
        assert f"[{section}] {key}" in text and f"LINLI_{section.upper()}_{key.upper()}" in text
    assert len(problems) == len(DEMO_VALUES)
    # the default link secret (no key in the file) and an empty one count too
    for link_secret in ("change-me-link-secret", ""):
        env2 = {"LINLI_SERVER_PUBLIC_URL": "https://x.cn", "LINLI_SERVER_LINK_SECRET": link_secret}
        assert any("link_secret" in p for p in deployment_problems(load("config.toml", env=env2)))


def test_real_secrets_leave_no_problem():
    from bot.core.config import DEMO_VALUES, deployment_problems

    env = {"LINLI_SERVER_PUBLIC_URL": "https://linli.example.cn"}
    for section, key in DEMO_VALUES:
        env[f"LINLI_{section.upper()}_{key.upper()}"] = "A" * 42 + "E" if key == "encoding_aes_key" else "s3cret-" + key
    assert deployment_problems(load("config.toml", env=env)) == []


def test_write_key_in_place(tmp_path):
    from bot.core.config import write_key

    p = write(tmp_path, '# top\n[server]\nport = 8080  # the port\nlink_secret = "old"   # signs\n'
                        '[wecom]\ntoken = "T"\n')
    write_key(p, "server", "link_secret", 'n"e\\w')
    write_key(p, "wecom", "secret", "s")      # a key the section lacks: added under its header
    write_key(p, "dashboard", "password", "p")  # a section the file lacks: appended
    write_key(p, "server", "port", "9090")    # a bare value is replaced too (as a string)
    text = p.read_text(encoding="utf-8")
    assert text.startswith("# top\n[server]\nport = \"9090\"  # the port\n")
    assert 'link_secret = "n\\"e\\\\w"   # signs' in text
    raw = tomllib.loads(text)
    assert raw["server"]["link_secret"] == 'n"e\\w' and raw["wecom"] == {"secret": "s", "token": "T"}
    assert raw["dashboard"] == {"password": "p"}
