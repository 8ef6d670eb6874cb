"""Registers the `clap` scorer (config: scorer = "clap", [clap] checkpoint = "/path/to/630k-audioset-best.pt")."""
from collections.abc import Callable

from tagcore import hookimpl


@hookimpl
def register_scorers(register: Callable[[type], None]) -> None:
    from .scorer import ClapScorer  # only when scorers are listed

    register(ClapScorer)


@hookimpl
def register_settings(register: Callable[[str, type], None]) -> None:
    from .settings import ClapSettings

    register("clap", ClapSettings)
