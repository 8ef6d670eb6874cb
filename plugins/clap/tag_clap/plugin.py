"""Registers the `clap` scorer (config: scorer = "clap", [clap] checkpoint = "/path/to/630k-audioset-best.pt")."""
from tagcore import hookimpl


@hookimpl
def register_scorers(register) -> None:
    from .scorer import ClapScorer  # only when scorers are listed

    register(ClapScorer)


@hookimpl
def register_settings(register) -> None:  # type: ignore[no-untyped-def]
    from .settings import ClapSettings

    register("clap", ClapSettings)
