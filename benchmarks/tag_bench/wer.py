"""Word error rate: how many word edits turn an ASR transcript back into the text the model was asked to say."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_NOT_WORD = re.compile(r"[^\w\s']|_")


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation, so "Hello, there!" and "hello there" count as the same words."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return [word.strip("'") for word in _NOT_WORD.sub(" ", text).split() if word.strip("'")]


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Fewest substitutions, deletions and insertions of words that turn `hypothesis` into `reference`."""
    previous = list(range(len(hypothesis) + 1))
    for i, word in enumerate(reference, start=1):
        current = [i]
        for j, heard in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard)))
        previous = current
    return previous[-1]


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: total word edits over total reference words (long texts weigh more, as in ASR papers).

    0 is perfect; it can exceed 1 when the transcript holds many words that were never asked for.
    """
    if len(references) != len(hypotheses):
        raise ValueError("one transcript per reference text")
    pairs = [(normalise(r), normalise(h)) for r, h in zip(references, hypotheses)]
    words = sum(len(r) for r, _ in pairs)
    if words == 0:
        raise ValueError("the reference texts hold no words")
    return sum(edit_distance(r, h) for r, h in pairs) / words
