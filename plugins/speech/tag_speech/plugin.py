"""Registers the speech backends (imports no torch: `tag backends` loads every plugin)."""
from __future__ import annotations

from collections.abc import Callable

from tagcore import hookimpl


@hookimpl
def register_backends(register: Callable[[type], None]) -> None:
    from .bark import BarkBackend
    from .chatterbox import ChatterboxBackend
    from .mms import MmsTtsBackend
    from .speecht5 import SpeechT5Backend

    register(SpeechT5Backend)
    register(MmsTtsBackend)
    register(BarkBackend)
    register(ChatterboxBackend)
