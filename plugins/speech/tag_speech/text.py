"""Splitting text into sentences a TTS model can say in one go.

Speech models are trained on single sentences: long inputs make SpeechT5 run on or skip words and exceed its
text position table, and VITS durations drift. Each sentence is synthesised separately (in one batch) and the
pieces are joined with short pauses.
"""
from __future__ import annotations

import re

from tagcore.errors import InvalidRequest

MAX_SENTENCE_CHARS = 250
"""Longer sentences are cut at commas/semicolons, then between words (SpeechT5 knows 450 text positions)."""

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s+")


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Sentences of `text` in order, none longer than `max_chars`; an empty text is an InvalidRequest."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        sentence = " ".join(sentence.split())
        if sentence:
            pieces.extend(_shorten(sentence, max_chars))
    if not any(ch.isalnum() for ch in "".join(pieces)):
        raise InvalidRequest("there is nothing to say: the text holds no words")
    return pieces


def _shorten(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    chunks: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        chunks.extend(_pack_words(clause, max_chars) if len(clause) > max_chars else [clause])
    return _pack(chunks, max_chars)


def _pack_words(clause: str, max_chars: int) -> list[str]:
    words: list[str] = []
    for word in clause.split():  # a single "word" longer than the limit (a URL...) is cut hard
        words.extend(word[i:i + max_chars] for i in range(0, len(word), max_chars))
    return _pack(words, max_chars)


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Greedily join consecutive parts with spaces while they fit in `max_chars`."""
    out: list[str] = []
    for part in parts:
        if out and len(out[-1]) + 1 + len(part) <= max_chars:
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out
