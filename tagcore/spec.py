"""BackendSpec: what a backend can do, as plain data that travels without its code.

Frontends validate requests, resolve aliases and draw their menus from specs only, so a machine that runs the
bot or the API needs neither torch nor the backend packages: a worker announces the spec of what it loaded
(see `Transport.catalog`), and a client installed next to the backends builds the same spec from the class.

JSON form, version 1: `{"v": 1, "name": ..., "aliases": [...], ..., "capabilities": {...}, "options": [...]}`.
Every field is type-checked on the way in, so a malformed announcement is refused with a `MessageError`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from .errors import MessageError
from .options import Option, OptionType, resolve_options

if TYPE_CHECKING:  # only to annotate the builders below: at run time this module needs no backend code
    from .backend import Backend

SPEC_VERSION = 1
AUDIO_ROLE_OPTION = "audio_role"
"""A backend whose audio prompt can serve several roles declares a request option of this name (a choice of
roles, defaulting to its `audio_prompt_role`), so every client picks the role the same way."""
MAX_SPEC_BYTES = 256 * 1024
_OPTION_TYPES = get_args(OptionType)


AUDIO_PROMPT_ROLES = ("continuation", "voice", "variation")


@dataclass(frozen=True)
class Capabilities:
    """Features a backend supports; frontends hide controls and workers reject requests accordingly."""

    seed: bool = True
    batch: bool = False
    audio_prompt: bool = False
    audio_prompt_role: str = "continuation"
    """What an audio prompt is for by default: "continuation" (the clip goes on from it, so it must be shorter than
    the requested duration), "voice" (a speaker sample whose voice the output takes, any length up to
    `max_audio_prompt`) or "variation" (the output is a new take on the clip, following the text)."""
    max_audio_prompt: float = 60.0
    """Longest audio prompt accepted, in seconds."""
    negative_prompt: bool = False
    candidates: bool = False

    def __post_init__(self) -> None:
        if self.audio_prompt_role not in AUDIO_PROMPT_ROLES:
            raise ValueError(f"audio_prompt_role must be one of {AUDIO_PROMPT_ROLES}, not {self.audio_prompt_role!r}")

    def features(self, roles: Sequence[str] = ()) -> list[str]:
        """Human-readable names of what is supported, e.g. for `tag backends`; `roles` are every audio prompt role
        the backend offers (see `BackendSpec.audio_prompt_roles`), default: just `audio_prompt_role`."""
        names = {"seed": "seed", "batch": "batch", "negative_prompt": "negative prompt", "candidates": "candidates"}
        found = [label for key, label in names.items() if getattr(self, key)]
        if self.audio_prompt:
            offered = " or ".join(roles or (self.audio_prompt_role,))
            found.append(f"audio prompt ({offered}, up to {self.max_audio_prompt:g} s)")
        return found

    @property
    def continues_audio(self) -> bool:
        """True when an audio prompt is continued, i.e. it occupies the start of the requested duration."""
        return self.audio_prompt and self.audio_prompt_role == "continuation"


@dataclass(frozen=True)
class BackendSpec:
    """The description of one backend a worker serves: limits, capabilities and typed options."""

    name: str
    sample_rate: int
    native_max_duration: float
    """Length of the window the model was trained on (seconds)."""
    max_duration: float
    """Longest clip the backend produces with the weights the worker loaded."""
    capabilities: Capabilities
    min_duration: float = 1.0
    aliases: tuple[str, ...] = ()
    description: str = ""
    channels: int = 1
    variable_length: bool = False
    """The duration is an upper bound: clips last as long as their content (speech)."""
    options: tuple[Option, ...] = ()

    # --- building ---------------------------------------------------------------------------------------
    @classmethod
    def from_backend(cls, backend: type[Backend], settings: Mapping[str, Any] | None = None) -> BackendSpec:
        """The spec of `backend` loaded with worker `settings` (the backend may refine its class attributes)."""
        return backend.spec(settings or {})

    @classmethod
    def from_attributes(cls, backend: type[Backend]) -> BackendSpec:
        """The spec a backend class declares through its class attributes."""
        return cls(
            name=backend.name, aliases=tuple(backend.aliases), description=backend.description,
            sample_rate=backend.sample_rate, channels=backend.channels, min_duration=backend.min_duration,
            native_max_duration=backend.native_max_duration, max_duration=backend.max_duration,
            variable_length=backend.variable_length, capabilities=backend.capabilities,
            options=tuple(backend.options),
        )

    # --- use ----------------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The name and every alias (each one addresses this backend)."""
        return (self.name, *self.aliases)

    @property
    def request_options(self) -> tuple[Option, ...]:
        """Options a request may set (worker options are fixed where the model loads)."""
        return tuple(o for o in self.options if o.scope == "request")

    @property
    def audio_prompt_roles(self) -> tuple[str, ...]:
        """Every role an audio prompt can have here: the default role, then those the `audio_role` option offers."""
        if not self.capabilities.audio_prompt:
            return ()
        default = self.capabilities.audio_prompt_role
        chooser = next((o for o in self.options if o.name == AUDIO_ROLE_OPTION), None)
        return (default,) + tuple(r for r in (chooser.choices if chooser else ()) if r != default)

    def audio_prompt_role_for(self, options: Mapping[str, Any]) -> str:
        """The role a request's audio prompt has, given the request's resolved options."""
        return options.get(AUDIO_ROLE_OPTION) or self.capabilities.audio_prompt_role

    def resolve_request_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_options(self.options, given, scope="request", owner=self.name)

    def resolve_worker_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_options(self.options, given, scope="worker", owner=self.name)

    # --- JSON ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"v": SPEC_VERSION}
        for f in dataclasses.fields(self):
            data[f.name] = getattr(self, f.name)
        data["aliases"] = list(self.aliases)
        data["capabilities"] = dataclasses.asdict(self.capabilities)
        data["options"] = [_option_to_dict(o) for o in self.options]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any) -> BackendSpec:
        """Parse and check a spec's JSON object; raise MessageError saying what is wrong."""
        if not isinstance(data, dict):
            raise MessageError("a backend spec must be a JSON object")
        if data.get("v") != SPEC_VERSION:
            raise MessageError(f"unsupported backend spec version {data.get('v')!r} (this build reads {SPEC_VERSION})")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)} - {"v"}
        if unknown:
            raise MessageError(f"unknown backend spec field(s): {', '.join(sorted(unknown))}")
        where = f"spec {data.get('name')!r}"
        name = _field(data, "name", str, where)
        if not name or len(name) > 100:
            raise MessageError(f"{where}: name must be 1 to 100 characters")
        caps = _field(data, "capabilities", dict, where)
        cap_names = {f.name for f in dataclasses.fields(Capabilities)}
        if set(caps) - cap_names:
            raise MessageError(f"{where}: unknown capabilities {', '.join(sorted(set(caps) - cap_names))}")
        for key, value in caps.items():
            expected = type(getattr(Capabilities(), key))
            if isinstance(value, bool) != (expected is bool) or not isinstance(value, (int, float) if expected is float else expected):
                raise MessageError(f"{where}: capability {key} must be {expected.__name__}")
        values: dict[str, Any] = {k: float(v) if type(getattr(Capabilities(), k)) is float else v
                                  for k, v in caps.items()}
        try:
            capabilities = Capabilities(**values)
        except (TypeError, ValueError) as exc:
            raise MessageError(f"{where}: bad capabilities: {exc}") from None
        spec = cls(
            name=name,
            aliases=tuple(_strings(data.get("aliases", []), f"{where}.aliases")),
            description=_field(data, "description", str, where, ""),
            sample_rate=_field(data, "sample_rate", int, where),
            channels=_field(data, "channels", int, where, 1),
            min_duration=_number(data, "min_duration", where, 1.0),
            native_max_duration=_number(data, "native_max_duration", where),
            max_duration=_number(data, "max_duration", where),
            variable_length=_field(data, "variable_length", bool, where, False),
            capabilities=capabilities,
            options=tuple(_option_from_dict(o, where) for o in _field(data, "options", list, where, [])),
        )
        if not (1 <= spec.sample_rate <= 384_000 and 1 <= spec.channels <= 8):
            raise MessageError(f"{where}: sample rate or channel count out of range")
        if not 0 < spec.min_duration <= spec.max_duration:
            raise MessageError(f"{where}: durations must satisfy 0 < min_duration <= max_duration")
        return spec

    @classmethod
    def from_json(cls, text: str | bytes) -> BackendSpec:
        if len(text) > MAX_SPEC_BYTES:
            raise MessageError(f"backend spec is over {MAX_SPEC_BYTES} bytes")
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MessageError(f"backend spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _option_to_dict(option: Option) -> dict[str, Any]:
    data = dataclasses.asdict(option)
    data["choices"] = list(option.choices)
    data["aliases"] = list(option.aliases)
    return data


def _option_from_dict(data: Any, where: str) -> Option:
    if not isinstance(data, dict):
        raise MessageError(f"{where}: every option must be a JSON object")
    known = {f.name for f in dataclasses.fields(Option)}
    if set(data) - known:
        raise MessageError(f"{where}: unknown option field(s) {', '.join(sorted(set(data) - known))}")
    where = f"{where}, option {data.get('name')!r}"
    kind = _field(data, "type", str, where)
    scope = _field(data, "scope", str, where, "request")
    if kind not in _OPTION_TYPES or scope not in ("request", "worker"):
        raise MessageError(f"{where}: unknown type {kind!r} or scope {scope!r}")
    default = data.get("default")
    if default is not None and not isinstance(default, (str, int, float, bool)):
        raise MessageError(f"{where}: the default must be a string, number, boolean or null")
    bounds = [data.get(k) for k in ("minimum", "maximum")]
    if any(b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))) for b in bounds):
        raise MessageError(f"{where}: minimum and maximum must be numbers or null")
    return Option(
        name=_field(data, "name", str, where), type=kind, default=default, help=_field(data, "help", str, where, ""),
        minimum=bounds[0], maximum=bounds[1], choices=tuple(_strings(data.get("choices", []), f"{where}.choices")),
        scope=scope, aliases=tuple(_strings(data.get("aliases", []), f"{where}.aliases")),
        multiline=_field(data, "multiline", bool, where, False),
    )


_MISSING = object()


def _field(data: dict[str, Any], name: str, kind: type, where: str, default: Any = _MISSING) -> Any:
    value = data.get(name, default)
    if value is _MISSING:
        raise MessageError(f"{where} has no {name}")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MessageError(f"{where}: {name} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _number(data: dict[str, Any], name: str, where: str, default: Any = _MISSING) -> float:
    value = data.get(name, default)
    if value is _MISSING:
        raise MessageError(f"{where} has no {name}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MessageError(f"{where}: {name} must be a finite number")
    return float(value)


def _strings(values: Any, where: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise MessageError(f"{where} must be a list of strings")
    return values
