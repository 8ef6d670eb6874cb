"""What the speech backends share: sentence splitting, seeding, joining into one clip, metadata.

Subclasses load their model and implement `_speak` (the sentences of ONE request -> one waveform per sentence).
Requests are generated one at a time, each with its own seed, because SpeechT5 (prenet dropout stays on at
inference), VITS (sampled noise) and Bark (sampled tokens) draw random numbers for the whole batch: batching
several requests would make a result depend on which other requests shared its batch (checked for Bark: a
sentence sampled alongside others differs from the same sentence alone). The sentences of a request are one
batch, so a request is reproducible from its seed.
"""
from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from tagcore import Audio, Backend, Capabilities, GenerationItem, GenerationResult, Option
from tagcore.backend import ProgressCallback
from tagcore.devices import resolve_device, resolve_dtype

from .assembly import assemble
from .text import MAX_SENTENCE_CHARS, split_sentences
from .voice import usable_sample

PAUSE_OPTION = Option("pause", "float", 0.3, "seconds of silence between sentences", minimum=0.0, maximum=2.0)


class SpeechBackend(Backend):
    """A text-to-speech backend: the prompt is the text to say; the duration is an upper bound.

    The clip is as long as the speech (variable_length): a short sentence asked for with 10 s comes back short.
    """

    variable_length: ClassVar[bool] = True
    max_sentence_chars: ClassVar[int] = MAX_SENTENCE_CHARS
    """Longer sentences are split at clauses/words: the longest text the model says well in one go."""
    native_max_duration = 20.0
    max_duration = 120.0
    capabilities: ClassVar[Capabilities] = Capabilities(seed=True, batch=False)

    def _setup_device(self) -> None:
        self.device = resolve_device(self.settings["device"])
        self.dtype = resolve_dtype(self.settings["dtype"], self.device)

    def check_voice_sample(self, sample: Audio) -> None:
        """Raise InvalidRequest for a voice sample this backend cannot clone from (silent, too short...)."""
        usable_sample(sample)

    @abc.abstractmethod
    def _speak(self, sentences: list[str], item: GenerationItem, duration: float,
               options: Mapping[str, Any]) -> tuple[list[np.ndarray], dict[str, Any]]:
        """One 1-D float waveform per sentence (at `sample_rate`) plus metadata about the voice/language."""

    def generate_batch(self, items: Sequence[GenerationItem], duration: float, *, options: Mapping[str, Any],
                       progress: ProgressCallback | None = None) -> list[GenerationResult]:
        import torch

        for item in items:  # a sample that cannot carry a voice fails before any model is loaded
            if item.audio_prompt is not None:
                self.check_voice_sample(item.audio_prompt)
        self.ensure_loaded()
        results = []
        for index, item in enumerate(items):
            if progress:  # also where a cancelled request stops (the callback raises)
                progress(index / len(items), "speaking")
            started = time.perf_counter()
            sentences = split_sentences(item.prompt, self.max_sentence_chars)
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(item.seed)
                segments, extra = self._speak(sentences, item, duration, options)
            samples, info = assemble(segments, self.sample_rate, duration, options["pause"])
            results.append(GenerationResult(
                candidates=[Audio(samples, self.sample_rate)], seed=item.seed, backend=self.name,
                model_id=self.model_id, timings={"generate_s": time.perf_counter() - started},
                metadata={**extra, **info}))
            if progress:
                progress((index + 1) / len(items), "speaking")
        return results


def frames_cap(duration: float, sample_rate: int, hop: int) -> int:
    """Spectrogram frames that fill `duration` seconds: decoding beyond this is wasted work."""
    return int(np.ceil(duration * sample_rate / hop)) + 1
