"""Configuration from an optional TOML file and `TAG_*` environment variables (the environment wins).

File: `$TAG_CONFIG`, else `$XDG_CONFIG_HOME/tag/config.toml` (`~/.config/tag/config.toml`). Top-level keys are the
fields of `Config`; `[backends.NAME]` tables hold worker options of a backend (for example `weights`); any other
table (`[telegram]`, `[broker]`, `[rabbitmq]`, `[http]`, `[clap]`...) belongs to the plugin that declares it.

Environment: `TAG_<FIELD>` for a field (`TAG_MAX_DURATION`...), `TAG_<BACKEND>_<OPTION>` for a backend's worker
option (`TAG_MAKE_AN_AUDIO_WEIGHTS=/models/maa`) and `TAG_<SECTION>_<KEY>` for a plugin section
(`TAG_TELEGRAM_TOKEN`, `TAG_BROKER_URL`). A plugin declares its secrets by giving a field of its settings dataclass a
`Secret` default: `coerce_setting` wraps such values, and `redacted` hides them, so they never print or log.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Secret:
    """A string that hides itself from repr/str/logging; call `reveal()` where the value is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass
class Config:
    """Settings shared by the CLI, workers and frontends."""

    default_backend: str = "make_an_audio"
    transport: str = "inprocess"
    device: str = "auto"
    scorer: str = ""
    max_duration: float = 30.0
    max_prompt_chars: int = 500
    max_candidates: int = 8
    max_batch: int = 8
    request_timeout: float = 600.0
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    """Plugin tables as given in the file (values unchecked, secrets not yet wrapped): never printed as they are."""
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    source: str = "defaults"

    def backend_settings(self, backend: str) -> dict[str, Any]:
        """Worker options configured for `backend`: its file table, overridden by TAG_<BACKEND>_<OPTION>."""
        return _merge_env(self.backends.get(backend, {}), f"TAG_{backend.upper()}_", self.environ)

    def section(self, name: str) -> dict[str, Any]:
        """A plugin's own table (`config.section("telegram")`), overridden by TAG_<NAME>_<KEY>."""
        return _merge_env(self.sections.get(name, {}), f"TAG_{name.upper()}_", self.environ)

    def redacted(self, declared: Mapping[str, type]) -> dict[str, Any]:
        """The configuration as a dict that is safe to print.

        `declared` maps section names to the settings dataclasses plugins declared for them (the caller knows the
        loaded plugins: `tagcore.plugins.settings_sections()`). A declared section shows its effective values (file
        and environment) with its `Secret` fields hidden, set or not; a section no installed plugin declares shows
        only its keys, since nothing says which of its values are secret.
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.pop("environ")
        sections: dict[str, dict[str, Any]] = {}
        for name in sorted(set(declared) | set(self.sections)):
            if name not in declared:
                sections[name] = {key: "<hidden: no installed plugin declares this section>"
                                  for key in self.sections[name]}
                continue
            secrets = _secret_defaults(declared[name])
            table = secrets | self.section(name)
            sections[name] = {key: _shown(value, key in secrets) for key, value in table.items()}
        out["sections"] = sections
        return out


def _shown(value: Any, secret: bool) -> Any:
    if isinstance(value, Secret) or secret:
        return repr(value if isinstance(value, Secret) else Secret(str(value)))
    return value


def _secret_defaults(cls: type) -> dict[str, Secret]:
    """The fields of a settings dataclass that hold secrets (those whose default is a `Secret`), with defaults."""
    return {f.name: f.default for f in dataclasses.fields(cls) if isinstance(f.default, Secret)}


def _merge_env(table: Mapping[str, Any], prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(table)
    for key, value in environ.items():
        if key.startswith(prefix) and key[4:].lower() not in _FIELDS:
            merged[key[len(prefix):].lower()] = value
    return merged


_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name not in ("backends", "sections", "environ", "source")}
_MOVED = {"broker_url": ("broker", "url"), "telegram_token": ("telegram", "token"), "http_api_key": ("http", "api_key")}
"""Former top-level keys, now settings of the plugin sections that declare them: file key -> (section, key)."""


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("TAG_CONFIG"):
        return Path(environ["TAG_CONFIG"]).expanduser()
    base = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "tag" / "config.toml"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where TAG keeps what it builds for this machine (compiled kernels, torch's compile caches):
    `$XDG_CACHE_HOME/tag`, by default ~/.cache/tag. Out of /tmp, so it outlives restarts and a service's private /tmp."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tag"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where TAG keeps state that must outlive restarts and cannot be rebuilt (the HTTP job store):
    `$XDG_DATA_HOME/tag`, by default ~/.local/share/tag. Back it up; unlike `cache_dir`, deleting it loses work."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tag"


def parse_flag(owner: str, key: str, value: Any) -> bool:
    """A yes/no setting from TOML (a bool) or the environment (1/0, true/false, yes/no, on/off)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{owner} {key}: {value!r} is not a yes/no value")


