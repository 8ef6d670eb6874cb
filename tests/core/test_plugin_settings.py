"""Plugin settings declared by their plugins: secrets wrapped and hidden, former top-level keys still read."""
import logging
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from tagcore import plugins
from tagcore.cli import cli
from tagcore.config import Secret, load_config, settings_from_table
from tagcore.errors import ConfigError


@dataclass(frozen=True)
class Demo:
    token: Secret = Secret("")
    name: str = ""


def test_a_secret_default_makes_the_value_a_secret():
    parsed = settings_from_table(Demo, {"token": "abc:SECRET", "name": "x"}, "[demo]")
    assert isinstance(parsed.token, Secret) and parsed.token.reveal() == "abc:SECRET"
    assert "SECRET" not in repr(parsed)
    with pytest.raises(ConfigError, match=r"\[demo\] token must be a string, not a int") as info:
        settings_from_table(Demo, {"token": 12345}, "[demo]")
    assert "12345" not in info.value.message


def test_former_top_level_keys_move_to_their_sections_with_a_warning(tmp_path, capsys):
    path = tmp_path / "tag.toml"
    path.write_text('telegram_token = "1:T"\nhttp_api_key = "K"\nbroker_url = "amqp://u:p@h/v"\n'
                    '[telegram]\nallowed_users = "5"\n')
    config = load_config(path, {})
    assert config.section("telegram") == {"allowed_users": "5", "token": "1:T"}
    assert config.section("http") == {"api_key": "K"}
    assert config.section("broker") == {"url": "amqp://u:p@h/v"}
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 3 and all("deprecated" in line for line in warnings)
    assert any("telegram_token is deprecated, write it as token in a [telegram] table" in line for line in warnings)
    assert not any(secret in "\n".join(warnings) for secret in ("1:T", "=K", "u:p"))


def test_a_former_key_next_to_its_new_place_is_refused(tmp_path):
    path = tmp_path / "tag.toml"
    path.write_text('http_api_key = "old"\n[http]\napi_key = "new"\n')
    with pytest.raises(ConfigError, match=r"sets both http_api_key and \[http\] api_key"):
        load_config(path, {})


def test_every_plugin_declares_its_section():
    declared = plugins.settings_sections()
    assert {"telegram", "http", "broker", "rabbitmq", "clap"} <= set(declared)


FILE = ('max_duration = 12\nbroker_url = "amqp://bob:FILE-PW@mq/v"\n'
        '[telegram]\ntoken = "111:FILE-TOKEN"\nallowed_users = "7,8"\n'
        '[http]\napi_key = "FILE-KEY"\n[mystery]\npassword = "FILE-MYSTERY"\n')
ENV = {"TAG_TELEGRAM_TOKEN": "222:ENV-TOKEN", "TAG_HTTP_API_KEY": "ENV-KEY",
       "TAG_BROKER_URL": "amqp://bob:ENV-PW@mq/v"}


@pytest.mark.parametrize("environ", [{}, ENV], ids=["file", "environment"])
def test_tag_config_never_shows_a_secret(tmp_path, monkeypatch, caplog, environ):
    path = tmp_path / "tag.toml"
    path.write_text(FILE)
    monkeypatch.setenv("TAG_CONFIG", str(path))
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(cli, ["config"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = result.output + "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("FILE-PW", "FILE-TOKEN", "FILE-KEY", "FILE-MYSTERY", "ENV-TOKEN", "ENV-KEY", "ENV-PW"):
        assert secret not in shown
    lines = result.output.splitlines()
    for section in ("[telegram]", "[http]", "[broker]", "[rabbitmq]", "[mystery]"):
        assert section in lines
    telegram = lines[lines.index("[telegram]") + 1:]
    assert "token = Secret('***')" in telegram and "allowed_users = 7,8" in telegram
    broker = lines[lines.index("[broker]") + 1:]
    assert broker[0] == "url = Secret('***')"
    assert "max_duration = 12.0" in lines
    assert any(line.startswith("password = <hidden") for line in lines)


def test_an_unset_secret_shows_its_default_hidden(tmp_path, monkeypatch):
    monkeypatch.setenv("TAG_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("TAG_HTTP_API_KEY", raising=False)
    monkeypatch.delenv("TAG_BROKER_URL", raising=False)
    result = CliRunner().invoke(cli, ["config"], catch_exceptions=False)
    lines = result.output.splitlines()
    http = lines[lines.index("[http]") + 1:lines.index("[http]") + 3]  # the secrets come first: key and store URL
    assert sorted(http) == ["api_key = Secret('')", "store = Secret('')"]
    assert lines[lines.index("[broker]") + 1:][0] == "url = Secret('***')"  # the default guest URL
    assert "guest" not in result.output
