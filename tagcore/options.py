"""Typed backend options: declared once by a backend, validated the same way for the CLI, the bot and the API.

An option is either a *request* option (steps, guidance...: any request may set it) or a *worker* option
(weights folder, device, dtype...: fixed when the worker loads the model). Worker options are never taken from
a request that arrives over a transport, so a chat user cannot point a worker at another folder.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import InvalidRequest, UnknownOption

OptionType = Literal["int", "float", "str", "bool", "choice", "path"]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One option a backend accepts. `scope="worker"` options configure loading, not a single request."""

    name: str
    type: OptionType
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    scope: Literal["request", "worker"] = "request"
    aliases: tuple[str, ...] = field(default=())
    multiline: bool = False
    """A "str" option whose value is long text over several lines (song lyrics): frontends give it a text area."""

    def parse(self, raw: Any) -> Any:
        """Convert `raw` (a CLI string or a JSON value) to this option's type and check its bounds."""
        if raw is None:
            return None
        try:
            value = self._convert(raw)
        except (TypeError, ValueError):
            raise InvalidRequest(f"option {self.name}: {raw!r} is not a valid {self.type}") from None
        if self.type in ("int", "float"):
            if self.minimum is not None and value < self.minimum:
                raise InvalidRequest(f"option {self.name}: {value} is below the minimum {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise InvalidRequest(f"option {self.name}: {value} is above the maximum {self.maximum:g}")
        if self.type == "choice" and value not in self.choices:
            raise InvalidRequest(f"option {self.name}: {value!r} is not one of {', '.join(self.choices)}")
        return value

    def _convert(self, raw: Any) -> Any:
        if self.type == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw)
        if self.type == "float":
            if isinstance(raw, bool):
                raise ValueError(raw)
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(raw)
            return value
        if self.type == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(raw)
        if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
            raise ValueError(raw)
        return str(raw)


def resolve_options(
    specs: Sequence[Option],
    given: Mapping[str, Any],
    *,
    scope: Literal["request", "worker"] | None = None,
    owner: str = "backend",
) -> dict[str, Any]:
    """Validate `given` against `specs` and fill in defaults.

    With `scope`, only options of that scope are accepted (and returned); naming one of the other scope is an
    error that says where that option has to be set instead.
    """
    by_name: dict[str, Option] = {}
    for spec in specs:
        by_name[spec.name] = spec
        for alias in spec.aliases:
            by_name[alias] = spec
    wanted = [s for s in specs if scope is None or s.scope == scope]
    values: dict[str, Any] = {s.name: s.default for s in wanted}
    for key, raw in given.items():
        if key not in by_name:
            known = ", ".join(s.name for s in specs) or "none"
            raise UnknownOption(f"{owner} has no option {key!r} (options: {known})")
        spec = by_name[key]
        if scope is not None and spec.scope != scope:
            raise InvalidRequest(misplaced(spec, owner))
        values[spec.name] = spec.parse(raw)
    return values


def misplaced(option: Option, owner: str) -> str:
    """Why `option` cannot be set where it was given, and where it belongs: a worker option where requests are
    read, or a request option where the worker's settings are read (which would otherwise be ignored)."""
    if option.scope == "worker":
        return (f"option {option.name} of {owner} is set when the worker starts (tag worker -O {option.name}=..., "
                f"or [backends.{owner}] in its configuration), not with a request")
    return (f"option {option.name} of {owner} is a request option: give it with each request (tag generate -O "
            f"{option.name}=..., the API's options, the bot's settings), not to the worker or its configuration")


def parse_key_values(pairs: Sequence[str]) -> dict[str, str]:
    """Turn CLI `KEY=VALUE` strings into a dict, with a clear error for a pair without '='."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"option {pair!r} must look like KEY=VALUE")
        out[key.strip()] = value
    return out


def device_option() -> Option:
    """The `device` worker option shared by every torch backend."""
    return Option("device", "choice", "auto", "where the model runs (auto: cuda when available)",
                  choices=("auto", "cpu", "cuda"), scope="worker")


def dtype_option(choices: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")) -> Option:
    """The `dtype` worker option: auto means fp32 on CPU and the fastest safe half type on GPU."""
    return Option("dtype", "choice", "auto", "numeric precision of the model weights",
                  choices=choices, scope="worker")


def weights_option(help_text: str) -> Option:
    """The `weights` worker option: a local folder (or, where the backend says so, a hub id)."""
    return Option("weights", "path", "", help_text, scope="worker")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def weights_location(given: str, default_hub_id: str) -> tuple[str, bool]:
    """(where, local) for a `weights` value: an expanded folder path, or a Hugging Face hub id `owner/name`.

    Empty means the default hub id. A path that exists is local; so is anything that does not look like exactly
    `owner/name` (absolute, ./, ~, several slashes), so a mistyped folder is reported missing instead of
    silently starting a multi-gigabyte download.
    """
    value = (given or "").strip() or default_hub_id
    path = Path(value).expanduser()
    if path.exists() or not _HUB_ID.match(value):
        return str(path), True
    return value, False
