"""The bot's settings: the `[telegram]` config table, overridden by `TAG_TELEGRAM_<KEY>` environment variables.

Values from the environment arrive as strings, values from TOML as typed values; both are parsed here, once, so a
typo or a bad value stops `tag bot` at start-up with a message naming the key instead of failing mid-conversation.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tagcore.config import Config, Secret, coerce_setting
from tagcore.fairness import MAX_BOOST
from tagcore.errors import ConfigError

MB = 1024 * 1024


@dataclass(frozen=True)
class BotSettings:
    """Everything the bot reads from configuration (see README, "Telegram bot", for each key)."""

    token: Secret = Secret("")
    """The bot's token from @BotFather (`token` in [telegram], TAG_TELEGRAM_TOKEN); required to start."""
    allowed_users: frozenset[int] = frozenset()
    """Telegram user ids allowed to use the bot; empty means everyone."""
    durations: tuple[float, ...] = (5.0, 10.0, 20.0)
    """Preset durations (seconds) offered on the inline keyboard, next to "Custom"."""
    backend: str = ""
    """Backend new users start with (default: the config's default_backend when installed)."""
    backends: tuple[str, ...] = ()
    """Backends offered by /backend (default: every one workers announced, plus those installed here)."""
    rate_limit: int = 20
    """Requests per user per `rate_window` seconds; 0 turns the limit off."""
    rate_window: float = 3600.0
    progress_interval: float = 3.0
    """Minimum seconds between two progress edits in one chat (Telegram allows about one message per second)."""
    audio_format: str = "voice"
    """"voice" (OGG/Opus voice note, plays inline), "wav" or "flac" (sent as an audio file)."""
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Request options per backend applied to every request; a chat user's /settings pick overrides them."""
    pinned: dict[str, frozenset[str]] = field(default_factory=dict)
    """Backend -> request options users may not change in /settings (from "backend.option" entries)."""
    poll_timeout: int = 20
    workers: int = 4
    delivery_threads: int = 4
    max_upload_bytes: int = 50 * MB
    max_input_bytes: int = 20 * MB
    request_timeout: float = 600.0
    api_url: str = ""
    """Base URL of a self-hosted Bot API server (https://github.com/tdlib/telegram-bot-api); empty: Telegram's."""
    priority: int = 0
    """Rank of the bot's requests among other sources' (0-2; tagcore.fairness): the API's default is 2."""
    store: str = ""
    """The bot's SQLite store (answers to deliver, users' choices, recipes); empty: store.default_store_path()."""
    keep_recipes: int = 1000
    """How many recipes of delivered clips "again"/"variation" can repeat (the oldest are forgotten)."""


_KEYS = {
    "token", "allowed_users", "durations", "backend", "backends", "rate_limit", "rate_window", "progress_interval",
    "audio_format", "options", "poll_timeout", "workers", "delivery_threads", "max_upload_mb", "max_input_mb",
    "api_url", "priority", "pinned", "store", "keep_recipes",
}
AUDIO_FORMATS = ("voice", "wav", "flac")


def _list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [item.strip() for item in value.replace(";", ",").split(",") if item.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _number(key: str, value: Any, kind: type, minimum: float) -> Any:
    number = coerce_setting("telegram", key, value, kind())
    if number < minimum:
        raise ConfigError(f"telegram.{key}: {number} is below the minimum {minimum:g}")
    return number


def _options(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"telegram.options must be a JSON object like {{\"tone\": {{\"delay\": 1}}}}: {exc}") from None
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError("telegram.options must map backend names to option tables, like [telegram.options.tone]")
    return {str(k): dict(v) for k, v in value.items()}


def _pinned(value: Any) -> dict[str, frozenset[str]]:
    """`["make_an_audio.preset", ...]` -> {"make_an_audio": {"preset"}} (option names hold no dot; backends may)."""
    pinned: dict[str, set[str]] = {}
    for entry in _list(value):
        backend, _, option = str(entry).strip().rpartition(".")
        if not backend or not option:
            raise ConfigError(f"telegram.pinned: {entry!r} must look like BACKEND.OPTION, e.g. make_an_audio.preset")
        pinned.setdefault(backend, set()).add(option)
    return {backend: frozenset(options) for backend, options in pinned.items()}


def load_settings(config: Config, overrides: Mapping[str, Any] | None = None) -> BotSettings:
    """Parse the `[telegram]` section (plus `overrides`, e.g. the frontend's settings) into BotSettings."""
    raw = {**config.section("telegram"), **dict(overrides or {})}
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown telegram setting(s): {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    token = coerce_setting("telegram", "token", raw.get("token", ""), BotSettings.token)
    if not token:
        raise ConfigError("no Telegram bot token: create a bot with @BotFather and set TAG_TELEGRAM_TOKEN "
                          "(or token in the [telegram] table of the config file)")
    values: dict[str, Any] = {"token": token, "request_timeout": config.request_timeout}
    if "allowed_users" in raw:
        values["allowed_users"] = frozenset(_number("allowed_users", u, int, 1) for u in _list(raw["allowed_users"]))
    if "durations" in raw:
        presets = tuple(_number("durations", d, float, 0.1) for d in _list(raw["durations"]))
        if not presets or len(presets) > 8:
            raise ConfigError("telegram.durations needs 1 to 8 preset durations in seconds")
        values["durations"] = presets
    for key in ("backend", "api_url", "store"):
        if key in raw:
            values[key] = str(raw[key]).strip()
    if "backends" in raw:
        values["backends"] = tuple(str(b) for b in _list(raw["backends"]))
    if "priority" in raw:
        values["priority"] = _number("priority", raw["priority"], int, 0)
        if values["priority"] > MAX_BOOST:
            raise ConfigError(f"telegram.priority: {values['priority']} is above the maximum {MAX_BOOST}")
    for key, kind, minimum in (("rate_limit", int, 0), ("rate_window", float, 1), ("progress_interval", float, 0),
                               ("poll_timeout", int, 0), ("workers", int, 1), ("delivery_threads", int, 1),
                               ("keep_recipes", int, 1)):
        if key in raw:
            values[key] = _number(key, raw[key], kind, minimum)
    for key in ("max_upload_mb", "max_input_mb"):
        if key in raw:
            values[key.replace("_mb", "_bytes")] = int(_number(key, raw[key], float, 0.001) * MB)
    if "audio_format" in raw:
        fmt = str(raw["audio_format"]).lower()
        if fmt not in AUDIO_FORMATS:
            raise ConfigError(f"telegram.audio_format: {fmt!r} is not one of {', '.join(AUDIO_FORMATS)}")
        values["audio_format"] = fmt
    if "options" in raw:
        values["options"] = _options(raw["options"])
    if "pinned" in raw:
        values["pinned"] = _pinned(raw["pinned"])
    return BotSettings(**values)
