"""Text-audio scorers (for example CLAP) that rank a request's candidate clips."""
from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from .audio_types import Audio
from .config import Config


class Scorer(abc.ABC):
    """Scores how well each clip matches its prompt; higher is better. Must be deterministic."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, config: Config) -> None:
        self.config = config

    @abc.abstractmethod
    def score(self, prompts: Sequence[str], audios: Sequence[Audio]) -> list[float]:
        """One score per (prompt, audio) pair, independent of how the pairs are batched."""


def rank(scorer: Scorer, prompt: str, candidates: Sequence[Audio]) -> tuple[list[int], list[float]]:
    """Candidate indices best first, and each candidate's score in the original order."""
    scores = [float(s) for s in scorer.score([prompt] * len(candidates), candidates)]
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
    return order, scores
