"""Registers the `http` frontend (`tag serve`)."""
from __future__ import annotations

from tagcore import hookimpl

from .frontend import HttpFrontend


@hookimpl
def register_frontends(register) -> None:  # type: ignore[no-untyped-def]
    register(HttpFrontend)
