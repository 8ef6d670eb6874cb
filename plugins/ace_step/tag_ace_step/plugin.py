"""Entry point of the ACE-Step plugin (group `tag`): the `ace_step` backend and its `tag models` commands."""
from __future__ import annotations

import click

from tagcore import hookimpl

from .backend import AceStepBackend


@hookimpl
def register_backends(register) -> None:
    register(AceStepBackend)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import register

    register(cli)