def coerce_setting(owner: str, key: str, value: Any, default: Any) -> Any:
    """One raw setting (typed from TOML, a string from the environment) as the type of its `default`.

    Tuples take a list or a comma-separated string; a `Secret` default makes the value a `Secret` (from a string).
    Every plugin's settings go through here, so a bad value is reported the same way everywhere:
    `<owner> <key>: <value> is not a valid <type>` (a secret's value is never quoted).
    """
    if isinstance(default, Secret):
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise ConfigError(f"{owner} {key} must be a string, not a {type(value).__name__}")
        return Secret(value)
    if isinstance(default, bool):
        return parse_flag(owner, key, value)
    try:
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner} {key}: {value!r} is not a valid {type(default).__name__}") from None


def settings_from_table(cls: type[T], table: Mapping[str, Any], owner: str) -> T:
    """A plugin's settings dataclass (every field with a default) from its config table or other raw values.

    Unknown keys are refused, naming the known ones; None means "not given" (a CLI flag left out). Checks beyond
    the types (ranges, choices) stay with the plugin.
    """
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # T is a dataclass
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if raw is None:
            continue
        if key not in known:
            raise ConfigError(f"unknown {owner} setting {key!r} (known: {', '.join(sorted(known))})")
        values[key] = coerce_setting(owner, key, raw, getattr(defaults, key))
    return cls(**values)


def _coerce(name: str, value: Any) -> Any:
    return coerce_setting("config", name, value, getattr(Config(), name))


def _move_old_keys(data: Mapping[str, Any], sections: dict[str, dict[str, Any]], config_path: Path) -> None:
    """Put former top-level keys into their sections, with a one-line deprecation notice each on stderr."""
    for old, (section, key) in _MOVED.items():
        if old not in data:
            continue
        if key in sections.get(section, {}):
            raise ConfigError(f"{config_path} sets both {old} and [{section}] {key}; keep only [{section}] {key}")
        sections.setdefault(section, {})[key] = data[old]
        print(f"tag: warning: {config_path}: {old} is deprecated, write it as {key} in a [{section}] table",
              file=sys.stderr)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from the file (if any) and the environment."""
    environ = dict(os.environ if environ is None else environ)
    config_path = Path(path) if path else default_config_path(environ)
    data: dict[str, Any] = {}
    source = "defaults"
    if config_path.is_file():
        try:
            data = tomllib.loads(config_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None
        source = str(config_path)
    elif path:
        raise ConfigError(f"config file {config_path} does not exist")

    values: dict[str, Any] = {}
    backends_table: dict[str, dict[str, Any]] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key == "backends":
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise ConfigError("[backends] must hold one table per backend, like [backends.make_an_audio]")
            backends_table = {k: dict(v) for k, v in value.items()}
        elif isinstance(value, dict):
            sections[key] = dict(value)
        elif key in _FIELDS:
            values[key] = _coerce(key, value)
        elif key not in _MOVED:
            raise ConfigError(f"unknown config key {key!r} in {config_path}")
    _move_old_keys(data, sections, config_path)
    for name in _FIELDS:
        env_value = environ.get(f"TAG_{name.upper()}")
        if env_value is not None:
            values[name] = _coerce(name, env_value)
    return _check_ranges(Config(**values, backends=backends_table, sections=sections, environ=environ,
                                source=source))


_POSITIVE = ("max_duration", "max_prompt_chars", "max_candidates", "max_batch", "request_timeout")
"""Numbers that make no sense at or below zero (TAG_MAX_DURATION=-5 would refuse every request, silently)."""


def _check_ranges(config: Config) -> Config:
    for name in _POSITIVE:
        value = getattr(config, name)
        if value <= 0:
            raise ConfigError(f"config {name} (TAG_{name.upper()}) must be above 0, got {value:g}")
    return config
