"""Backends as the tests load them: on the CPU, from a weights folder they built, loaded before the first request."""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from tagcore import Backend

B = TypeVar("B", bound=Backend)


def loaded_on_cpu(backend_class: type[B], weights: Path | str, **settings: Any) -> B:
    """`backend_class` with `weights` on the CPU (plus `settings`), its model loaded as a worker loads it at start."""
    backend = backend_class({"weights": str(weights), "device": "cpu", **settings})
    backend.ensure_loaded()
    return backend
