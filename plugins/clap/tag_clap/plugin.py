"""Registers the `clap` scorer (config: scorer = "clap", [clap] checkpoint = "/path/to/630k-audioset-best.pt")."""
from tagcore import hookimpl

from .scorer import ClapScorer


@hookimpl
def register_scorers(register) -> None:
    register(ClapScorer)
