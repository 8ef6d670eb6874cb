"""Joining synthesised sentences into one clip no longer than the requested duration.

Speech has its own length: the request's duration is an upper bound. Sentences that fit are joined with short
pauses and the clip ends where the speech ends (no silence padding); sentences that do not fit are left out (never
cut mid-word unless the first sentence alone is too long) and the metadata says so.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tagcore.errors import GenerationFailed

FADE_SECONDS = 0.02
"""A hard cut inside a sentence gets this fade-out so it does not click."""


def assemble(segments: Sequence[np.ndarray], sample_rate: int, duration: float,
             pause: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Join 1-D `segments` with `pause` seconds of silence, keeping at most `duration` seconds.

    Returns the samples and metadata: speech_seconds (speech plus inner pauses actually delivered),
    needed_seconds (what the whole text takes), sentences, sentences_spoken, truncated and, when truncated,
    a notice a person can act on.
    """
    limit = int(round(duration * sample_rate))
    gap = np.zeros(int(round(pause * sample_rate)), dtype=np.float32)
    needed = sum(len(s) for s in segments) + len(gap) * max(0, len(segments) - 1)
    parts: list[np.ndarray] = []
    used = spoken = 0
    cut = False
    for segment in segments:
        segment = np.asarray(segment, dtype=np.float32)
        lead = gap if parts else gap[:0]
        if used + len(lead) + len(segment) > limit:
            if spoken == 0:
                parts.append(_fade_out(segment[:limit], sample_rate))
                used, cut = limit, True
            break
        parts.extend((lead, segment))
        used += len(lead) + len(segment)
        spoken += 1
    if used == 0:
        raise GenerationFailed("the model produced no audio for this text")
    samples = np.concatenate(parts)
    info: dict[str, Any] = {
        "speech_seconds": round(used / sample_rate, 3),
        "needed_seconds": round(needed / sample_rate, 3),
        "sentences": len(segments),
        "sentences_spoken": spoken,
        "truncated": cut or spoken < len(segments),
    }
    if info["truncated"]:
        said = "the first sentence was cut" if cut else f"only {spoken} of {len(segments)} sentences fit"
        info["notice"] = (f"the text needs about {needed / sample_rate:.1f} s of speech but {duration:g} s were "
                          f"requested: {said}; ask for a longer duration")
    return samples, info


def _fade_out(segment: np.ndarray, sample_rate: int) -> np.ndarray:
    fade = min(len(segment), int(FADE_SECONDS * sample_rate))
    out = segment.copy()
    if fade:
        out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return out
