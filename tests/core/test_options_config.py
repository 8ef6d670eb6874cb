from dataclasses import dataclass
from pathlib import Path

import pytest

from tagcore.config import Secret, load_config
from tagcore.errors import ConfigError, InvalidRequest, UnknownOption
from tagcore.options import Option, parse_key_values, resolve_options

SPECS = (
    Option("steps", "int", 100, "steps", minimum=1, maximum=1000),
    Option("guidance", "float", 3.0, "cfg", minimum=0),
    Option("sampler", "choice", "ddim", "sampler", choices=("ddim", "dpmpp")),
    Option("compile", "bool", False, "compile", scope="worker"),
    Option("weights", "path", "", "folder", scope="worker"),
)


def test_defaults_types_and_aliases_of_cli_strings():
    values = resolve_options(SPECS, {"steps": "25", "guidance": "4.5", "sampler": "dpmpp", "compile": "yes"})
    assert values == {"steps": 25, "guidance": 4.5, "sampler": "dpmpp", "compile": True, "weights": ""}
    assert resolve_options(SPECS, {}, scope="request") == {"steps": 100, "guidance": 3.0, "sampler": "ddim"}


@pytest.mark.parametrize("given, message", [
    ({"steps": "many"}, "not a valid int"),
    ({"steps": 2.5}, "not a valid int"),
    ({"steps": True}, "not a valid int"),
    ({"steps": 0}, "below the minimum"),
    ({"steps": 5000}, "above the maximum"),
    ({"guidance": "nan"}, "not a valid float"),
    ({"sampler": "euler"}, "not one of"),
    ({"compile": "maybe"}, "not a valid bool"),
    ({"weights": ["a"]}, "not a valid path"),
])
def test_bad_values_are_rejected(given, message):
    with pytest.raises(InvalidRequest, match=message):
        resolve_options(SPECS, given)


def test_unknown_option_and_wrong_scope():
    with pytest.raises(UnknownOption, match="no option 'stepz'.*steps, guidance"):
        resolve_options(SPECS, {"stepz": 1}, owner="maa")
    with pytest.raises(InvalidRequest, match="weights of maa is set when the worker starts"):
        resolve_options(SPECS, {"weights": "/etc"}, scope="request", owner="maa")
    with pytest.raises(InvalidRequest, match=r"steps of maa is a request option: give it with each request "
                                             r"\(tag generate -O steps=\.\.\."):
        resolve_options(SPECS, {"steps": 25}, scope="worker", owner="maa")


def test_key_value_pairs():
    assert parse_key_values(["steps=25", "weights=/a=b"]) == {"steps": "25", "weights": "/a=b"}
    with pytest.raises(InvalidRequest, match="KEY=VALUE"):
        parse_key_values(["steps"])


def test_config_file_and_environment(tmp_path):
    path = tmp_path / "tag.toml"
    path.write_text('default_backend = "audiogen"\nmax_duration = 20\n'
                    '[backends.make_an_audio]\nweights = "/models/maa"\ndtype = "fp16"\n'
                    '[telegram]\nallowed_users = "1,2"\ntoken = "123:SECRET"\n')
    env = {"TAG_MAX_DURATION": "12.5", "TAG_MAKE_AN_AUDIO_DTYPE": "bf16", "TAG_TELEGRAM_RATE": "3",
           "TAG_BROKER_URL": "amqp://u:pw@host/vh"}
    config = load_config(path, env)
    assert config.default_backend == "audiogen" and config.max_duration == 12.5
    assert config.backend_settings("make_an_audio") == {"weights": "/models/maa", "dtype": "bf16"}
    assert config.section("telegram") == {"allowed_users": "1,2", "token": "123:SECRET", "rate": "3"}
    assert config.section("broker") == {"url": "amqp://u:pw@host/vh"}
    shown = repr(config) + str(config.redacted({"telegram": _Tokens, "broker": _Url}))
    assert "SECRET" not in shown and "pw" not in shown


@dataclass(frozen=True)
class _Tokens:
    token: Secret = Secret("")
    allowed_users: str = ""
    rate: int = 1


@dataclass(frozen=True)
class _Url:
    url: Secret = Secret("amqp://localhost")


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, {})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown config key 'colour'"):
        load_config(unknown, {})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", {})
    with pytest.raises(ConfigError, match="max_duration"):
        load_config(None, {"TAG_MAX_DURATION": "long", "TAG_CONFIG": str(tmp_path / "none.toml")})


def test_plugin_settings_are_coerced_and_checked_the_same_way_everywhere():
    from dataclasses import dataclass

    from tagcore.config import settings_from_table

    @dataclass(frozen=True)
    class Demo:
        size: int = 1
        ratio: float = 0.5
        names: tuple[str, ...] = ()
        enabled: bool = False
        label: str = ""

    parsed = settings_from_table(Demo, {"size": "3", "ratio": 2, "names": "a, b,,c", "enabled": "yes",
                                        "label": 7, "ignored_when_none": None}, "[demo]")
    assert parsed == Demo(size=3, ratio=2.0, names=("a", "b", "c"), enabled=True, label="7")
    with pytest.raises(ConfigError, match=r"unknown \[demo\] setting 'sise' \(known: enabled, label, names"):
        settings_from_table(Demo, {"sise": 3}, "[demo]")
    with pytest.raises(ConfigError, match=r"\[demo\] size: 'big' is not a valid int"):
        settings_from_table(Demo, {"size": "big"}, "[demo]")
    with pytest.raises(ConfigError, match=r"\[demo\] enabled: 'maybe' is not a yes/no value"):
        settings_from_table(Demo, {"enabled": "maybe"}, "[demo]")


def test_weights_values_name_a_folder_or_a_hub_id(tmp_path, monkeypatch):
    from tagcore.options import weights_location

    monkeypatch.chdir(tmp_path)
    assert weights_location("", "facebook/audiogen-medium") == ("facebook/audiogen-medium", False)
    assert weights_location("owner/model", "x/y") == ("owner/model", False)
    (tmp_path / "owner" / "model").mkdir(parents=True)
    assert weights_location("owner/model", "x/y") == ("owner/model", True)  # an existing folder wins
    for typo in ("./models/maa", "/models/maa", "models/maa/v1"):  # paths that do not exist stay paths
        assert weights_location(typo, "x/y") == (str(Path(typo)), True)
    assert weights_location("~/m", "x/y")[0].startswith(str(Path.home()))


def test_cache_dir_follows_xdg_and_defaults_to_the_home_cache(tmp_path):
    from tagcore.config import cache_dir

    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "tag"
    assert cache_dir({}) == Path.home() / ".cache" / "tag"
