"""Entry point of the Stable Audio plugin (group `tag`): the two backends and their `tag models` commands."""
from __future__ import annotations

import click

from collections.abc import Callable

from tagcore import hookimpl

from .backend import StableAudio3Backend, StableAudioOpenBackend


@hookimpl
def register_backends(register: Callable[[type], None]) -> None:
    register(StableAudio3Backend)
    register(StableAudioOpenBackend)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import register

    register(cli)
