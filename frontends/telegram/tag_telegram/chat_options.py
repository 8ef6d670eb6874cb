"""What a chat user may set for a generator (/settings), and the options each of their requests carries.

The bot knows no model: the settings it offers are read from the backend's spec, namely its request options that
have choices (Make-An-Audio's `preset` is one of them, found like any other). A user's pick overrides the
operator's `[telegram.options.<backend>]` value; options the operator pins (`[telegram] pinned`) are shown as
fixed and never taken from a user.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tagcore.options import Option
from tagcore.spec import BackendSpec

YOURS, OPERATOR, DEFAULT, PINNED = "yours", "operator", "default", "pinned"
_ABSENT = object()


@dataclass(frozen=True)
class Setting:
    """One choice option as a user sees it: its value for their next request, and where that value comes from."""

    option: Option
    value: Any
    source: str
    """YOURS (the user's pick), OPERATOR ([telegram.options]), DEFAULT (the backend's) or PINNED (operator-fixed)."""

    @property
    def valid(self) -> bool:
        return self.value in self.option.choices

    @property
    def changeable(self) -> bool:
        return self.source != PINNED


def choice_options(spec: BackendSpec) -> list[Option]:
    """The request options of `spec` a menu can offer: those with a fixed list of choices."""
    return [o for o in spec.request_options if o.type == "choice" and o.choices]


def _given(options: Mapping[str, Any], option: Option) -> Any:
    """The value `options` sets for `option` (under its name or an alias), or _ABSENT."""
    for key in (option.name, *option.aliases):
        if key in options:
            return options[key]
    return _ABSENT


def settings_of(spec: BackendSpec, operator: Mapping[str, Any], pinned: frozenset[str],
                picks: Mapping[str, str]) -> list[Setting]:
    """Every choice option of `spec` with the value a request from this user would use."""
    settings = []
    for option in choice_options(spec):
        set_by_operator = _given(operator, option)
        if option.name in pinned:
            value, source = (option.default if set_by_operator is _ABSENT else set_by_operator), PINNED
        elif option.name in picks:
            value, source = picks[option.name], YOURS
        elif set_by_operator is not _ABSENT:
            value, source = set_by_operator, OPERATOR
        else:
            value, source = option.default, DEFAULT
        settings.append(Setting(option, value, source))
    return settings


def stale_picks(spec: BackendSpec, pinned: frozenset[str], picks: Mapping[str, str]) -> list[str]:
    """Names of the user's picks `spec` no longer takes: the option is gone, pinned since, or the value is no
    longer one of its choices (a worker with other weights or a newer version announced another spec)."""
    offered = {o.name: o for o in choice_options(spec) if o.name not in pinned}
    return [name for name, value in picks.items() if name not in offered or value not in offered[name].choices]


def request_options(spec: BackendSpec, operator: Mapping[str, Any], pinned: frozenset[str],
                    picks: Mapping[str, str]) -> dict[str, Any]:
    """The options a request carries: the operator's, with each valid pick of the user in place of theirs."""
    options = dict(operator)
    stale = set(stale_picks(spec, pinned, picks))
    by_name = {o.name: o for o in choice_options(spec)}
    for name, value in picks.items():
        if name in stale:
            continue
        for key in (name, *by_name[name].aliases):
            options.pop(key, None)
        options[name] = value
    return options
