"""Entry point of the Make-An-Audio plugin (group `tag`): the backend and the `tag models` commands."""
from __future__ import annotations

import click

from collections.abc import Callable

from tagcore import hookimpl

from .backend import MakeAnAudioBackend


@hookimpl
def register_backends(register: Callable[[type], None]) -> None:
    register(MakeAnAudioBackend)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import register

    register(cli)
