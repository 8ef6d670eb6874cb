"""Registers the `http` frontend (`tag serve`)."""
from __future__ import annotations

from tagcore import hookimpl


@hookimpl
def register_frontends(register) -> None:  # type: ignore[no-untyped-def]
    from .frontend import HttpFrontend  # fastapi/uvicorn cost ~1.5 s: only when frontends are listed

    register(HttpFrontend)


@hookimpl
def register_settings(register) -> None:  # type: ignore[no-untyped-def]
    from .settings import HttpSettings

    register("http", HttpSettings)


@hookimpl
def register_commands(cli) -> None:  # type: ignore[no-untyped-def]
    from .commands import serve

    cli.add_command(serve)
