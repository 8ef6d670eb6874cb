"""The hooks a TAG plugin can implement.

Every hook is a *registration callback*: it receives a `register` function and calls it with classes. Nothing
here performs work on a request, so installing more backends never makes a request run more than one.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

PROJECT = "tag"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backends(register: Callable[[type], None]) -> None:
    """Call `register(BackendSubclass)` for each generation backend the plugin provides."""


@hookspec
def register_transports(register: Callable[[type], None]) -> None:
    """Call `register(TransportSubclass)` for each transport (how requests reach workers)."""


@hookspec
def register_frontends(register: Callable[[type], None]) -> None:
    """Call `register(FrontendSubclass)` for each frontend (bot, HTTP server...)."""


@hookspec
def register_scorers(register: Callable[[type], None]) -> None:
    """Call `register(ScorerSubclass)` for each text-audio scorer used to rank candidates."""


@hookspec
def register_commands(cli: "click.Group") -> None:
    """Add subcommands to the `tag` command group (for example `tag bench`, `tag models pull`)."""


@hookspec
def register_settings(register: Callable[[str, type], None]) -> None:
    """Call `register(section, SettingsDataclass)` for each config section the plugin reads (`[telegram]`...).

    The core shows declared sections in `tag config` with every field whose default is a `Secret` hidden; a
    section nobody declares shows its keys only, so declaring is how a plugin's settings become visible.
    """
