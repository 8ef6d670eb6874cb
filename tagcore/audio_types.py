"""The in-memory audio value passed between backends, messages and writers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Audio:
    """Float32 samples shaped (channels, frames) in [-1, 1] at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[None, :]
        if samples.ndim != 2:
            raise ValueError(f"audio must be (channels, frames), got shape {samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.sample_rate}")
        object.__setattr__(self, "samples", np.ascontiguousarray(samples))

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def mono(self) -> "Audio":
        """Average the channels; models conditioned on audio take mono."""
        if self.channels == 1:
            return self
        return Audio(self.samples.mean(axis=0, keepdims=True), self.sample_rate)
