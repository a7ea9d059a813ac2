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
