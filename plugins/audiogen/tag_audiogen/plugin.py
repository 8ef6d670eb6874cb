"""Registers the audiocraft backends (`audiogen`, `musicgen`) with TAG."""
from __future__ import annotations

from collections.abc import Callable

from tagcore import hookimpl

from .backend import AudioGenBackend, MusicGenBackend


@hookimpl
def register_backends(register: Callable[[type], None]) -> None:
    register(AudioGenBackend)
    register(MusicGenBackend)
