"""Registers the `clap` scorer (config: scorer = "clap", [clap] checkpoint = "/path/to/630k-audioset-best.pt")."""
from tagcore import hookimpl


@hookimpl
def register_scorers(register) -> None:
    from .scorer import ClapScorer  # only when scorers are listed

    register(ClapScorer)
