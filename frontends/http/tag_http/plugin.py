"""Registers the `http` frontend (`tag serve`)."""
from __future__ import annotations

from collections.abc import Callable

import click

from tagcore import hookimpl


@hookimpl
def register_frontends(register: Callable[[type], None]) -> None:
    from .frontend import HttpFrontend  # fastapi/uvicorn cost ~1.5 s: only when frontends are listed

    register(HttpFrontend)


@hookimpl
def register_settings(register: Callable[[str, type], None]) -> None:
    from .settings import HttpSettings

    register("http", HttpSettings)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .commands import serve

    cli.add_command(serve)
